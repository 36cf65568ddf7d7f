"""SwiGLU feed-forward (Shazeer, 2020): the channel mixer of every Titans block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int

__all__ = ["SwiGLU"]


class SwiGLU(nn.Module):
    """``y = down(silu(gate(x)) * up(x))``.

    Args:
        hidden_size: input and output width C.
        intermediate_size: width I of the gated hidden layer.
        bias: whether the three linear maps have a bias.

    Shapes: ``x [..., C] -> y [..., C]``.
    """

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False) -> None:
        super().__init__()
        check_int("hidden_size", hidden_size, 1)
        check_int("intermediate_size", intermediate_size, 1)
        self.gate = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.up = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.down = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the gated MLP to ``x [..., C]``."""
        return self.down(F.silu(self.gate(x)) * self.up(x))
