"""The DNA pretraining configs: one per variant, human DNA, one token per base, chr22 held out."""

from __future__ import annotations

from pathlib import Path

import pytest

from titanmem.blocks import VARIANTS
from titanmem.data.corpora import split_documents
from titanmem.data.documents import Document
from titanmem.train import load_config

CONFIGS = Path(__file__).parents[2] / "configs" / "dna"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_has_a_dna_config(variant):
    cfg = load_config(CONFIGS / f"{variant}.toml")
    assert (cfg.model.preset, cfg.model.variant, cfg.name) == ("tiny", variant, f"dna-tiny-{variant}")
    assert (cfg.data.corpus, cfg.data.tokenizer) == ("dna-human", "dna")
    assert 1024 <= cfg.data.seq_len <= 8192


def test_the_configs_split_seed_holds_out_chr22():
    cfg = load_config(CONFIGS / "mac.toml")
    docs = [Document("dna-human/chrX", "A"), Document("dna-human/chr22", "C")]
    train, val = split_documents(docs, cfg.data.val_fraction, cfg.data.split_seed)
    assert [d.name for d in val] == ["dna-human/chr22"] and [d.name for d in train] == ["dna-human/chrX"]


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in ("swa", "transformer")])
def test_every_dna_memory_config_bounds_the_surprise(variant):
    # Four letters make a chunk's keys alike and their gradients add up: without the bound MAG and
    # MAL diverged within 20 pretraining steps and MAC at step 86 of fine-tuning (docs/results.md).
    from titanmem.genomics.finetune import load_finetune_job

    assert load_config(CONFIGS / f"{variant}.toml").model.fields["max_surprise"] == 1.0
    assert load_finetune_job(CONFIGS / "finetune" / f"{variant}.toml").model.fields["max_surprise"] == 1.0
