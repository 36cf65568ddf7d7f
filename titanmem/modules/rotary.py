"""Rotary position embedding (Su et al., RoFormer, 2021), rotate-half convention.

Layout: ``x [B, T, H, D]`` (time before heads, as in ``titanmem.ops``). Channel ``i < D/2`` is paired
with channel ``i + D/2`` and the pair is rotated by ``position * theta^(-2i/D)``.
"""

from __future__ import annotations

import torch

from ..checks import check_int

__all__ = ["apply_rotary", "rotary_cos_sin", "rotary_positions"]


def rotary_positions(
    positions: int | torch.Tensor, length: int, device: torch.device | None = None
) -> torch.Tensor:
    """Integer positions ``[T]`` or ``[B, T]`` from an offset (``offset .. offset+T-1``) or a tensor.

    A tensor must have an integer dtype, non-negative entries and last dimension ``length``.
    """
    if isinstance(positions, torch.Tensor):
        if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
            raise TypeError(f"positions must be an integer tensor, got dtype {positions.dtype}")
        if positions.dim() not in (1, 2) or positions.shape[-1] != length:
            raise ValueError(
                f"positions must have shape [T] or [B, T] with T = {length}, got {tuple(positions.shape)}"
            )
        if positions.numel() and int(positions.min()) < 0:
            raise ValueError(f"positions must be >= 0, got minimum {int(positions.min())}")
        return positions.to(device) if device is not None else positions
    offset = check_int("positions", positions, 0)
    return torch.arange(offset, offset + length, device=device)


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` of the rotation angles, each ``[*positions.shape, head_dim // 2]`` in ``dtype``.

    Angles are formed in ``dtype`` (at least float32): in half precision ``p * freq`` loses the
    position for p beyond a few hundred.
    """
    check_int("head_dim", head_dim, 2)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
    if not theta > 0:
        raise ValueError(f"theta must be > 0, got {theta!r}")
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=dtype) / head_dim
    inv_freq = 1.0 / (theta**exponents)
    angles = positions.to(dtype).unsqueeze(-1) * inv_freq
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, positions: int | torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Rotate ``x [B, T, H, D]`` to absolute ``positions``; returns ``[B, T, H, D]`` in ``x.dtype``.

    ``positions`` is an int offset (token ``t`` at ``offset + t``; decoding at position p passes p)
    or an integer tensor ``[T]`` / ``[B, T]``. The rotation is computed in float32 (float64 inputs
    stay float64) and cast back, so ``<R(p) q, R(s) k>`` depends on ``p - s`` only, up to rounding.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape [B, T, H, D], got {tuple(x.shape)}")
    B, T, _, D = x.shape
    pos = rotary_positions(positions, T, x.device)
    if pos.dim() == 2 and pos.shape[0] not in (1, B):
        raise ValueError(f"positions of shape {tuple(pos.shape)} do not match batch size {B}")
    compute = torch.promote_types(x.dtype, torch.float32)
    cos, sin = rotary_cos_sin(pos, D, theta, compute)  # [T, D/2] or [B, T, D/2]
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # broadcast over heads
    xf = x.to(compute)
    x1, x2 = xf[..., : D // 2], xf[..., D // 2 :]
    rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return rotated.to(x.dtype)
