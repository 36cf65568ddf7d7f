"""One file per architecture (LMM, MAC, MAG, MAL, baselines). May import ``ops``, ``modules``, ``layers``.

Every block is ``forward(x [B, T, C], state=None) -> (x [B, T, C], state)``; ``build_block`` makes the
block of a variant from a :class:`BlockSpec`.
"""

from __future__ import annotations

from torch import nn

from .lmm import LMMBlock
from .mac import MACBlock
from .mag import MAGBlock
from .mal import MALBlock
from .spec import BlockSpec
from .swa import SWABlock
from .transformer import TransformerBlock

VARIANTS = ("lmm", "mac", "mag", "mal", "transformer", "swa")


def build_block(variant: str, spec: BlockSpec) -> nn.Module:
    """The block of ``variant`` (one of :data:`VARIANTS`)."""
    if variant == "lmm":
        return LMMBlock(spec)
    if variant == "mac":
        return MACBlock(spec)
    if variant == "mag":
        return MAGBlock(spec)
    if variant == "mal":
        return MALBlock(spec)
    if variant == "transformer":
        return TransformerBlock(spec, window=None)
    if variant == "swa":
        return SWABlock(spec)
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


__all__ = ["VARIANTS", "BlockSpec", "LMMBlock", "MACBlock", "MAGBlock", "MALBlock", "SWABlock", "TransformerBlock", "build_block"]
