"""Bounded surprise: each token's memory gradient clipped to a maximum norm before it enters the update.

With ``max_surprise = tau`` the surprise of token t, ``g_t`` (eq. 12, over every memory layer), is
replaced by ``g_t * min(1, tau / ||g_t||)`` (Frobenius norm over all layers, per batch row and head),
so one token can move the memory by at most ``theta_t * tau``. A token whose gradient is below the
bound is untouched, so the rule changes nothing until a gradient explodes: it is the defence against
the inner update diverging when the gates saturate (theta near max_lr, eta near 1, alpha near 0).

Since ``g_t`` enters eqs. 13-14 only as ``theta_t g_t``, clipping ``g_t`` is scaling ``theta_t`` by the
same factor: both ops compute the factor from the squared norm, which the chunk op has in closed form
(a token's gradient for layer l is the outer product ``h_{l-1,t}^T delta_{l,t}``, whose norm is
``||h_{l-1,t}|| ||delta_{l,t}||``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_max_surprise", "surprise_scale"]


def check_max_surprise(max_surprise: object) -> float | None:
    """``max_surprise`` as a float, or None (no bound).

    Raises:
        TypeError: not a real number or None (a bool is refused).
        ValueError: not finite and > 0.
    """
    if max_surprise is None:
        return None
    if isinstance(max_surprise, bool) or not isinstance(max_surprise, (int, float)):
        raise TypeError(f"max_surprise must be a float > 0 or None, got {type(max_surprise).__name__}")
    if not (math.isfinite(max_surprise) and max_surprise > 0):
        raise ValueError(f"max_surprise must be a finite float > 0 or None, got {max_surprise!r}")
    return float(max_surprise)


def surprise_scale(squared_norm: torch.Tensor, max_surprise: float) -> torch.Tensor:
    """``min(1, tau / ||g||)`` from ``||g||^2``, differentiable everywhere (a zero gradient included).

    The clipped branch is ``tau / sqrt(max(||g||^2, tau^2))``: no division by zero and no square root
    of zero, whose derivative would turn the gradient of an unclipped token into NaN (``where``
    multiplies the unselected branch's derivative by zero, which must therefore be finite). An
    unclipped token gets exactly 1, so a bound no gradient reaches leaves every number as it was.
    """
    bound = max_surprise * max_surprise
    clipped = max_surprise * torch.rsqrt(torch.clamp_min(squared_norm, bound))
    return torch.where(squared_norm > bound, clipped, torch.ones_like(clipped))
