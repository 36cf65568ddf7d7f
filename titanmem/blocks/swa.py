"""Baseline: sliding-window attention only (Transformer++ with a window, no memory)."""

from __future__ import annotations

from .spec import BlockSpec
from .transformer import TransformerBlock

__all__ = ["SWABlock"]


class SWABlock(TransformerBlock):
    """``x + SWA(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))``, with the window of the spec."""

    def __init__(self, spec: BlockSpec) -> None:
        if spec.window is None:
            raise ValueError("variant 'swa' needs a window, got window=None")
        super().__init__(spec, window=spec.window)
