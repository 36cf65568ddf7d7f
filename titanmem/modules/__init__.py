"""Small nn pieces (RMSNorm, SwiGLU, causal depthwise conv, rotary). May import ``titanmem.ops``."""

from .conv import CausalDepthwiseConv1d
from .mlp import SwiGLU
from .norm import RMSNorm
from .rotary import apply_rotary, rotary_cos_sin, rotary_positions

__all__ = [
    "CausalDepthwiseConv1d",
    "RMSNorm",
    "SwiGLU",
    "apply_rotary",
    "rotary_cos_sin",
    "rotary_positions",
]
