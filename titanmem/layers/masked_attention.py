"""Masked softmax attention as functions: the causal / sliding-window mask and two kernels.

The ``Attention`` layer uses these; the MAC/MAG/MAL blocks reuse them for masks of their own.
Layout ``[B, T, H, D]`` throughout (as ``titanmem.ops`` and ``apply_rotary``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks import check_int

__all__ = ["ATTENTION_IMPLS", "causal_window_mask", "masked_attention"]

ATTENTION_IMPLS = ("sdpa", "eager")


def _check_positions(name: str, positions: object) -> torch.Tensor:
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(positions).__name__}")
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {positions.dtype}")
    return positions


def causal_window_mask(
    q_positions: torch.Tensor, k_positions: torch.Tensor, window: int | None = None
) -> torch.Tensor:
    """Bool mask, True where a query may attend a key: ``k <= q`` and ``q - k < window``.

    ``q_positions [..., Tq]`` and ``k_positions [..., Tk]`` are absolute integer positions (leading
    dimensions broadcast); the result is ``[..., Tq, Tk]``. With ``window = w`` a query at p sees
    keys ``max(0, p-w+1) .. p`` (w tokens including itself); ``None`` is full causal attention.
    Persistent tokens have no position: callers prepend a column block of True for them.
    """
    _check_positions("q_positions", q_positions)
    _check_positions("k_positions", k_positions)
    if window is not None:
        check_int("window", window, 1)
    distance = q_positions.unsqueeze(-1) - k_positions.unsqueeze(-2)
    allowed = distance >= 0
    if window is not None:
        allowed = allowed & (distance < window)
    return allowed


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    impl: str = "sdpa",
    scale: float | None = None,
) -> torch.Tensor:
    """``softmax(q k^T * scale + log mask) v`` per batch row and head.

    Args:
        q: ``[B, T, H, D]`` queries.
        k: ``[B, S, H, D]`` keys.
        v: ``[B, S, H, Dv]`` values.
        mask: bool, broadcastable to ``[B, H, T, S]`` (e.g. ``[T, S]``); True = may attend. Every
            query must see at least one key (a fully masked row has no softmax and gives NaN).
        impl: ``"sdpa"`` (``F.scaled_dot_product_attention``) or ``"eager"`` (written out; the
            reference the fast path is tested against).
        scale: logit scale, default ``1 / sqrt(D)``.

    Returns:
        ``[B, T, H, Dv]``.
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        seen = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a bool torch.Tensor, got {seen}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be 4-D [B, T, H, D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[:3] != v.shape[:3] or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(
            f"q, k, v shapes disagree: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, *, D]
    if impl == "sdpa":
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=scale)
    else:
        scores = torch.matmul(qh, kh.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~mask, float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), vh)
    return out.transpose(1, 2)
