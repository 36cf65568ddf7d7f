"""Titans (LMM): the neural memory as the only token mixer (paper §4.4, "memory without attention")."""

from __future__ import annotations

import torch
from torch import nn

from ..layers.neural_memory import NeuralMemory, NeuralMemoryState
from ..modules.mlp import SwiGLU
from ..modules.norm import RMSNorm
from .spec import BlockSpec

__all__ = ["LMMBlock", "memory_layer"]


def memory_layer(spec: BlockSpec) -> NeuralMemory:
    """The NeuralMemory layer a spec describes (shared by the LMM, MAG and MAL blocks)."""
    return NeuralMemory(spec.hidden_size, spec.num_heads, spec.head_dim, memory_depth=spec.memory_depth,
                        memory_expansion=spec.memory_expansion, chunk_size=spec.chunk_size,
                        activation=spec.memory_activation, max_lr=spec.max_lr, compiled=spec.compiled,
                        recompute_chunks=spec.recompute_chunks, max_surprise=spec.max_surprise,
                        check_finite=spec.check_memory_finite, max_alpha=spec.max_alpha,
                        forget_bias_init=spec.forget_bias_init, momentum_bias_init=spec.momentum_bias_init,
                        rule=spec.memory_rule, max_delta=spec.max_delta)


class LMMBlock(nn.Module):
    """``x + NeuralMemory(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))`` (residuals in every block, §4.4)."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.memory_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.memory = memory_layer(spec)
        self.mlp_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.mlp = SwiGLU(spec.hidden_size, spec.intermediate_size)

    def forward(
        self, x: torch.Tensor, state: NeuralMemoryState | None = None
    ) -> tuple[torch.Tensor, NeuralMemoryState]:
        """``x [B, T, C] -> [B, T, C]`` and the memory state."""
        h, state = self.memory(self.memory_norm(x), state)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), state
