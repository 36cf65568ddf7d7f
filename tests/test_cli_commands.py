"""The ``titanmem`` command reaches every registered subcommand (eval, bench, forecast, export, ...); its
help covers every option; its parser imports a command's module only when that command is chosen."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from titanmem.cli import _COMMANDS, _GROUPS, _parser, main
from titanmem.train import train
from titanmem.train.checkpoint import list_checkpoints

from .train.conftest import small_job

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
                 "model.intermediate_size=64", f"out_dir='{tmp_path / 'tt'}'", "train.length=100",
                 "train.mixed_lengths=[]", "train.steps=2", "train.batch_size=2", "train.warmup_steps=1",
                 "eval.multipliers=[1]", "eval.samples=1", "eval.depths=[50.0]"]
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


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every ``(path, parser, one-line help)`` under ``parser``, groups included, each parser's arguments loaded."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                sub.format_help()  # adds the lazily registered arguments
                yield (*path, name), sub, helps.get(name)
                yield from _subcommands(sub, (*path, name))


def test_every_option_of_every_subcommand_has_help():
    missing, walked = [], []
    for path, parser, one_line in _subcommands(_parser()):
        walked.append(" ".join(path))
        if not (parser.description or "").strip() and not (one_line or "").strip():
            missing.append(f"titanmem {' '.join(path)}: no description or help")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"titanmem {' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    expected = {*_COMMANDS, *_GROUPS} | {f"{g} {n}" for g, (_, commands) in _GROUPS.items() for n in commands}
    assert set(walked) == expected


def test_help_lists_commands_without_importing_their_modules():
    # A fresh interpreter: this test process has imported the command modules already.
    modules = sorted(({m for _, m, _, _ in _COMMANDS.values()}
                      | {m for _, commands in _GROUPS.values() for _, m, _, _ in commands.values()}) - {"titanmem.cli"})
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from titanmem.cli import main

        def imported_after(argv):
            with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
                main(argv)
            return out.getvalue(), [m for m in {modules!r} if m in sys.modules]

        print(json.dumps([imported_after(["--help"]), imported_after(["eval", "--help"]),
                          imported_after(["eval", "niah", "--help"])]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    (top, top_mods), (group, group_mods), (niah, niah_mods) = json.loads(proc.stdout.splitlines()[-1])
    assert top_mods == [] and group_mods == []
    assert all(name in top for name in [*_COMMANDS, *_GROUPS])
    assert all(re.search(rf"^ +{re.escape(name)}\b", group, re.M) for name in _GROUPS["eval"][1])
    assert "needle-in-a-haystack" in group and "lm-evaluation-harness" in group
    assert niah_mods == ["titanmem.eval.task_cli"] and "--num-facts" not in niah and "--depths" in niah


@pytest.fixture
def trained_run(tmp_path):
    """A run folder trained by the trainer for 8 steps: checkpoints at steps 4 and 8."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for d in range(6):
        (corpus / f"doc{d}.txt").write_text(f"document {d}: the memory learns what surprises it. " * 40)
    cfg = small_job(tmp_path, "lmm", corpus=corpus)
    train(cfg)
    return Path(cfg.out_dir)


def test_export_takes_a_run_folder_and_its_newest_checkpoint_that_verifies(trained_run, tmp_path, capsys):
    from titanmem.models import TitansForCausalLM

    step4, step8 = sorted(list_checkpoints(trained_run / "checkpoints"))
    assert main(["export", str(trained_run), str(tmp_path / "newest")]) == 0
    assert str(step8) in capsys.readouterr().out
    newest = TitansForCausalLM.from_pretrained(str(tmp_path / "newest"))
    with (step8 / "model.safetensors").open("r+b") as f:  # damage the newest: export falls back to step 4
        f.truncate(100)
    with pytest.warns(RuntimeWarning, match="step_00000008"):
        assert main(["export", str(trained_run), str(tmp_path / "older")]) == 0
    assert str(step4) in capsys.readouterr().out
    older = TitansForCausalLM.from_pretrained(str(tmp_path / "older"))
    assert json.loads((tmp_path / "older" / "training_job.json").read_text())["out_dir"] == str(trained_run)
    # step 4 and step 8 hold different weights, so the fallback really read the older checkpoint
    assert any(not torch.equal(a, b) for a, b in zip(newest.state_dict().values(), older.state_dict().values()))
    assert main(["export", str(step4), str(tmp_path / "direct")]) == 0
    direct = TitansForCausalLM.from_pretrained(str(tmp_path / "direct"))
    assert all(torch.equal(a, b) for a, b in zip(older.state_dict().values(), direct.state_dict().values()))


def test_train_refuses_to_start_over_a_run_with_checkpoints(trained_run, capsys):
    config = trained_run / "job.toml"
    config.write_text(f"out_dir = {str(trained_run)!r}\n")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("titanmem train: out_dir") and "--resume" in err and err.count("\n") == 1


def test_train_and_prepare_require_a_config_and_point_at_configs(capsys):
    for command in ("train", "prepare"):
        assert main([command]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"titanmem {command}: --config is required") and "configs/tiny/mac.toml" in err
        assert err.count("\n") == 1
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and "required" in capsys.readouterr().out
