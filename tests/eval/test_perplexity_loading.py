"""``load_model``: a Hugging Face folder, a training checkpoint and a run folder give the same model and
the tokenizer of the training job."""

from __future__ import annotations

import json

import pytest
import torch

from titanmem.data import ByteTokenizer, HFTokenizer
from titanmem.eval.loading import load_model, model_label, resolve_source
from titanmem.models import TitansConfig, TitansForCausalLM
from titanmem.train.checkpoint import save_checkpoint
from titanmem.train.config import JobConfig
from titanmem.train.export import export_pretrained
from titanmem.train.weights import weights_to_save

CFG = dict(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
           chunk_size=4, segment_size=8, window=5, n_persistent=2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with one checkpoint of a tiny MAC, its job naming the byte tokenizer."""
    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = TitansForCausalLM(TitansConfig(variant="mac", **CFG))
    job = JobConfig(name="tiny", out_dir=str(root)).to_dict()
    save_checkpoint(root / "checkpoints", 7, weights_to_save(model, model.config), {}, model.config.to_dict(), job)
    return root, model.eval()


def _logits(model, ids):
    with torch.no_grad():
        return model(ids, use_cache=False).logits


def test_checkpoint_run_folder_and_export_load_the_same_model(run_dir, tmp_path):
    root, ref = run_dir
    ids = torch.randint(0, 256, (1, 21), generator=torch.Generator().manual_seed(0))
    ckpt = root / "checkpoints" / "step_00000007"
    export_pretrained(ckpt, tmp_path / "hf")
    for path, kind in ((ckpt, "checkpoint"), (root, "checkpoint"), (tmp_path / "hf", "hf")):
        assert resolve_source(path).kind == kind
        model, tok = load_model(path)
        assert isinstance(tok, ByteTokenizer) and not model.training
        # the same weights; from_pretrained's tensors may take another matmul path (float rounding only)
        torch.testing.assert_close(_logits(model, ids), _logits(ref, ids), rtol=1e-5, atol=1e-6)
    assert model_label(ckpt) == f"{root.name}/step_00000007" and model_label(tmp_path / "hf") == "hf"


def test_tokenizer_json_in_the_folder_is_used_without_a_job(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    TitansForCausalLM(TitansConfig(variant="lmm", **{**CFG, "vocab_size": 300})).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="no tokenizer spec"):
        load_model(tmp_path / "m")
    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "m" / "tokenizer.json"))
    _, loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, HFTokenizer) and loaded.encode("a b a") == [0, 1, 0]


def test_paths_that_are_not_models_are_refused(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        resolve_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither config.json"):
        resolve_source(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 8,
                                                                "n_head": 2, "vocab_size": 10}))
    with pytest.raises(ValueError, match="type .gpt2., expected .titans."):
        load_model(tmp_path / "other")
