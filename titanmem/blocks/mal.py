"""Memory as a Layer (Titans §4.3, eqs. 29-31): the memory layer, then sliding-window attention.

    x~ = [p_1 .. p_Np] || x        (29)
    y  = M(x~)                     (30)
    o  = SW-Attn(y)                (31)

H3-like stacking with a residual around each mixer (§4.4). The persistent tokens are the attention's
(visible to every position); as in MAG, the memory starts from its learned initial state instead of
reading the persistent prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..layers.attention import Attention, AttentionState
from ..layers.neural_memory import NeuralMemoryState
from ..modules.mlp import SwiGLU
from ..modules.norm import RMSNorm
from .lmm import memory_layer
from .spec import BlockSpec

__all__ = ["MALBlock", "MALState"]


@dataclass(frozen=True)
class MALState:
    """Memory state and attention cache (bounded by the window) of one MAL block."""

    memory: NeuralMemoryState
    attn: AttentionState


class MALBlock(nn.Module):
    """``x + M(RMSNorm(x))``, then ``x + SWA(RMSNorm(x))``, then ``x + SwiGLU(RMSNorm(x))``."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.memory_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.memory = memory_layer(spec)
        self.attn_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.attn = Attention(spec.hidden_size, spec.num_heads, spec.head_dim, window=spec.window,
                              n_persistent=spec.n_persistent, rope_theta=spec.rope_theta, impl=spec.attn_impl)
        self.mlp_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.mlp = SwiGLU(spec.hidden_size, spec.intermediate_size)

    def forward(self, x: torch.Tensor, state: MALState | None = None) -> tuple[torch.Tensor, MALState]:
        """``x [B, T, C] -> [B, T, C]`` and the block state."""
        m, memory_state = self.memory(self.memory_norm(x), None if state is None else state.memory)  # eq. 30
        x = x + m
        y, attn_state = self.attn(self.attn_norm(x), None if state is None else state.attn)  # eq. 31
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), MALState(memory_state, attn_state)
