"""Root-mean-square layer norm (Zhang & Sennrich, 2019), as used around every Titans mixer."""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_int

__all__ = ["RMSNorm"]


class RMSNorm(nn.Module):
    """``y = x / sqrt(mean(x^2) + eps) * weight`` over the last dimension.

    Args:
        dim: size of the normalised (last) dimension.
        eps: added to the mean square; must be > 0.

    Shapes: ``x [..., dim] -> y [..., dim]`` in the dtype of ``x``. The statistic and the scaling are
    computed in float32 (float64 stays float64) because mean(x^2) under- and overflows in half
    precision.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        check_int("dim", dim, 1)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"eps must be a float > 0, got {eps!r}")
        self.dim = dim
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x [..., dim]``; returns the same shape and dtype."""
        if x.shape[-1:] != (self.dim,):
            raise ValueError(f"x must have last dimension {self.dim}, got shape {tuple(x.shape)}")
        compute = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(compute)
        inv_rms = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (xf * inv_rms * self.weight.to(compute)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"
