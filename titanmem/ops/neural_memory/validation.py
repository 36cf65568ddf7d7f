"""Argument checks shared by the naive and the chunk-parallel op (one error message per mistake)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .mlp import ACTIVATIONS
from .state import MemoryState

__all__ = ["OpDims", "validate_op_inputs"]

READ_MODES = ("token", "chunk")
STATE_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class OpDims:
    batch: int
    length: int
    heads: int
    dim_k: int
    dim_v: int


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_tensor(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def _check_range(name: str, t: torch.Tensor, low: float, high: float | None) -> None:
    # NaN fails both comparisons, so it is reported here too.
    ok = (t >= low) if high is None else (t >= low) & (t <= high)
    if not bool(ok.all()):
        bad = t[~ok]
        where = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(
            f"{name} must lie in {where}; got {bad.numel()} value(s) outside, e.g. {bad.flatten()[0].item()!r} "
            f"(min {t.min().item()!r}, max {t.max().item()!r})"
        )


def validate_op_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    theta: torch.Tensor,
    eta: torch.Tensor,
    alpha: torch.Tensor,
    state: MemoryState,
    chunk_size: int,
    read: str,
    activation: str,
    residual: bool,
    check_values: bool = True,
) -> OpDims:
    """Raise ``TypeError``/``ValueError`` naming the bad argument; return the dimensions."""
    for name, t in (("q", q), ("k", k), ("v", v), ("theta", theta), ("eta", eta), ("alpha", alpha)):
        _check_tensor(name, t)
    if not isinstance(state, MemoryState):
        raise TypeError(f"state must be a MemoryState, got {type(state).__name__}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size must be an int, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if read not in READ_MODES:
        raise ValueError(f"read must be one of {READ_MODES}, got {read!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")

    if q.dim() != 4:
        raise ValueError(f"q must have shape [B, T, H, Dk], got {_shape(q)}")
    batch, length, heads, dim_k = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {_shape(q)}, got {_shape(k)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must have shape [B, T, H, Dv] = [{batch}, {length}, {heads}, Dv], got {_shape(v)}")
    dim_v = v.shape[3]
    for name, g in (("theta", theta), ("eta", eta), ("alpha", alpha)):
        if g.shape != q.shape[:3]:
            raise ValueError(f"{name} must have shape [B, T, H] = {_shape(q)[:3]}, got {_shape(g)}")
    if residual and dim_k != dim_v:
        raise ValueError(f"residual=True needs Dk == Dv, got q/k {_shape(q)} and v {_shape(v)}")

    _validate_state(state, batch, heads, dim_k, dim_v)
    device = state.weights[0].device
    for name, t in (("q", q), ("k", k), ("v", v), ("theta", theta), ("eta", eta), ("alpha", alpha)):
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but the memory state is on {device}")

    if check_values:
        with torch.no_grad():  # reading values must not record a graph
            _check_range("theta", theta, 0.0, None)
            if not bool(torch.isfinite(theta).all()):
                raise ValueError("theta must be finite, got inf")
            _check_range("eta", eta, 0.0, 1.0)
            _check_range("alpha", alpha, 0.0, 1.0)
    return OpDims(batch, length, heads, dim_k, dim_v)


def _validate_state(state: MemoryState, batch: int, heads: int, dim_k: int, dim_v: int) -> None:
    ws, ss = state.weights, state.momentum
    if len(ws) < 1:
        raise ValueError("state.weights must hold at least one layer, got 0")
    if len(ss) != len(ws):
        raise ValueError(f"state.momentum must have one tensor per layer ({len(ws)}), got {len(ss)}")
    dtype = ws[0].dtype
    if dtype not in STATE_DTYPES:
        raise ValueError(f"the memory state must be float32 or float64, got state.weights[0] of dtype {dtype}")
    d_in = dim_k
    for i, (w, s) in enumerate(zip(ws, ss)):
        for name, t in ((f"state.weights[{i}]", w), (f"state.momentum[{i}]", s)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dtype != dtype:
                raise ValueError(f"{name} has dtype {t.dtype}, but state.weights[0] has {dtype}")
            if t.device != ws[0].device:
                raise ValueError(f"{name} is on {t.device}, but state.weights[0] is on {ws[0].device}")
        if w.dim() != 4 or w.shape[0] != batch or w.shape[1] != heads or w.shape[2] != d_in:
            raise ValueError(
                f"state.weights[{i}] must have shape [B, H, d_in, d_out] = [{batch}, {heads}, {d_in}, d_out], "
                f"got {_shape(w)}"
            )
        if s.shape != w.shape:
            raise ValueError(f"state.momentum[{i}] must have the shape of state.weights[{i}] {_shape(w)}, got {_shape(s)}")
        d_in = w.shape[3]
    if d_in != dim_v:
        raise ValueError(f"the last memory layer must output Dv = {dim_v} features, got state.weights[-1] {_shape(ws[-1])}")
