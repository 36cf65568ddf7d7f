"""Muon inside a chunk without forming the per-token momenta: Newton-Schulz in the Gram space.

Inside a chunk every momentum is the chunk-start momentum plus a combination of the chunk's surprises
``u_m = h_m^T delta_m`` (docs/miras_atlas.md, "Muon"), for one layer ``[d_in, d_out]``:

    S_t = E_t S_0 - h^T diag(coef[t]) delta        (h ``[m, d_in]``, delta ``[m, d_out]``)

The quintic Newton-Schulz iteration only ever multiplies ``X`` on one side by a polynomial of its
Gram matrix. Starting from ``X_0 = S^T / nu`` (``nu = sqrt(||S||_F^2 + NS_EPS^2)``) every iterate is
``X_k = M_k X_0`` with ``M_0 = I`` and

    A_k = M_k G_0 M_k^T,   M_{k+1} = (a I + b A_k + c A_k^2) M_k,   G_0 = S^T S / nu^2,

so ``NS(S) = S M_5^T / nu = S R``: one ``d_out x d_out`` factor ``R_t`` per token, computed from
``G = S_t^T S_t``, which itself comes from the chunk's small products (``h S_0``, ``h h^T``) without
``S_t``:

    S_t^T S_t = E_t^2 S_0^T S_0 - E_t (C_t + C_t^T) + (cd_t)^T (h h^T) cd_t,
    C_t = (h S_0)^T cd_t,  cd_t = diag(coef[t]) delta.

The reads and the end-of-chunk state then need only products with ``S_t``, which the same linear form
gives as matmuls (``x S_t = E_t x S_0 - (x h^T) cd_t``). This is the same algebra as forming ``S_t`` and
orthogonalising it (the token loop's numbers to float rounding, which the float64 tests check), at
``O(d_out^3)`` per token instead of ``O(d_in d_out^2)``, and without ``n`` weight-sized tensors.

Precision: ``S^T S`` squares the momentum's condition number, and in float32 the iterations on it
lost 1e-4 to 5e-4 (relative) of the weights where the formed momenta lose 1e-5. The Gram matrices and
the iterations therefore run in float64 (the rest in the state's float32), which brings the error
back to the formed momenta's (tests/ops/test_memory_family_muon.py).

Where it pays: float64 ``d_out^3`` iterations against float32 ``d_in d_out^2`` ones. On one CPU thread
(fwd+bwd, B = 16, T = 128, 4 heads, depth 1, 152 features) the Gram form took 9.8 s against 19.4 s at
``d_out = 16``, and 46.6 s against 44.0 s at ``d_out = 32``; so a layer takes it from
``d_in >= GRAM_MIN_RATIO d_out`` on (Atlas's polynomial features make ``d_in`` the wide side: 561 for
32-wide heads, 2,145 for 64-wide ones), and keeps the formed momenta below that.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .family_math import NS_COEFFICIENTS, NS_EPS

__all__ = ["GRAM_MIN_RATIO", "gram_form_applies", "muon_gram_layer", "newton_schulz_right_factor"]

GRAM_MIN_RATIO = 8


def gram_form_applies(d_in: int, d_out: int) -> bool:
    """Whether a ``[d_in, d_out]`` layer's Muon step runs in the Gram space of its ``d_out`` side
    (where that is faster than forming the momenta: ``d_in >= GRAM_MIN_RATIO d_out``)."""
    return d_in >= GRAM_MIN_RATIO * d_out


def newton_schulz_right_factor(gram: torch.Tensor, steps: int) -> torch.Tensor:
    """``R`` with ``NS(S) = S R`` from ``gram = S^T S`` ``[..., d, d]`` (``steps`` quintic iterations).

    The same polynomial as :func:`titanmem.ops.neural_memory.family_math.newton_schulz`, including its
    normalisation ``S / sqrt(||S||_F^2 + NS_EPS^2)`` (``||S||_F^2 = trace(S^T S)``).
    """
    a, b, c = NS_COEFFICIENTS
    # The trace of an expanded Gram matrix can round below zero when S is ~0; the norm cannot.
    norm2 = gram.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(0.0) + NS_EPS * NS_EPS
    g0 = gram / norm2[..., None, None]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    m = a * eye + b * g0 + c * (g0 @ g0)  # the first step, from M_0 = I
    for _ in range(steps - 1):
        p = m @ g0 @ m.mT
        m = a * m + (b * p + c * (p @ p)) @ m
    return m.mT * norm2.rsqrt()[..., None, None]


def muon_gram_layer(
    acc: torch.Tensor,
    moment: torch.Tensor,
    h: torch.Tensor,
    d: torch.Tensor,
    coef_s: torch.Tensor,
    theta: torch.Tensor,
    eta_cum: torch.Tensor,
    keep: torch.Tensor,
    beta: torch.Tensor,
    steps: int,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor]:
    """One layer's chunk under Muon with decay retention, in the Gram space of its output side.

    Args:
        acc, moment: ``A_0 = W_0`` and ``S_0`` ``[B, H, d_in, d_out]`` at the chunk start.
        h, d: each window token's layer input ``[B, H, m, d_in]`` and output gradient ``[B, H, m, d_out]``
            at ``W_0`` (``u_m = h_m^T d_m``).
        coef_s: ``[B, H, n, m]`` the weight of ``u_m`` in ``S_t`` (window band, gates, surprise clip).
        theta: ``[B, H, n]`` the step sizes (``step_t = theta_t NS(S_t)``).
        eta_cum, beta: ``[B, H, n]`` ``E_t`` (momentum kept from ``S_0``) and ``beta_t`` (weights kept).
        keep: ``[B, H, n, n]`` ``K[t, j]``, the decay from token ``j``'s step to token ``t``.
        steps: Newton-Schulz iterations.

    Returns:
        ``read(x)``: ``x`` ``[B, H, n, d_in]`` (token ``t``'s input) -> ``x_t W_t`` ``[B, H, n, d_out]``
        with ``W_t = beta_t W_0 + sum_j K[t, j] theta_j S_j R_j`` the weights after token ``t``;
        and ``W_n``, ``S_n`` ``[B, H, d_in, d_out]`` after the chunk's last token.
    """
    n = coef_s.shape[-2]
    # cd_t = diag(coef[t]) delta for every t, laid out [B, H, m, n d_out] so that a product a @ cd_t for
    # every t is one [p, m] @ [m, n d_out] matmul per head (a broadcast batched matmul would copy a n
    # times and multiply small matrices one by one).
    cd_flat = (coef_s.mT.unsqueeze(-1) * d.unsqueeze(3)).flatten(-2)
    cd = _per_token(cd_flat, n)  # [B, H, n, m, d_out]
    e = eta_cum[..., None, None]
    hi = torch.float64  # see "Precision" above
    cd_flat_hi, h_hi, m_hi = cd_flat.to(hi), h.to(hi), moment.to(hi)
    cross = _per_token((h_hi @ m_hi).mT @ cd_flat_hi, n)  # (h S_0)^T cd_t
    quad = _per_token(cd_flat_hi, n).mT @ _per_token(h_hi @ h_hi.mT @ cd_flat_hi, n)
    e_hi = e.to(hi)
    gram = e_hi.square() * (m_hi.mT @ m_hi).unsqueeze(2) - e_hi * (cross + cross.mT) + quad
    right = newton_schulz_right_factor(gram, steps).to(cd.dtype)  # [B, H, n, d_out, d_out]
    step_w = keep * theta.unsqueeze(-2)  # [B, H, t, j]: K[t, j] theta_j

    def read(x: torch.Tensor) -> torch.Tensor:
        # x_t S_j for every (j, t): E_j x_t S_0 - sum_m (x_t . h_m) cd_j[m]   -> [B, H, j, t, d_out]
        xs = e * (x @ moment).unsqueeze(2) - _per_token(x @ h.mT @ cd_flat, n)
        z = xs @ right
        return beta.unsqueeze(-1) * (x @ acc) + torch.einsum("bhtj,bhjto->bhto", step_w, z)

    w_end = step_w[..., -1, :]  # [B, H, n]
    kept = (w_end * eta_cum)[..., None, None]
    acc_end = (beta[..., -1, None, None] * acc + moment @ (kept * right).sum(2)
               - h.mT @ (w_end[..., None, None] * (cd @ right)).sum(2))
    moment_end = e[:, :, -1] * moment - h.mT @ cd[:, :, -1]
    return read, acc_end, moment_end


def _per_token(flat: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, H, p, n d]`` -> ``[B, H, n, p, d]`` (a view): the products ``a @ cd_t`` of all ``n`` tokens."""
    return flat.unflatten(-1, (n, flat.shape[-1] // n)).transpose(2, 3)
