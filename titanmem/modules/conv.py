"""Causal depthwise convolution over time with a carried tail (the short conv of Titans §4.4)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_int, check_tensor

__all__ = ["CausalDepthwiseConv1d"]


class CausalDepthwiseConv1d(nn.Module):
    """Per-channel causal convolution: ``y_t = bias + sum_j weight[:, j] * x_{t - K + 1 + j}``.

    Output ``t`` sees inputs ``t-K+1 .. t``; inputs before the start of the sequence are zeros.

    Args:
        channels: number of channels C (each has its own filter).
        kernel_size: filter length K >= 1.
        bias: whether a per-channel bias is added.

    ``forward(x [B, T, C], tail [B, K-1, C] | None) -> (y [B, T, C], new_tail [B, K-1, C])``.
    ``tail`` holds the last K-1 inputs of the previous piece (None = zeros, i.e. sequence start), so
    feeding a sequence in any pieces, including empty ones, gives exactly the outputs of one call.
    """

    def __init__(self, channels: int, kernel_size: int = 4, bias: bool = True) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, 1)
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        # nn.Conv1d's default init for a depthwise filter: fan_in = kernel_size.
        bound = 1.0 / math.sqrt(kernel_size)
        self.weight = nn.Parameter(torch.empty(channels, kernel_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(channels).uniform_(-bound, bound)) if bias else None

    def initial_tail(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Zero tail ``[batch_size, K-1, C]``: the state at the start of a sequence."""
        dtype = self.weight.dtype if dtype is None else dtype
        device = self.weight.device if device is None else device
        return torch.zeros(batch_size, self.kernel_size - 1, self.channels, device=device, dtype=dtype)

    def forward(
        self, x: torch.Tensor, tail: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolve ``x [B, T, C]`` after ``tail``; returns ``(y [B, T, C], new_tail [B, K-1, C])``."""
        check_tensor("x", x, 3, self.channels)
        B, T, _ = x.shape
        if tail is None:
            tail = self.initial_tail(B, x.device, x.dtype)
        else:
            check_tensor("tail", tail, 3, self.channels)
            if tail.shape[:2] != (B, self.kernel_size - 1):
                raise ValueError(
                    f"tail must have shape [{B}, {self.kernel_size - 1}, {self.channels}] for x of "
                    f"shape {tuple(x.shape)}, got {tuple(tail.shape)}"
                )
            tail = tail.to(x.dtype)
        padded = torch.cat([tail, x], dim=1)  # [B, K-1+T, C]
        # A sum of K shifted products rather than F.conv1d: each output is computed by the same
        # operations in the same order whatever T is, so pieces reproduce one call bit for bit.
        y = padded[:, 0:T] * self.weight[:, 0]
        for j in range(1, self.kernel_size):
            y = y + padded[:, j : j + T] * self.weight[:, j]
        if self.bias is not None:
            y = y + self.bias
        return y, padded[:, T:].clone()  # a copy: a view would keep the whole piece alive in the state

    def step(self, x: torch.Tensor, tail: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: ``x [B, C] -> (y [B, C], new_tail [B, K-1, C])``; same numbers as ``forward``."""
        check_tensor("x", x, 2, self.channels)
        y, new_tail = self.forward(x.unsqueeze(1), tail)
        return y.squeeze(1), new_tail

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, bias={self.bias is not None}"
