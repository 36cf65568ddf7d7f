"""Feature maps on keys and queries (ATLAS, arXiv 2505.23735 §3: polynomial features).

``poly`` of degree p maps ``x in R^d`` to every monomial ``x^a = prod_j x_j^{a_j}`` of degree
``|a| = 1..p``, each once (no repeated permutations), weighted by ``1 / sqrt(a!)``
(``a! = prod_j a_j!``). With these weights, by the multinomial theorem,

    phi(x) . phi(y) = sum_{i=1..p} (x . y)^i / i!

the degree-p Taylor polynomial of ``exp(x . y) - 1``: the paper's motivation for polynomial maps
(an approximation of the exponential kernel of softmax attention). The degree-0 constant is left out:
the memory's layers have no bias and a constant input feature would act as one, a choice the
papers do not make explicit. Output size ``sum_{i=1..p} C(d + i - 1, i)``.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch

__all__ = ["apply_feature_map", "feature_dim"]


@functools.cache
def _monomials(dim: int, degree: int) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
    """Index tuples of every monomial of degree ``degree`` in ``dim`` variables, with 1/sqrt(a!)."""
    combos = tuple(itertools.combinations_with_replacement(range(dim), degree))
    weights = tuple(
        1.0 / math.sqrt(math.prod(math.factorial(c.count(j)) for j in set(c))) for c in combos
    )
    return combos, weights


def feature_dim(dim: int, feature_map: str, degree: int) -> int:
    """Size of ``phi(x)`` for ``x`` of size ``dim``."""
    if feature_map == "identity":
        return dim
    return sum(math.comb(dim + i - 1, i) for i in range(1, degree + 1))


def apply_feature_map(x: torch.Tensor, feature_map: str, degree: int) -> torch.Tensor:
    """``phi(x)`` over the last dimension: ``[..., d] -> [..., feature_dim(d)]``, differentiable."""
    if feature_map == "identity" or degree == 1:
        return x
    dim = x.shape[-1]
    parts = [x]
    for i in range(2, degree + 1):
        combos, weights = _monomials(dim, i)
        index = torch.tensor(combos, dtype=torch.long, device=x.device)  # [M, i]
        scale = torch.tensor(weights, dtype=x.dtype, device=x.device)
        # A product of gathered columns, not Tensor.prod: prod's backward divides by the input where
        # it can, a product of factors is differentiable twice everywhere, zeros included.
        term = x[..., index[:, 0]]
        for j in range(1, i):
            term = term * x[..., index[:, j]]
        parts.append(term * scale)
    return torch.cat(parts, dim=-1)
