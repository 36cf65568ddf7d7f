"""The K-sample importance-weighted bound and VIMCO's gradient for discrete latents.

With K samples ``h_k ~ q(h | x)`` and weights ``w_k = p(x, h_k) / q(h_k | x)``, the bound (Burda et al.,
2016) is ``L_K = log (1/K) sum_k w_k <= log p(x)``; its expectation grows with K towards ``log p(x)``.

Continuous latents are reparameterised, so autograd through ``L_K`` is their gradient. A discrete
latent (VMA's address ``a``) cannot be; VIMCO (Mnih & Rezende, "Variational inference for Monte Carlo
objectives", ICML 2016, eq. 9-10) adds a score-function term with a per-sample baseline built from the
other K - 1 samples:

    grad L_K = sum_k Lhat(h_k | h_-k) grad log q(h_k | x) + sum_k wtilde_k grad log w_k
    Lhat(h_k | h_-k) = L_K - log (1/K) (sum_{j != k} w_j + what_-k),   what_-k = exp(mean_{j != k} log w_j)

:func:`vimco_surrogate` returns a scalar per row whose value is ``L_K`` and whose gradient is that
estimator (the learning signals are detached and multiply ``log q - log q.detach()``, which is zero).
:func:`vimco_surrogate_naive` is the same with a loop over k, the reference for the tests.
"""

from __future__ import annotations

import math

import torch

from ..checks import check_tensor

__all__ = [
    "bernoulli_log_likelihood", "gaussian_log_density", "iw_bound", "vimco_learning_signals",
    "vimco_learning_signals_naive", "vimco_surrogate", "vimco_surrogate_naive",
]

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``log N(z; mean, diag(exp(log_std)^2))`` summed over the last dimension, in nats."""
    return (-0.5 * ((z - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * _LOG_2PI).sum(-1)


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``log Bernoulli(x; sigmoid(logits))`` summed over the last dimension, in nats (``x`` in {0, 1} or [0, 1])."""
    return -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def iw_bound(log_w: torch.Tensor) -> torch.Tensor:
    """``log (1/K) sum_k exp(log_w[..., k])``: the importance-weighted bound of each row, ``[...]`` from ``[..., K]``."""
    check_tensor("log_w", log_w, log_w.dim())
    return torch.logsumexp(log_w, dim=-1) - math.log(log_w.shape[-1])


def vimco_learning_signals(log_w: torch.Tensor) -> torch.Tensor:
    """VIMCO's ``Lhat(h_k | h_-k)`` for ``log_w [..., K]`` (K >= 2), detached, ``[..., K]``.

    Raises:
        ValueError: ``K < 2`` (the baseline of one sample needs another).
    """
    check_tensor("log_w", log_w, log_w.dim())
    k = log_w.shape[-1]
    if log_w.dim() == 0 or k < 2:
        raise ValueError(f"VIMCO needs K >= 2 samples in the last dimension of log_w, got shape {tuple(log_w.shape)}")
    lw = log_w.detach()
    bound = torch.logsumexp(lw, dim=-1, keepdim=True) - math.log(k)
    # Row k of `others` is log_w with its own entry replaced by the mean of the other K - 1 (the
    # geometric mean of their weights), so one logsumexp per row gives every leave-one-out bound.
    mean_others = (lw.sum(-1, keepdim=True) - lw) / (k - 1)
    others = lw.unsqueeze(-2).expand(*lw.shape[:-1], k, k)
    eye = torch.eye(k, dtype=torch.bool, device=lw.device)
    others = torch.where(eye, mean_others.unsqueeze(-1), others)
    return bound - (torch.logsumexp(others, dim=-1) - math.log(k))


def vimco_learning_signals_naive(log_w: torch.Tensor) -> torch.Tensor:
    """:func:`vimco_learning_signals` with a loop over k (the reference)."""
    lw = log_w.detach()
    k = lw.shape[-1]
    bound = torch.logsumexp(lw, dim=-1) - math.log(k)
    signals = []
    for i in range(k):
        rest = torch.cat([lw[..., :i], lw[..., i + 1:]], dim=-1)
        replaced = torch.cat([rest, rest.mean(-1, keepdim=True)], dim=-1)
        signals.append(bound - (torch.logsumexp(replaced, dim=-1) - math.log(k)))
    return torch.stack(signals, dim=-1)


def vimco_surrogate(log_w: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Per-row surrogate whose value is ``iw_bound(log_w)`` and whose gradient is VIMCO's estimator.

    Args:
        log_w: ``[..., K]`` log importance weights, differentiable in every parameter (they include
            ``-log q(h_k | x)`` and the reparameterised continuous latents).
        log_q: ``[..., K]`` ``log q(h_k | x)`` of the discrete samples, differentiable in q's parameters.

    Raises:
        ValueError: shapes differ or K < 2.
    """
    if log_w.shape != log_q.shape:
        raise ValueError(f"log_w and log_q must have the same shape, got {tuple(log_w.shape)} and {tuple(log_q.shape)}")
    signals = vimco_learning_signals(log_w)
    return iw_bound(log_w) + (signals * (log_q - log_q.detach())).sum(-1)


def vimco_surrogate_naive(log_w: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """:func:`vimco_surrogate` from the naive learning signals (the reference)."""
    signals = vimco_learning_signals_naive(log_w)
    k = log_w.shape[-1]
    total = torch.logsumexp(log_w, dim=-1) - math.log(k)
    for i in range(k):
        total = total + signals[..., i] * (log_q[..., i] - log_q[..., i].detach())
    return total
