"""Memory as a Gate (Titans §4.2, eqs. 26-28): sliding-window attention and memory side by side.

    x~ = [p_1 .. p_Np] || x                    (26)  persistent tokens, visible to every position
    y  = SW-Attn*(x~)                          (27)
    o  = y (x) M(x~)                           (28)  "normalise y and M(x~) with learnable vector-valued
                                                     weights, followed by a non-linearity"

Choices where the paper is silent: (x) is ``RMSNorm_y(y) * sigmoid(RMSNorm_m(M(x)))``; the memory
branch reads the block input x itself: the persistent prefix would only move the memory from its
initial state to another parameter-determined state before x, which the learned initial memory
already is.
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

__all__ = ["MAGBlock", "MAGState"]


@dataclass(frozen=True)
class MAGState:
    """Attention cache (bounded by the window) and memory state of one MAG block."""

    attn: AttentionState
    memory: NeuralMemoryState


class MAGBlock(nn.Module):
    """``x + [RMSNorm(SWA(h)) * sigmoid(RMSNorm(M(h)))]``, ``h = RMSNorm(x)``, then ``x + SwiGLU``."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.attn = Attention(spec.hidden_size, spec.num_heads, spec.head_dim, window=spec.window,
                              n_persistent=spec.n_persistent, rope_theta=spec.rope_theta, impl=spec.attn_impl)
        self.memory = memory_layer(spec)
        self.attn_out_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.memory_out_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.mlp_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.mlp = SwiGLU(spec.hidden_size, spec.intermediate_size)

    def forward(self, x: torch.Tensor, state: MAGState | None = None) -> tuple[torch.Tensor, MAGState]:
        """``x [B, T, C] -> [B, T, C]`` and the block state."""
        h = self.norm(x)
        y, attn_state = self.attn(h, None if state is None else state.attn)  # eq. 27
        m, memory_state = self.memory(h, None if state is None else state.memory)
        x = x + self.attn_out_norm(y) * torch.sigmoid(self.memory_out_norm(m))  # eq. 28
        return x + self.mlp(self.mlp_norm(x)), MAGState(attn_state, memory_state)
