"""The training commands flush subnormal floats to zero on the CPU (x86 computes on them very slowly)."""

from __future__ import annotations

import pytest
import torch

from titanmem.devices import prepare_cpu
from titanmem.train import train, trainer

from .conftest import small_job


def _subnormal_product() -> float:
    # 1e-30 * 1e-10 = 1e-40 lies below float32's smallest normal number (1.18e-38).
    return (torch.tensor([1e-30]) * torch.tensor([1e-10])).item()


@pytest.fixture
def restore_threads():
    # tests/conftest.py turns the flushing off again after every test.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_prepare_cpu_flushes_subnormals_and_sets_threads(restore_threads):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals (torch.set_flush_denormal needs x86 SSE3)")
    assert 0.0 < _subnormal_product() < torch.finfo(torch.float32).tiny
    prepare_cpu(1)
    assert _subnormal_product() == 0.0
    assert torch.get_num_threads() == 1
    assert (torch.tensor([1e-30]) * torch.tensor([1e-3])).item() == pytest.approx(1e-33)  # normal floats unchanged


def test_prepare_cpu_refuses_negative_threads():
    with pytest.raises(ValueError, match=r"threads must be >= 0.*got -1"):
        prepare_cpu(-1)
    with pytest.raises(TypeError, match=r"threads must be an int.*got NoneType None"):
        prepare_cpu(None)


def test_train_prepares_the_cpu_with_the_configs_threads(tmp_path, corpus_dir, monkeypatch):
    seen: list[int] = []
    monkeypatch.setattr(trainer, "prepare_cpu", seen.append)
    train(small_job(tmp_path, "lmm", "--run.threads=1", "--schedule.steps=2", "--eval.every=0",
                    "--checkpoint.every=0", corpus=corpus_dir))
    assert seen == [1]
