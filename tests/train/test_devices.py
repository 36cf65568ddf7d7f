"""What the trainer reduces and restores lives on the training device (NCCL reduces only device tensors).

The "device" here is PyTorch's meta device: tensors with shapes and no data, which shows on a CPU-only
machine whether a tensor was created on the training device or on the CPU.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from titanmem.ops import MemoryState
from titanmem.train import trainer, validate as validate_module
from titanmem.train.distributed import DistInfo, all_reduce_sum
from titanmem.train.loop import optimizer_step

META = torch.device("meta")


class _TinyLM(nn.Module):
    """Embedding logits: enough of a causal LM for the loops, on any device."""

    def __init__(self, vocab: int = 11) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, vocab)

    def forward(self, input_ids, use_cache=False, cache=None):
        return SimpleNamespace(logits=self.embed(input_ids))


class _Reduced(Exception):
    """Raised by the recording all_reduce_sum: the meta sums have no values to go on with."""


def _record_reductions(monkeypatch, module) -> list[torch.device]:
    seen: list[torch.device] = []

    def recording(values, info):
        seen.append(values.device)
        raise _Reduced

    monkeypatch.setattr(module, "all_reduce_sum", recording)
    return seen


def test_all_reduce_sum_refuses_a_tensor_off_the_training_device():
    with pytest.raises(ValueError, match=r"training device meta.*got a tensor on cpu"):
        all_reduce_sum(torch.zeros(2, dtype=torch.float64), DistInfo(0, 2, 0, META))


def test_validation_sums_on_the_training_device(monkeypatch):
    seen = _record_reductions(monkeypatch, validate_module)
    model = _TinyLM().to(META)
    with pytest.raises(_Reduced):
        validate_module.validate(model, np.arange(200) % 11, seq_len=8, batch_size=2, max_tokens=64,
                                 bytes_per_token=1.0, info=DistInfo(0, 2, 0, META), shard=True)
    assert seen == [META]


def test_a_training_step_sums_its_losses_on_the_training_device():
    model = _TinyLM().to(META)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = iter([torch.randint(0, 11, (2, 9)).to(META) for _ in range(3)])
    # skip_nonfinite reads the gradient norm, which a meta tensor does not have.
    loss_sum, grad_norm, lr = optimizer_step(model, optimizer, None, batches, trainer.lm_loss, grad_accum=3,
                                             device=META, skip_nonfinite=False)
    assert loss_sum.device == META and loss_sum.dtype == torch.float64 and grad_norm.device == META
    assert lr == 1e-3 and next(batches, None) is None  # one step read the three micro-batches


def test_carried_states_are_restored_onto_the_training_device():
    state = MemoryState((torch.ones(1, 2, 3, 3),), (torch.zeros(1, 2, 3, 3),))
    saved = [{"states": {"0": {"memory": state, "keys": [torch.ones(1, 4)]}}, "seen": 7}]
    cache = trainer._restore_cache(saved, DistInfo(0, 1, 0, META))
    restored = cache.states[0]
    assert cache.seen_tokens == 7
    assert restored["memory"].weights[0].device == META and restored["memory"].momentum[0].device == META
    assert restored["keys"][0].device == META
