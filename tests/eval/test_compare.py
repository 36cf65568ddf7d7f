"""``titanmem eval compare``: every registered task on every model, one report with tables and plots;
a new task is one registry entry; failures are reported, not fatal."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest
import torch

from titanmem.eval import compare
from titanmem.eval.compare import add_compare_arguments, parse_task_args, register_task, run_compare
from titanmem.models import TitansConfig, TitansForCausalLM

CFG = dict(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
           chunk_size=8, segment_size=16, window=16, n_persistent=2)


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the task registry, restored after the test."""
    monkeypatch.setattr(compare, "TASKS", dict(compare.TASKS))
    return compare.TASKS


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    (root / "corpus").mkdir()
    for i in range(3):
        (root / "corpus" / f"d{i}.txt").write_text(f"Speech {i}. " + "We the people, in order to form " * (4 + i))
    paths = []
    for seed, variant in enumerate(("mac", "transformer")):
        torch.manual_seed(seed)
        TitansForCausalLM(TitansConfig(variant=variant, **CFG)).save_pretrained(root / variant)
        paths.append(str(root / variant))
    return root, paths


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_compare_arguments(parser)
    return parser.parse_args(list(argv))


def _recall_task(model, tokenizer, *, scale: float = 1.0):
    """A stand-in for another team's runner: a number that differs per model, and a curve."""
    n = sum(p.numel() for p in model.parameters())
    return {"accuracy": scale * (n % 97) / 97, "samples": 3, "by_length": {"x": [1, 2, 4], "y": [0.1, 0.2, 0.4]},
            "raw": ["kept in the JSON only"]}


def _broken_task(model, tokenizer):
    raise ValueError("haystack: needs at least 1 needle, got 0")


def test_compare_runs_ppl_and_a_plugged_task(registry, setup, tmp_path):
    root, paths = setup
    register_task("recall", _recall_task, primary="accuracy", higher_is_better=True, scale=0.5)
    args = _args(*paths, "--tasks", "ppl,recall", "--device", "cpu", "--out", str(tmp_path),
                 "--set", "ppl.corpus=text", "--set", f"ppl.corpus_path={root / 'corpus'}", "--set", "ppl.split=all",
                 "--set", "ppl.piece=19", "--set", "ppl.max_docs=2")
    assert run_compare(args) == 0
    report = json.loads((tmp_path / "compare.json").read_text())
    assert list(report["results"]) == ["mac", "transformer"] and report["tasks"] == ["ppl", "recall"]
    ppl = {m: report["results"][m]["ppl"] for m in report["results"]}
    assert all(7.0 < r["bpb"] < 9.0 and r["documents"] == 2 for r in ppl.values())  # untrained: ~8 bits
    assert report["results"]["mac"]["recall"]["raw"] == ["kept in the JSON only"]
    md = (tmp_path / "report.md").read_text()
    assert "## ppl" in md and "## recall" in md and "| model | bpb |" in md and "| model | accuracy |" in md
    best = min(r["bpb"] for r in ppl.values())
    assert f"**{best:.4f}**" in md
    for png in ("compare_primary.png", "compare_ppl_bpb_by_position.png", "compare_recall_by_length.png"):
        assert (tmp_path / png).stat().st_size > 1000 and f"({png})" in md


def test_a_failing_task_is_reported_and_the_rest_still_runs(registry, setup, tmp_path):
    _, paths = setup
    register_task("broken", _broken_task)
    register_task("recall", _recall_task, primary="accuracy", higher_is_better=True)
    assert run_compare(_args(paths[0], "--tasks", "broken,recall", "--device", "cpu", "--out", str(tmp_path))) == 1
    result = json.loads((tmp_path / "compare.json").read_text())["results"]["mac"]
    assert "needs at least 1 needle" in result["broken"]["error"] and "accuracy" in result["recall"]
    assert "ValueError: haystack" in (tmp_path / "report.md").read_text()


def test_bad_arguments_are_refused(registry, setup, tmp_path, capsys):
    _, paths = setup
    assert run_compare(_args(paths[0], "--tasks", "nope", "--out", str(tmp_path))) == 2
    assert "unknown ['nope']" in capsys.readouterr().err
    assert run_compare(_args(paths[0], "--tasks", "ppl", "--set", "needle.depth=3", "--out", str(tmp_path))) == 2
    with pytest.raises(ValueError, match="TASK.KEY=VALUE"):
        parse_task_args(["max_docs=4"])
    assert parse_task_args(["ppl.max-docs=4", "ppl.corpus=sotu", "x.f=0.5", "x.b=true", "x.n=none"]) == {
        "ppl": {"max_docs": 4, "corpus": "sotu"}, "x": {"f": 0.5, "b": True, "n": None}}
    with pytest.raises(TypeError, match="module:function"):
        register_task("x", "not_a_reference")


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None,
                    reason="needs lm-evaluation-harness: pip install 'titanmem[eval]'")
def test_lm_eval_tasks_plug_into_compare(setup, tmp_path):
    _, paths = setup
    args = _args(paths[0], "--tasks", "lm_eval", "--device", "cpu", "--out", str(tmp_path),
                 "--set", "lm_eval.tasks=titanmem_passkey_ll", "--set", "lm_eval.limit=2")
    assert run_compare(args) == 0
    metrics = json.loads((tmp_path / "compare.json").read_text())["results"]["mac"]["lm_eval"]
    assert metrics["titanmem_passkey_ll.acc"] == 0.0 and metrics["titanmem_passkey_ll.perplexity"] > 1
