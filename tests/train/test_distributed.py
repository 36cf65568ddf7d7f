"""Two processes under torchrun (gloo, CPU) train like one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from titanmem.train import load_config, train
from titanmem.train.metrics import read_metrics

from .conftest import CONFIGS, SHRINK


def _common(tmp_path, corpus_dir):
    return [*SHRINK, "--data.corpus=text", f"--data.corpus_path={corpus_dir}", "--data.val_fraction=0.2",
            f"--data.data_dir={tmp_path / 'data'}", "--data.seq_len=32", "--schedule.steps=10",
            "--schedule.warmup_steps=2", "--log.every=1", "--log.progress=false", "--log.plot=false",
            "--eval.tokens=512", "--eval.every=5", "--checkpoint.every=5", "--run.device=cpu"]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, corpus_dir, strategy):
    common = _common(tmp_path, corpus_dir)
    config = str(CONFIGS / "tiny" / "mag.toml")
    single = train(load_config(config, [*common, "--data.batch_size=4", f"--out_dir={tmp_path / 'one'}"]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "titanmem.cli",
           "train", "--config", config, *common, "--data.batch_size=2", f"--run.distributed={strategy}",
           f"--out_dir={tmp_path / 'two'}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_metrics(tmp_path / "two" / "metrics.csv")
    losses = [r["loss"] for r in rows]
    assert len(losses) == 10
    assert losses == pytest.approx(single.losses, rel=1e-4, abs=1e-5)
    assert rows[-1]["val_loss"] == pytest.approx(single.validation.loss, rel=1e-4)
    # only rank 0 wrote files: one set of metrics, checkpoints at 5 and 10
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["step_00000005", "step_00000010"]
    # its checkpoint is portable: one process resumes it and continues as the single run did
    resumed = train(load_config(config, [*common, "--data.batch_size=4", f"--out_dir={tmp_path / 'two'}"]),
                    resume=tmp_path / "two" / "checkpoints" / "step_00000005")
    assert resumed.losses == pytest.approx(single.losses[5:], rel=1e-4, abs=1e-5)
