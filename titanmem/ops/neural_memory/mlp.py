"""The memory MLP ``M_W(x) = act(...act(x W_1)...) W_L (+ x)`` and its closed-form gradient pieces."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "activation_backward", "activation_fn", "activation_grad", "mlp_forward"]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_grad(z: torch.Tensor) -> torch.Tensor:
    # d/dz [z Φ(z)] = Φ(z) + z φ(z), exact (erf) GELU as in F.gelu's default.
    cdf = 0.5 * (1.0 + torch.erf(z * _INV_SQRT2))
    pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return cdf + z * pdf


def _silu_grad(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _relu_grad(z: torch.Tensor) -> torch.Tensor:
    # Matches autograd's convention relu'(0) = 0.
    return (z > 0).to(z.dtype)


ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "gelu": (F.gelu, _gelu_grad),
    "silu": (F.silu, _silu_grad),
    "relu": (F.relu, _relu_grad),
}


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation between memory layers."""
    return ACTIVATIONS[name][0]


def activation_grad(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Its derivative, written as differentiable tensor ops (outer gradients flow through it)."""
    return ACTIVATIONS[name][1]


def _gelu_backward(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    # One fused kernel, and autograd differentiates it with its own fused second derivative
    # (gelu_double_backward) instead of the dozen elementwise nodes of the written-out formula.
    return torch.ops.aten.gelu_backward(grad, z)


def _relu_backward(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.threshold_backward(grad, z, 0.0)


def _silu_backward(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    # aten.silu_backward has no derivative of its own, so the written-out form stays differentiable.
    return grad * _silu_grad(z)


_BACKWARDS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gelu": _gelu_backward,
    "silu": _silu_backward,
    "relu": _relu_backward,
}


def activation_backward(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(grad, z) -> grad * act'(z)``, differentiable twice (outer gradients flow through it)."""
    return _BACKWARDS[name]


def mlp_forward(
    weights: Sequence[torch.Tensor], x: torch.Tensor, activation: str, residual: bool
) -> torch.Tensor:
    """``M_W(x)`` for weights ``[..., d_in, d_out]`` and inputs ``[..., n, d_in]`` -> ``[..., n, d_out]``."""
    act = activation_fn(activation)
    h = x
    for i, w in enumerate(weights):
        h = h @ w
        if i < len(weights) - 1:
            h = act(h)
    return h + x if residual else h
