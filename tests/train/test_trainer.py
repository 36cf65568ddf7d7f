"""The training loop: it learns, validates, logs, resumes exactly and exports a loadable model."""

from __future__ import annotations

import csv
import json
import math
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM

import titanmem.models  # noqa: F401  (registers the Auto classes)
from titanmem.train import export_pretrained, load_checkpoint, train
from titanmem.train.checkpoint import list_checkpoints
from titanmem.train.metrics import CSV_COLUMNS
from titanmem.train.weights import load_weights

from .conftest import small_job


def _final_weights(cfg):
    return load_checkpoint(list_checkpoints(f"{cfg.out_dir}/checkpoints")[0])["weights"]


def test_thirty_steps_on_shakespeare_lower_the_loss_and_log_everything(tmp_path):
    cfg = small_job(tmp_path, "mac", "--schedule.steps=30", "--eval.every=10", "--checkpoint.every=0")
    result = train(cfg)
    assert len(result.losses) == 30 and all(math.isfinite(x) for x in result.losses)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.5, (first, last)
    assert first == pytest.approx(math.log(256), abs=0.3)  # starts near a uniform guess over bytes
    val = result.validation
    assert val is not None and math.isfinite(val.bpb) and val.bpb == pytest.approx(val.loss / math.log(2))
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert [float(r["loss"]) for r in rows] == result.losses
    assert [int(r["step"]) for r in rows if r["val_bpb"]] == [10, 20, 30]
    assert float(rows[-1]["val_bpb"]) == val.bpb
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["val_bpb"] == val.bpb
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["step"] == 1 and len(lines) == 30


@pytest.mark.parametrize(
    ("variant", "extra"),
    [
        ("mac", ()),
        ("lmm", ("--run.tbptt=true", "--data.sampling=sequential", "--optim.grad_accum=2")),
        ("mag", ("--run.tbptt=true", "--data.sampling=sequential")),
    ],
)
def test_resume_after_a_stop_repeats_the_uninterrupted_run_bit_for_bit(tmp_path, corpus_dir, variant, extra):
    straight = small_job(tmp_path / "a", variant, *extra, corpus=corpus_dir)
    full = train(straight)
    interrupted = small_job(tmp_path / "b", variant, *extra, corpus=corpus_dir)
    first = train(interrupted, stop_at=6)  # checkpoint at 4, then "killed" at 6
    assert first.losses == full.losses[:6]
    resumed = train(interrupted, resume=True)
    assert resumed.start_step == 4
    assert resumed.losses == full.losses[4:]
    for name, tensor in _final_weights(straight).items():
        assert torch.equal(tensor, _final_weights(interrupted)[name]), name
    with open(tmp_path / "b" / "run" / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(1, 9))  # the rows of steps 5-6 before the stop were replaced, not repeated


def test_resume_skips_a_corrupt_newest_checkpoint(tmp_path, corpus_dir):
    full = train(small_job(tmp_path / "a", "lmm", "--checkpoint.every=2", corpus=corpus_dir))
    cfg = small_job(tmp_path / "b", "lmm", "--checkpoint.every=2", corpus=corpus_dir)
    train(cfg, stop_at=5)
    newest = list_checkpoints(f"{cfg.out_dir}/checkpoints")[0]
    assert newest.name == "step_00000004"
    with (newest / "trainer.pt").open("r+b") as f:
        f.truncate(100)
    with pytest.warns(RuntimeWarning, match="step_00000004.*truncated"):
        resumed = train(cfg, resume=True)
    assert resumed.start_step == 2 and resumed.losses == full.losses[2:]


def test_a_fresh_run_refuses_to_mix_with_an_earlier_runs_checkpoints(tmp_path, corpus_dir):
    cfg = small_job(tmp_path, "lmm", corpus=corpus_dir)
    train(cfg, stop_at=4)
    with pytest.raises(ValueError, match="--resume"):
        train(cfg)


def test_resume_with_a_different_model_is_refused(tmp_path, corpus_dir):
    train(small_job(tmp_path, "lmm", corpus=corpus_dir), stop_at=4)
    with pytest.raises(ValueError, match="memory_depth"):
        train(small_job(tmp_path, "lmm", "--model.memory_depth=1", corpus=corpus_dir), resume=True)


def test_export_loads_with_auto_model_and_gives_the_same_logits(tmp_path, corpus_dir):
    cfg = small_job(tmp_path, "mal", "--schedule.steps=2", "--checkpoint.every=0", corpus=corpus_dir)
    train(cfg)
    checkpoint = list_checkpoints(f"{cfg.out_dir}/checkpoints")[0]
    out = export_pretrained(checkpoint, tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.randint(0, 256, (1, 20))
    loaded = load_checkpoint(checkpoint)
    reference = titanmem.models.TitansForCausalLM(titanmem.models.TitansConfig.from_dict(loaded["model_config"]))
    load_weights(reference, loaded["weights"], checkpoint)
    reference.eval()  # from_pretrained returns the model in eval mode
    with torch.no_grad():
        # same weights and config; HF's loader may lay tensors out differently (3e-8 differences seen)
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, rtol=1e-6, atol=1e-6)
    assert json.loads((out / "training_job.json").read_text())["model"]["variant"] == "mal"


def test_bf16_autocast_trains_with_a_float32_memory_state(tmp_path, corpus_dir):
    cfg = small_job(tmp_path, "lmm", "--run.precision=bf16", "--schedule.steps=4", corpus=corpus_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(cfg)
    assert all(math.isfinite(x) for x in result.losses)
    assert all(t.dtype == torch.float32 for t in _final_weights(cfg).values())


def test_tensorboard_logging_writes_events_or_names_the_missing_package(tmp_path, corpus_dir):
    cfg = small_job(tmp_path, "lmm", "--log.tensorboard=true", "--schedule.steps=2", "--checkpoint.every=0",
                    corpus=corpus_dir)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tensorboard"):
            train(cfg)
    else:
        train(cfg)
        assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
