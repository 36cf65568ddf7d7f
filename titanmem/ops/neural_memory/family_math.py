"""The family's elementwise and per-matrix pieces, shared by the token loop and the chunk op.

Both implementations call these same functions, so what the float64 comparison checks is the
chunk-parallel algebra around them; the pieces themselves are checked against formulas written out
by hand in tests/ops/test_memory_family_closed_form.py.
"""

from __future__ import annotations

import torch

from .rule import MemoryRule

__all__ = ["LQ_EPS", "NS_COEFFICIENTS", "NS_EPS", "effective_weights", "newton_schulz", "output_gradient"]

# Muon's quintic Newton-Schulz coefficients (a, b, c); ATLAS implementations use them (see
# the project notes on related memories, §1c), the paper's own values are not known to us.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# X / sqrt(||X||^2 + NS_EPS^2): a smooth stand-in for X / ||X|| that maps 0 to 0 with finite gradients.
NS_EPS = 1e-7
# ||A||_q^q + LQ_EPS: keeps the lq normalisation finite (and differentiable) at A = 0.
LQ_EPS = 1e-12


def output_gradient(err: torch.Tensor, rule: MemoryRule, delta: torch.Tensor | None) -> torch.Tensor:
    """``psi(e) = d l / d M_W(k)`` for the errors ``e = M_W(k) - v`` ``[..., n, Dv]``.

    The surprise of a token is ``grad_W l = (d M_W(k) / d W)^T psi(e)``, by backpropagation through
    the memory (autograd in the token loop, closed form in the chunk op). MIRAS gives the objectives
    by their gradients (eqs. 24, 26), with smooth stand-ins for the sign and the absolute value:

    - ``l2``: ``psi = 2 e`` (``||e||^2`` without a 1/2, as Titans here);
    - ``lp``: ``psi = p tanh(a e) (e^2 + eps)^((p-1)/2)``, i.e. ``p Sign(e) |e|^(p-1)`` with
      ``Sign(x) ~ tanh(a x)`` and ``|x| ~ sqrt(x^2 + eps)`` (eq. 24);
    - ``huber``: ``2 e`` where ``||e||_2 <= delta`` (the token's whole error vector, per head), else
      ``delta tanh(a e)``, ``delta`` times the smooth l1 gradient (eq. 26).

    Args:
        err: ``[..., n, Dv]``.
        rule: the memory rule (objective, p, sign_sharpness, abs_eps).
        delta: ``[..., n]`` Huber thresholds (only read for ``huber``).
    """
    if rule.objective == "l2":
        return 2.0 * err
    smooth_sign = torch.tanh(rule.sign_sharpness * err)
    if rule.objective == "lp":
        return rule.p * smooth_sign * (err.square() + rule.abs_eps).pow(0.5 * (rule.p - 1.0))
    delta = delta.unsqueeze(-1)
    inside = err.square().sum(-1, keepdim=True) <= delta.square()
    return torch.where(inside, 2.0 * err, delta * smooth_sign)


def effective_weights(acc: torch.Tensor, rule: MemoryRule) -> torch.Tensor:
    """The memory's weights from the retained accumulator ``A`` ``[..., d_in, d_out]`` (one layer).

    - ``decay``: ``W = A``;
    - ``lq``: ``W = A / ||A||_q^{q-2}`` (Moneta, eq. 24), the norm over the layer's whole matrix,
      computed as ``A / (sum |A|^q + LQ_EPS)^{(q-2)/q}``;
    - ``kl``: ``W = softmax(A)`` over ``d_out`` for each input feature (Memora, eq. 27, "per slice":
      each row of the matrix lies on the simplex).
    """
    if rule.retention == "decay":
        return acc
    if rule.retention == "lq":
        power = acc.abs().pow(rule.q).sum((-2, -1), keepdim=True) + LQ_EPS
        return acc * power.pow(-(rule.q - 2.0) / rule.q)
    return torch.softmax(acc, dim=-1)


def newton_schulz(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Quintic Newton-Schulz orthogonalisation of each matrix ``[..., m, n]`` (Muon; ATLAS eq. 32).

    ``X_0 = X / sqrt(||X||_F^2 + NS_EPS^2)``, then ``steps`` times
    ``X <- a X + b (X X^T) X + c (X X^T)^2 X`` with ``(a, b, c) = NS_COEFFICIENTS``, on the wider
    orientation (``X X^T`` of the smaller side; the same polynomial either way, fewer flops).
    """
    a, b, c = NS_COEFFICIENTS
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x * torch.rsqrt(x.square().sum((-2, -1), keepdim=True) + NS_EPS * NS_EPS)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.mT if tall else x
