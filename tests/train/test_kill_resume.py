"""A training process killed with SIGKILL (mid-run, maybe mid-checkpoint) resumes to the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from titanmem.train import load_checkpoint, load_config, train
from titanmem.train.checkpoint import list_checkpoints

from .conftest import CONFIGS, SHRINK


def _args(tmp_path, corpus_dir, out):
    return [*SHRINK, "--data.corpus=text", f"--data.corpus_path={corpus_dir}", "--data.val_fraction=0.2",
            f"--data.data_dir={tmp_path / 'data'}", "--data.seq_len=32", "--data.batch_size=4",
            "--schedule.steps=60", "--schedule.warmup_steps=5", "--checkpoint.every=3", "--checkpoint.keep=2",
            "--log.every=1", "--log.progress=false", "--log.plot=false", "--eval.tokens=256", "--eval.every=0",
            "--run.device=cpu", "--run.threads=1", f"--out_dir={out}"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, corpus_dir):
    config = CONFIGS / "tiny" / "lmm.toml"
    reference = train(load_config(config, _args(tmp_path, corpus_dir, tmp_path / "ref")))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "titanmem.cli", "train", "--config", str(config),
                             *_args(tmp_path, corpus_dir, out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    try:
        while not list_checkpoints(out / "checkpoints") or list_checkpoints(out / "checkpoints")[0].name < "step_00000012":
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = train(load_config(config, _args(tmp_path, corpus_dir, out)), resume=True)
    assert 12 <= resumed.start_step < 60
    assert resumed.losses == reference.losses[resumed.start_step:]
    final = load_checkpoint(list_checkpoints(out / "checkpoints")[0])["weights"]
    expected = load_checkpoint(list_checkpoints(tmp_path / "ref" / "checkpoints")[0])["weights"]
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[k], expected[k]) for k in final)
