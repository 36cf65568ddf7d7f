"""Tensors and contexts on the training device: loss sums that collectives can reduce, autocast."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast_context", "loss_accumulator"]


def loss_accumulator(device: torch.device) -> torch.Tensor:
    """A zero on ``device`` to sum losses in: float64, except on MPS, which has no float64.

    It lives on the training device because the process group reduces it there (NCCL cannot reduce
    CPU tensors), and summing on the device saves a host sync per batch.
    """
    return torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing when ``dtype`` is None.

    Nothing rather than ``autocast(enabled=False)``: a disabled autocast would still turn off an
    autocast context the caller opened.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
