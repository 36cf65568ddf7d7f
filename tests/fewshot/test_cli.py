"""``titanmem fewshot train|eval|sample`` for every model, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from titanmem.cli import main
from titanmem.fewshot.omniglot import DEFAULT_SOURCES

SMALL1 = str(DEFAULT_SOURCES[0])  # 5 alphabets; Early_Aramaic held out
DATA = ["--data", SMALL1, "--test-alphabets", "Early_Aramaic"]
TINY = '{"hidden": 32, "latent": 4, "embedding": 8, "slots": 2, "semantic": 8}'


def _error(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("model", ["vma", "vsm", "vae", "context-vae"])
def test_train_eval_and_sample_from_the_command_line(model, tmp_path, capsys):
    run = tmp_path / model
    assert main(["fewshot", "train", "--model", model, *DATA, "--steps", "3", "--batch-size", "4", "--samples", "2",
                 "--memory-sizes", "2,3", "--config", TINY, "--out", str(run), "--quiet"]) == 0
    trained = json.loads((run / "train.json").read_text())
    assert trained["job"]["model"] == model and trained["history"][-1]["step"] == 3
    assert trained["test_characters"] == 22  # Early Aramaic
    assert main(["fewshot", "eval", "--checkpoint", str(run), "--classes", "1,2", "--memory-sizes", "1,2",
                 "--episodes", "3", "--samples", "4"]) == 0
    written = json.loads((run / "eval.json").read_text())
    results = written["results"]
    assert [(r["classes"], r["memory_size"]) for r in results] == [(1, 1), (1, 2), (2, 2)]
    assert ("address_accuracy" in results[0]) == (model in ("vma", "vsm"))
    assert written["one_shot_runs"]["episodes"] == 400
    assert "NLL bound" in capsys.readouterr().out
    grid = tmp_path / "grid.png"
    assert main(["fewshot", "sample", "--checkpoint", str(run), "--model", model, "--episodes", "2", "--count", "3",
                 "--out", str(grid)]) == 0
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, named", [
    (["fewshot", "train", "--model", "vma", "--data", "/nowhere/omniglot.zip"], "/nowhere/omniglot.zip"),
    (["fewshot", "train", "--model", "vma", *DATA, "--samples", "1"], "samples must be >= 2"),
    (["fewshot", "train", "--model", "vma", *DATA, "--classes", "3", "--memory-sizes", "2"], "classes"),
    (["fewshot", "train", "--model", "vma", "--test-alphabets", "Klingon"], "test_alphabets"),
    (["fewshot", "train", "--model", "vma", *DATA, "--config", '{"width": 2}'], "model_config"),
    (["fewshot", "eval", "--checkpoint", "/nowhere/run"], "--checkpoint /nowhere/run"),
])
def test_mistakes_end_in_one_line(argv, named, capsys):
    code, err = _error(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert named in err, err


def test_checkpoint_of_another_model_and_impossible_episodes(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["fewshot", "train", "--model", "vae", *DATA, "--steps", "1", "--batch-size", "2",
                 "--memory-sizes", "2", "--config", TINY, "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    code, err = _error(["fewshot", "sample", "--checkpoint", str(run), "--model", "vma"], capsys)
    assert code == 2 and "--model vma" in err and "vae" in err
    code, err = _error(["fewshot", "sample", "--checkpoint", str(run), "--classes", "3", "--memory-size", "2"], capsys)
    assert code == 2 and "classes must be <= memory_size" in err
    code, err = _error(["fewshot", "train", "--model", "vae", "--steps", "0"], capsys)
    assert code == 2 and "--steps" in err
