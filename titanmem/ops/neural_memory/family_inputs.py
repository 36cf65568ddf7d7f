"""Arguments of the family op beyond Titans': the rule, the window gates, the Huber thresholds and the
window's context; their checks, and the layout both implementations work on."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .features import apply_feature_map
from .rule import MemoryRule
from .state import MemoryState
from .validation import OpDims, _check_range, _check_tensor, _shape, validate_op_inputs

__all__ = ["FamilyInputs", "WindowContext", "prepare_family_inputs"]


@dataclass(frozen=True)
class WindowContext:
    """Tokens just before the first one passed to the op, for the Omega window (ATLAS eq. 9).

    They take part in the windowed loss of the first ``window - 1`` tokens and nothing else (they
    are neither read nor written again); only the last ``window - 1`` of them are used. Passing the
    tokens before a split point here makes two calls split at a chunk boundary equal one call.

    Attributes:
        k: ``[B, r, H, Dk]`` keys as given to the op (before the feature map).
        v: ``[B, r, H, Dv]`` values.
        gamma: ``[B, r, H]`` window gates in [0, 1].
        delta: ``[B, r, H]`` Huber thresholds >= 0 (objective ``"huber"`` only), else None.
    """

    k: torch.Tensor
    v: torch.Tensor
    gamma: torch.Tensor
    delta: torch.Tensor | None = None


@dataclass(frozen=True)
class FamilyInputs:
    """What both implementations compute from, in the state's dtype, heads before time.

    ``q`` ``[B, H, T, Dk']`` and the windowed sequences ``k``, ``v``, ``gamma``, ``delta``
    ``[B, H, r + T, ...]``: the ``r`` context tokens first (``Dk'`` the feature map's size).
    ``theta``, ``eta``, ``alpha`` ``[B, H, T]``.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    gamma: torch.Tensor
    delta: torch.Tensor | None
    theta: torch.Tensor
    eta: torch.Tensor
    alpha: torch.Tensor
    context_length: int


def _check_gate(name: str, t: object, shape: tuple[int, ...], device: torch.device, low: float,
                high: float | None, check_values: bool) -> torch.Tensor:
    t = _check_tensor(name, t)
    if _shape(t) != shape:
        raise ValueError(f"{name} must have shape [B, T, H] = {shape}, got {_shape(t)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but the memory state is on {device}")
    if check_values:
        with torch.no_grad():
            _check_range(name, t, low, high)
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} must be finite, got inf")
    return t


def _validate(q, k, v, gamma, delta, context, state, rule, check_values) -> None:
    if not isinstance(rule, MemoryRule):
        raise TypeError(f"rule must be a MemoryRule, got {type(rule).__name__}")
    if not isinstance(state, MemoryState):
        raise TypeError(f"state must be a MemoryState, got {type(state).__name__}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(name, t)
    if q.dim() != 4:
        raise ValueError(f"q must have shape [B, T, H, Dk], got {_shape(q)}")
    if k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {_shape(q)}, got {_shape(k)}")
    device = state.weights[0].device if state.weights else q.device
    gates = _shape(q)[:3]
    if gamma is not None:
        _check_gate("gamma", gamma, gates, device, 0.0, 1.0, check_values)
    if rule.objective == "huber":
        if delta is None:
            raise ValueError("delta must be a [B, T, H] tensor of Huber thresholds for objective 'huber', got None")
        _check_gate("delta", delta, gates, device, 0.0, None, check_values)
    elif delta is not None:
        raise ValueError(f"delta is read only by objective 'huber', got it with objective {rule.objective!r}")
    if context is None:
        return
    if not isinstance(context, WindowContext):
        raise TypeError(f"context must be a WindowContext or None, got {type(context).__name__}")
    ck = _check_tensor("context.k", context.k)
    if ck.dim() != 4 or ck.shape[0] != q.shape[0] or ck.shape[2:] != q.shape[2:]:
        raise ValueError(f"context.k must have shape [B, r, H, Dk] = [{q.shape[0]}, r, {q.shape[2]}, {q.shape[3]}], "
                         f"got {_shape(ck)}")
    ctx_gates = (ck.shape[0], ck.shape[1], ck.shape[2])
    cv = _check_tensor("context.v", context.v)
    if _shape(cv) != (*ctx_gates, v.shape[-1]):
        raise ValueError(f"context.v must have shape {(*ctx_gates, v.shape[-1])}, got {_shape(cv)}")
    _check_gate("context.gamma", context.gamma, ctx_gates, device, 0.0, 1.0, check_values)
    if rule.objective == "huber":
        if context.delta is None:
            raise ValueError("context.delta must be given for objective 'huber', got None")
        _check_gate("context.delta", context.delta, ctx_gates, device, 0.0, None, check_values)
    for name, t in (("context.k", ck), ("context.v", cv)):
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but the memory state is on {device}")


def prepare_family_inputs(
    q, k, v, theta, eta, alpha, state, gamma, delta, context, rule, chunk_size, read, activation, residual,
    check_values,
) -> tuple[OpDims, FamilyInputs]:
    """Check every argument (TypeError/ValueError naming it) and lay the inputs out for both ops.

    The Titans checks of ``validate_op_inputs`` run on the feature-mapped keys and queries, so the
    state's first layer must take ``feature_dim(Dk)`` inputs.
    """
    _validate(q, k, v, gamma, delta, context, state, rule, check_values)
    phi_q = apply_feature_map(q, rule.feature_map, rule.feature_degree)
    phi_k = apply_feature_map(k, rule.feature_map, rule.feature_degree)
    dims = validate_op_inputs(phi_q, phi_k, v, theta, eta, alpha, state, chunk_size, read, activation, residual,
                              check_values)
    dtype = state.weights[0].dtype
    if gamma is None:
        gamma = torch.ones_like(theta)
    keep = 0 if context is None else min(rule.window - 1, context.k.shape[1])
    if keep:
        ctx_k = apply_feature_map(context.k[:, -keep:], rule.feature_map, rule.feature_degree)
        phi_k = torch.cat((ctx_k.to(phi_k.dtype), phi_k), dim=1)
        v = torch.cat((context.v[:, -keep:].to(v.dtype), v), dim=1)
        gamma = torch.cat((context.gamma[:, -keep:].to(gamma.dtype), gamma), dim=1)
        if delta is not None:
            delta = torch.cat((context.delta[:, -keep:].to(delta.dtype), delta), dim=1)

    def heads_first(t):
        return None if t is None else t.to(dtype).transpose(1, 2)

    prepared = FamilyInputs(
        q=heads_first(phi_q), k=heads_first(phi_k), v=heads_first(v), gamma=heads_first(gamma),
        delta=heads_first(delta), theta=heads_first(theta), eta=heads_first(eta), alpha=heads_first(alpha),
        context_length=keep,
    )
    return dims, prepared
