"""Intra-chunk coefficients of the momentum + forgetting recurrence, built in log space.

Within a chunk of n tokens starting from weights ``W_0`` and momentum ``S_0`` (paper eqs. 13, 14, 18),
with every gradient ``u_m`` taken at ``W_0``::

    S_i = E_i S_0 - sum_{m<=i} P[i, m] theta_m u_m          P[i, m] = prod_{l=m+1..i} eta_l
    W_i = beta_i W_0 + c_i S_0 - sum_{m<=i} G[i, m] theta_m u_m
    E_i = prod_{l<=i} eta_l,   beta_i = prod_{l<=i} (1 - alpha_l)
    G[i, m] = sum_{j=m..i} (beta_i / beta_j) P[j, m],   c_i = sum_{j<=i} (beta_i / beta_j) E_j

Every product over a range is ``exp`` of a sum of logs over that range, each sum formed directly
(never as a difference of two cumulative sums, never by dividing cumulative products), so gates
near 0 give tiny coefficients, not inf or NaN. See README.md beside this file for the derivation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ChunkCoefficients", "chunk_coefficients", "segment_log_sums"]


@dataclass(frozen=True)
class ChunkCoefficients:
    """Coefficients for chunks of n tokens; leading dims ``[...]`` are batch, head (and chunk)."""

    gamma: torch.Tensor  # [..., n, n] G[i, m]: weight of theta_m u_m in W_i (lower triangular, diag 1)
    carry_w: torch.Tensor  # [..., n] G[n-1, m]: weight of theta_m u_m in the chunk's last weights
    carry_s: torch.Tensor  # [..., n] P[n-1, m]: weight of theta_m u_m in the chunk's last momentum
    beta: torch.Tensor  # [..., n] beta_i: weight of W_0 in W_i
    c: torch.Tensor  # [..., n] c_i: weight of S_0 in W_i
    eta_end: torch.Tensor  # [...] E_{n-1}: weight of S_0 in the last momentum


class _SafeLog(torch.autograd.Function):
    """``log(max(x, tiny))`` whose derivative is ``1 / max(x, tiny)``, also at ``x = 0``.

    The clamp keeps an exact 0 finite (-745 in float64): exp() of any sum containing it underflows
    to 0, as the product would. A plain clamp would give a zero derivative at 0, while the product
    it stands for has a non-zero one (d/d eta_k prod eta = prod of the others); dividing by the
    clamped value recovers it, because every upstream term carries the factor tiny as well.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        safe = x.clamp_min(torch.finfo(x.dtype).tiny)
        ctx.save_for_backward(safe)
        return torch.log(safe)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (safe,) = ctx.saved_tensors
        return grad / safe


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    return _SafeLog.apply(x)


def segment_log_sums(log_gate: torch.Tensor) -> torch.Tensor:
    """``out[..., i, m] = sum_{l=m+1..i} log_gate[..., l]`` for ``i >= m``, ``-inf`` above the diagonal.

    ``[..., n] -> [..., n, n]``. Entry (i, m) is the log of the product of gates strictly after m up
    to and including i; the diagonal is 0 (empty product).
    """
    n = log_gate.shape[-1]
    ones = torch.ones(n, n, dtype=torch.bool, device=log_gate.device)
    strict, lower = ones.tril(-1), ones.tril(0)
    # x[..., l, m] = log_gate[l] where l > m; the cumulative sum over l then adds exactly the gates
    # m+1..i into row i, with no subtraction anywhere.
    x = log_gate.unsqueeze(-1).expand(*log_gate.shape, n).masked_fill(~strict, 0.0)
    return x.cumsum(dim=-2).masked_fill(~lower, float("-inf"))


def chunk_coefficients(eta: torch.Tensor, alpha: torch.Tensor) -> ChunkCoefficients:
    """Coefficients for the momentum gates ``eta`` and forgetting gates ``alpha``, each ``[..., n]``."""
    log_eta = _safe_log(eta)
    log_keep = _safe_log(1.0 - alpha)
    p = segment_log_sums(log_eta).exp()  # P[i, m]
    keep = segment_log_sums(log_keep).exp()  # beta_i / beta_j as keep[i, j]
    gamma = keep @ p
    eta_cum = log_eta.cumsum(-1).exp()  # E_i (a cumulative sum from the start: no cancellation)
    beta = log_keep.cumsum(-1).exp()
    c = (keep @ eta_cum.unsqueeze(-1)).squeeze(-1)
    return ChunkCoefficients(
        gamma=gamma,
        carry_w=gamma[..., -1, :],
        carry_s=p[..., -1, :],
        beta=beta,
        c=c,
        eta_end=eta_cum[..., -1],
    )
