"""A user mistake on the command line ends in one line on stderr that names the argument, and exit status 2.

Each case runs ``main`` in-process (argparse's errors raise ``SystemExit(2)``, errors found later return 2);
two run the real command in a subprocess to show that no traceback reaches the terminal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from titanmem.cli import _GROUPS, main
from titanmem.models import TitansConfig, TitansForCausalLM

REPO = Path(__file__).resolve().parents[1]
ETTH1 = REPO / "data" / "ett" / "ETTh1.csv"
TINY = REPO / "configs" / "tiny" / "mac.toml"


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """``(exit status, stderr)`` of ``titanmem argv``."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def _assert_one_line_error(argv: list[str], named: str, capsys, prefix: str | None = None) -> str:
    code, err = _run(argv, capsys)
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    if prefix is None:  # errors found after parsing name the command: `titanmem eval niah: ...`
        prefix = f"titanmem {' '.join(argv[:2] if argv[0] in _GROUPS else argv[:1])}: "
    assert err.startswith(prefix), err
    assert named in err, (named, err)
    return err




@pytest.mark.parametrize("argv, named", [
    (["demo", "--steps", "-3"], "argument --steps: expected an integer >= 1, got -3"),
    (["demo", "--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
    (["demo", "--steps", "many"], "argument --steps"),
    (["demo", "--threads", "0"], "argument --threads"),
    (["demo", "--seed", "-1"], "argument --seed"),
    (["demo", "--fast"], "--fast"),
])
def test_demo_mistakes(argv, named, capsys, tmp_path):
    _assert_one_line_error([*argv, "--out", str(tmp_path / "demo")], named, capsys)
    assert not (tmp_path / "demo").exists()  # refused before the demo starts


def test_export_mistakes(tmp_path, capsys):
    hf = tmp_path / "hf"
    TitansForCausalLM(TitansConfig(variant="lmm", vocab_size=256, hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=32)).save_pretrained(hf)
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "plain").mkdir()
    (tmp_path / "file.txt").write_text("not a checkpoint")
    capsys.readouterr()  # save_pretrained's progress bar
    out = str(tmp_path / "out")
    for path, named in [(tmp_path / "missing", "does not exist"), (tmp_path / "empty_run", "no checkpoints yet"),
                        (hf, "already a Hugging Face folder"), (tmp_path / "plain", "neither config.json"),
                        (tmp_path / "file.txt", "is not a folder")]:
        err = _assert_one_line_error(["export", str(path), out], named, capsys)
        assert str(path) in err
    _assert_one_line_error(["export", str(hf)], "the following arguments are required: out", capsys,
                           prefix="titanmem export: error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, named", [
    (["bench", "stream", "--tokens", "-10"], "argument --tokens: expected an integer >= 1, got -10"),
    (["bench", "stream", "--piece", "0"], "argument --piece"),
    (["bench", "stream", "--batch", "0"], "argument --batch"),
    (["bench", "stream", "--threads", "0"], "argument --threads"),
    (["bench", "stream", "--hidden-size", "0"], "argument --hidden-size"),
    (["bench", "stream", "--max-growth", "-1"], "argument --max-growth: expected a number >= 0"),
    (["bench", "stream", "--sample-interval", "nan"], "argument --sample-interval"),
    (["bench", "stream", "--variant", "gpt"], "argument --variant: invalid choice"),
    (["bench", "stream", "--tokens", "10", "--preset", "huge"], "preset must be one of"),
    (["bench", "stream", "--tokens", "10", "--device", "tpu"], "device must be"),
])
def test_bench_stream_mistakes(argv, named, capsys):
    _assert_one_line_error(argv, named, capsys)


@pytest.mark.parametrize("extra, named", [
    (["--horizon", "-1"], "argument --horizon: expected comma-separated integers >= 1"),
    (["--horizon", "0"], "argument --horizon"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
    (["--patience", "-1"], "argument --patience"),
    (["--lookback", "0"], "argument --lookback"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--lr", "0"], "argument --lr: expected a number > 0"),
    (["--seeds", "-1"], "argument --seeds"),
    (["--max-train-windows", "0"], "argument --max-train-windows"),
    (["--model", "arima"], "argument --model"),
    (["--config", "{width: 8}"], "Expecting property name"),
    (["--config", '{"width": 8}'], "width"),
])
def test_forecast_mistakes(extra, named, capsys, tmp_path):
    _assert_one_line_error(["forecast", "--data", str(ETTH1), "--out", str(tmp_path), *extra], named, capsys)


def test_forecast_data_that_does_not_exist(capsys, tmp_path):
    _assert_one_line_error(["forecast", "--data", str(tmp_path / "ETTh9.csv")], "--data", capsys)
    _assert_one_line_error(["forecast"], "the following arguments are required: --data", capsys,
                           prefix="titanmem forecast: error: ")


@pytest.mark.parametrize("command", ["niah", "mqar", "babilong"])
@pytest.mark.parametrize("extra, named", [
    (["--lengths", "0"], "argument --lengths"),
    (["--lengths", "1024,x"], "argument --lengths"),
    (["--samples", "0"], "argument --samples: expected an integer >= 1, got 0"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--prefill-chunk", "-5"], "argument --prefill-chunk"),
    (["--seed", "-2"], "argument --seed"),
])
def test_eval_task_common_mistakes(command, extra, named, capsys, tmp_path):
    _assert_one_line_error(["eval", command, "--model", str(tmp_path), *extra], named, capsys)


@pytest.mark.parametrize("argv, named", [
    (["eval", "mqar", "--num-queries", "0"], "argument --num-queries"),
    (["eval", "mqar", "--num-keys", "-1"], "argument --num-keys"),
    (["eval", "mqar", "--num-values", "0"], "argument --num-values"),
    (["eval", "mqar", "--num-pairs", "0"], "argument --num-pairs"),
    (["eval", "babilong", "--num-facts", "0"], "argument --num-facts: expected an integer >= 2, got 0"),
    (["eval", "niah", "--depths", "120"], "argument --depths"),
    (["eval", "niah", "--digits", "0"], "argument --digits"),
])
def test_eval_task_option_mistakes(argv, named, capsys, tmp_path):
    _assert_one_line_error([*argv, "--model", str(tmp_path)], named, capsys)


@pytest.mark.parametrize("command", ["niah", "mqar", "babilong"])
def test_eval_task_model_that_does_not_exist(command, capsys, tmp_path):
    err = _assert_one_line_error(["eval", command, "--model", str(tmp_path / "nowhere")], "--model", capsys)
    assert "nowhere" in err
    _assert_one_line_error(["eval", command], "the following arguments are required: --model", capsys,
                           prefix=f"titanmem eval {command}: error: ")


@pytest.mark.parametrize("argv, named", [
    (["eval", "ppl", "--model", "{missing}"], "missing"),
    (["eval", "ppl", "--model", "{tmp}", "--piece", "0"], "argument --piece"),
    (["eval", "ppl", "--model", "{tmp}", "--max-docs", "0"], "argument --max-docs"),
    (["eval", "ppl", "--model", "{tmp}", "--split", "test"], "argument --split: invalid choice"),
    (["eval", "lm-eval", "--model", "{tmp}", "--limit", "0"], "argument --limit"),
    (["eval", "lm-eval", "--model", "{tmp}", "--num-fewshot", "-1"], "argument --num-fewshot"),
    (["eval", "lm-eval", "--model", "{tmp}", "--piece", "0"], "argument --piece"),
    (["eval", "compare", "{missing}"], "missing"),
    (["eval", "compare", "{tmp}", "--tasks", "nope"], "nope"),
    (["eval", "train-task", "--config", "{missing}"], "missing"),
    (["eval", "train-task", "--set", "train.bogus=1"], "bogus"),
])
def test_eval_other_mistakes(argv, named, capsys, tmp_path):
    argv = [a.format(tmp=tmp_path, missing=tmp_path / "missing") for a in argv]
    _assert_one_line_error(argv, named, capsys)


def test_train_and_prepare_mistakes(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr = 1")
    for command in ("train", "prepare"):
        _assert_one_line_error([command], "--config is required", capsys)
        _assert_one_line_error([command, "--config", "missing.toml"], "missing.toml", capsys)
        _assert_one_line_error([command, "--config", str(bad)], "not valid TOML", capsys)
        _assert_one_line_error([command, "--config", str(TINY), "--optim.lr=-1"], "lr", capsys)
        _assert_one_line_error([command, "--config", str(TINY), "--fast"], "--fast", capsys,
                               prefix=f"titanmem {command}: error: unrecognised argument")
    _assert_one_line_error(["prepare", "--config", str(TINY), f"--data.data_dir={tmp_path / 'd'}",
                            "--data.corpus=text", f"--data.corpus_path={tmp_path / 'no_corpus'}"], "no_corpus", capsys)


def test_train_resume_from_a_checkpoint_that_does_not_exist(capsys, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for d in range(4):
        (corpus / f"doc{d}.txt").write_text(f"document {d} " * 100)
    argv = ["train", "--config", str(TINY), "--resume", str(tmp_path / "step_00000009"), "--data.corpus=text",
            f"--data.corpus_path={corpus}", "--data.val_fraction=0.25", f"--data.data_dir={tmp_path / 'data'}",
            f"--out_dir={tmp_path / 'run'}", "--run.device=cpu", "--log.progress=false"]
    _assert_one_line_error(argv, "step_00000009", capsys)


@pytest.mark.parametrize("argv, named", [
    (["recall", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    (["recall", "--seed", "x"], "argument --seed"),
    (["recall", "--pairs", "3"], "--pairs"),
])
def test_recall_mistakes(argv, named, capsys):
    _assert_one_line_error(argv, named, capsys)


@pytest.mark.parametrize("argv, named, prefix", [
    ([], "the following arguments are required: <command>", "titanmem: error: "),
    (["nope"], "invalid choice: 'nope'", "titanmem: error: "),
    (["eval"], "the following arguments are required: <command>", "titanmem eval: error: "),
    (["bench", "nope"], "invalid choice: 'nope'", "titanmem bench: error: "),
    (["data"], "the following arguments are required: <command>", "titanmem data: error: "),
])
def test_command_name_mistakes(argv, named, prefix, capsys):
    _assert_one_line_error(argv, named, capsys, prefix=prefix)


@pytest.mark.parametrize("argv, named", [
    (["demo", "--steps", "-3"], "argument --steps"),
    (["export", "runs/no-such-run", "out"], "runs/no-such-run"),
])
def test_no_traceback_reaches_the_terminal(argv, named, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "titanmem.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1 and named in proc.stderr, proc.stderr
    assert proc.stdout == "" and not (tmp_path / "out").exists()



def test_training_that_diverges_ends_in_one_line_and_status_1(monkeypatch, capsys):
    from titanmem.layers import MemoryDivergedError

    def diverging(job, log=print):
        raise MemoryDivergedError("layers.1.memory: the memory diverged (first non-finite read at position 256)")

    monkeypatch.setattr("titanmem.eval.task_train.run_task_job", diverging)
    code = main(["eval", "train-task", "--config", str(Path(__file__).parents[1] / "configs/tasks/lmm.toml"),
                 "--train.steps=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("titanmem eval train-task: training diverged: layers.1.memory") and "Traceback" not in err[0]


@pytest.mark.parametrize("argv, named", [
    (["train", "--config", str(TINY), "--data.corpus=nosuch"], "data.corpus must be one of"),
    (["eval", "train-task", "--config", str(REPO / "configs/tasks/mac.toml"), "--train.device=gpu"],
     "train.device: device must be 'auto', 'cpu' or 'cuda[:N]', got 'gpu'"),
    (["forecast", "--data", str(REPO / "README.md")], f"--data {REPO / 'README.md'}"),
])
def test_values_found_wrong_after_parsing_are_one_line_errors(argv, named, capsys):
    _assert_one_line_error(argv, named, capsys)


def test_a_cuda_device_on_a_machine_without_one_is_a_one_line_error(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    _assert_one_line_error(["train", "--config", str(TINY), "--run.device=cuda"],
                           "run.device: device 'cuda' requested but torch.cuda.is_available() is False", capsys)
    _assert_one_line_error(["eval", "train-task", "--config", str(REPO / "configs/tasks/mac.toml"),
                            "--train.device=cuda"], "train.device: device 'cuda' requested", capsys)
