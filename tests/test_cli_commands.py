"""The ``titanmem`` command reaches every registered subcommand (eval, bench, forecast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from titanmem.cli import _COMMANDS, _GROUPS, main

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tasks"


@pytest.mark.parametrize("argv", [[name] for name in _COMMANDS]
                         + [[group, name] for group, (_, commands) in _GROUPS.items() for name in commands])
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage: titanmem" in capsys.readouterr().out


def test_train_task_takes_section_key_overrides_through_main(tmp_path):
    overrides = ["model.hidden_size=32", "model.num_hidden_layers=1", "model.num_attention_heads=2",
                 "model.intermediate_size=64", f"out_dir='{tmp_path / 'tt'}'", "train.length=100", "train.steps=2",
                 "train.batch_size=2", "train.warmup_steps=1", "eval.multipliers=[1]", "eval.samples=1",
                 "eval.depths=[50.0]"]
    argv = ["eval", "train-task", "--config", str(CONFIGS / "transformer.toml"), *(f"--{o}" for o in overrides)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "tt" / "results.json").read_text())
    assert results["job"]["model"]["hidden_size"] == 32 and results["job"]["train"]["steps"] == 2


def test_bench_stream_runs_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "stream.json"
    argv = ["bench", "stream", "--tokens", "3000", "--piece", "1000", "--variant", "lmm", "--hidden-size", "32",
            "--layers", "1", "--heads", "2", "--threads", "1", "--json", str(out), "--quiet"]
    assert main(argv) == 0
    assert json.loads(out.read_text())["tokens"] == 3000


def test_unknown_arguments_are_refused_outside_the_jobs_that_take_overrides():
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "niah", "--model", "x", "--train.steps=3"])
    assert exit_info.value.code == 2
