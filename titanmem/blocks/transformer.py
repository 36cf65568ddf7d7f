"""Baseline: Transformer++ (Llama-style: RoPE, SwiGLU, RMSNorm, full causal attention)."""

from __future__ import annotations

import torch
from torch import nn

from ..layers.attention import Attention, AttentionState
from ..modules.mlp import SwiGLU
from ..modules.norm import RMSNorm
from .spec import BlockSpec

__all__ = ["TransformerBlock"]


class TransformerBlock(nn.Module):
    """``x + Attn(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))``; ``window`` limits attention (SWA)."""

    def __init__(self, spec: BlockSpec, window: int | None = None) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.attn = Attention(spec.hidden_size, spec.num_heads, spec.head_dim, window=window,
                              n_persistent=spec.n_persistent, rope_theta=spec.rope_theta, impl=spec.attn_impl)
        self.mlp_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.mlp = SwiGLU(spec.hidden_size, spec.intermediate_size)

    def forward(
        self, x: torch.Tensor, state: AttentionState | None = None
    ) -> tuple[torch.Tensor, AttentionState]:
        """``x [B, T, C] -> [B, T, C]`` and the attention cache."""
        h, state = self.attn(self.attn_norm(x), state)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), state
