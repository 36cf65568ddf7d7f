"""DNA pretraining through `titanmem train`: reverse-complement augmentation of the windows, the
config check, and a tiny run whose validation is in bits per base."""

from __future__ import annotations

import gzip
import json
import math
import random

import pytest
import torch

from titanmem.data import NucleotideTokenizer
from titanmem.data import genomes
from titanmem.data.genomes import GENOME_PACKAGES, reverse_complement
from titanmem.eval.loading import load_model
from titanmem.genomics.finetune import build_classifier, finetune_job_from_dict
from titanmem.train import load_config, train
from titanmem.train.trainer import reverse_complement_rows

DNA = NucleotideTokenizer()


def test_complement_table_pairs_the_bases():
    table = DNA.complement_table()
    assert DNA.decode(table[DNA.encode("ACGTN\n")].tolist()) == "TGCAN\n"
    assert table[DNA.bos_id] == DNA.bos_id and table[DNA.pad_id] == DNA.pad_id


def test_reverse_complement_rows_reads_some_rows_from_the_other_strand():
    texts = ["AACGTTGCAN", "GGGATCCATT", "TTTTACGCGA", "CATGCATGAA"] * 4
    batch = torch.tensor([DNA.encode(t) for t in texts])
    out = reverse_complement_rows(batch, torch.from_numpy(DNA.complement_table()))
    flipped = 0
    for text, row in zip(texts, out.tolist()):
        read = DNA.decode(row)
        assert read in (text, reverse_complement(text))
        flipped += read != text
    assert 0 < flipped < len(texts)
    assert torch.equal(batch, torch.tensor([DNA.encode(t) for t in texts]))  # the input is left as it was


def test_reverse_complement_needs_the_nucleotide_tokenizer():
    with pytest.raises(ValueError, match="data.reverse_complement = true needs data.tokenizer = 'dna'"):
        load_config(None, ["--data.reverse_complement=true"])


def test_a_tiny_dna_run_reports_bits_per_base(tmp_path, monkeypatch):
    monkeypatch.setattr(genomes, "REGION_BASES", 1000)
    rng = random.Random(0)
    # A genome with structure to learn: a few repeated motifs with mutations.
    motifs = ["".join(rng.choice("ACGT") for _ in range(12)) for _ in range(6)]
    sequence = "".join(rng.choice(motifs) for _ in range(500))
    path = tmp_path / "genomes" / "r-bioc-bsgenome" / GENOME_PACKAGES["r-bioc-bsgenome"][1][0]
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt") as f:
        f.write(f">chrX\n{sequence}\n")
    cfg = load_config(None, [
        "--data.corpus=dna-worm", f"--data.corpus_path={tmp_path / 'genomes'}", "--data.tokenizer=dna",
        "--data.val_fraction=0.3", "--data.seq_len=64", "--data.batch_size=4", "--data.reverse_complement=true",
        "--model.preset=tiny", "--model.variant=mal", "--model.hidden_size=32", "--model.num_hidden_layers=1",
        "--model.num_attention_heads=2", "--model.intermediate_size=64", "--model.window=16",
        "--schedule.steps=30", "--schedule.warmup_steps=3", "--optim.lr=1e-2", "--eval.every=0",
        "--eval.tokens=1024", "--checkpoint.every=0", "--log.progress=false", "--log.plot=false",
        f"--out_dir={tmp_path / 'run'}"])
    result = train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # One token per base: bits per byte are the loss in bits, and below the 2 bits of a uniform guess.
    assert math.isclose(summary["val_bpb"], summary["val_loss"] / math.log(2), rel_tol=1e-3)
    assert result.validation.bpb < 1.9
    # The run folder starts a classifier: its backbone is the pretrained model's.
    job = finetune_job_from_dict({"model": {"init": str(tmp_path / "run")}})
    clf = build_classifier(job, DNA, ("a", "b"))
    lm, _ = load_model(tmp_path / "run")
    for name, p in lm.model.state_dict().items():
        assert torch.equal(p, clf.model.state_dict()[name]), name
