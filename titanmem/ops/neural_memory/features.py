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
def _monomials(dim: int, degree: int) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """The monomials of degree ``degree`` as sorted index tuples, in the order ``apply_feature_map``
    builds them (grouped by smallest index, ascending), and where each smallest index's group starts.

    Degree i is built from degree i - 1: the monomials whose smallest index is j are
    ``x_j * (every monomial of degree i - 1 whose smallest index is >= j)``, and those form a suffix
    of degree i - 1's list, so each group is one slice times one column.
    """
    if degree == 1:
        return tuple((j,) for j in range(dim)), tuple(range(dim))
    lower, lower_starts = _monomials(dim, degree - 1)
    combos, starts = [], []
    for j in range(dim):
        starts.append(len(combos))
        combos.extend((j, *rest) for rest in lower[lower_starts[j]:])
    return tuple(combos), tuple(starts)


@functools.cache
def _weights(dim: int, degree: int) -> tuple[float, ...]:
    """``1 / sqrt(a!)`` of each monomial of ``_monomials(dim, degree)``, in its order."""
    return tuple(1.0 / math.sqrt(math.prod(math.factorial(c.count(j)) for j in set(c)))
                 for c in _monomials(dim, degree)[0])


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
    parts, previous = [x], x
    for i in range(2, degree + 1):
        _, lower_starts = _monomials(dim, i - 1)
        # Slices and products only (no gather): cheap to differentiate, twice.
        previous = torch.cat([x[..., j : j + 1] * previous[..., lower_starts[j]:] for j in range(dim)], dim=-1)
        parts.append(previous)
    weights = [torch.tensor(_weights(dim, i), dtype=x.dtype, device=x.device) for i in range(2, degree + 1)]
    return torch.cat([x] + [p * w for p, w in zip(parts[1:], weights)], dim=-1)
