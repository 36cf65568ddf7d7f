"""Muon in the Gram space (family_muon.py): its pieces against Newton-Schulz on the formed matrices,
the whole op against the token loop with the Gram form on every tall layer, and which layers take it.

The op only takes the Gram form where it is faster (``d_in >= 8 d_out``), which the small layers of
test_memory_family_equivalence.py never are; the fixture ``gram_everywhere`` lowers that bar to 1.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import titanmem.ops.neural_memory.family_chunk as family_chunk
from tests.helpers import assert_close
from tests.ops.test_memory_family_equivalence import RULES, SHAPES, Case, _compare
from titanmem.ops import neural_memory_family_chunk, neural_memory_family_naive
from titanmem.ops.neural_memory.coefficients import _safe_log, segment_log_sums
from titanmem.ops.neural_memory.family_math import newton_schulz
from titanmem.ops.neural_memory.family_muon import gram_form_applies, muon_gram_layer, newton_schulz_right_factor

F64 = torch.float64


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("shape", [(7, 3), (4, 4), (9, 1)])
def test_right_factor_gives_newton_schulz(shape, steps):
    s = torch.randn(2, *shape, dtype=F64, generator=torch.Generator().manual_seed(sum(shape) + steps))
    right = newton_schulz_right_factor(s.mT @ s, steps)
    assert_close("S R", newton_schulz(s, steps), s @ right, 1e-12)


def test_zero_momentum_gives_a_zero_step_with_finite_gradients():
    s = torch.zeros(5, 3, dtype=F64, requires_grad=True)
    step = s @ newton_schulz_right_factor(s.mT @ s, 5)
    assert torch.equal(step, newton_schulz(s.detach(), 5))
    (grad,) = torch.autograd.grad(step.sum(), s)
    assert torch.isfinite(grad).all()


def test_gram_layer_against_formed_momenta():
    # One chunk of one layer written the obvious way: every S_t formed, orthogonalised, accumulated.
    g = torch.Generator().manual_seed(3)
    B, H, n, halo, d_in, d_out, steps = 2, 3, 5, 2, 6, 4, 5
    m = n + halo

    def rand(*shape):
        return torch.randn(*shape, dtype=F64, generator=g)

    acc, moment = rand(B, H, d_in, d_out), 0.3 * rand(B, H, d_in, d_out)
    h, d = rand(B, H, m, d_in), rand(B, H, m, d_out)
    coef = torch.rand(B, H, n, m, dtype=F64, generator=g)
    theta = 0.1 * torch.rand(B, H, n, dtype=F64, generator=g)
    eta = torch.rand(B, H, n, dtype=F64, generator=g)
    alpha = 0.2 * torch.rand(B, H, n, dtype=F64, generator=g)
    eta_cum, beta = _safe_log(eta).cumsum(-1).exp(), _safe_log(1 - alpha).cumsum(-1).exp()
    keep = segment_log_sums(_safe_log(1 - alpha)).exp()
    x = rand(B, H, n, d_in)

    read, acc_end, moment_end = muon_gram_layer(acc, moment, h, d, coef, theta, eta_cum, keep, beta, steps)

    weights, reads = [], []
    for t in range(n):
        s_t = eta_cum[..., t, None, None] * moment - sum(coef[..., t, j, None, None] * h[..., j, :, None]
                                                        * d[..., j, None, :] for j in range(m))
        weights.append(theta[..., t, None, None] * newton_schulz(s_t, steps))
        w_t = beta[..., t, None, None] * acc + sum(keep[..., t, j, None, None] * weights[j] for j in range(t + 1))
        reads.append((x[..., t, None, :] @ w_t).squeeze(-2))
    assert_close("reads", torch.stack(reads, dim=2), read(x), 1e-12)
    assert_close("A_n", w_t, acc_end, 1e-12)
    assert_close("S_n", s_t, moment_end, 1e-12)


def test_layer_shapes_choose_the_form():
    assert gram_form_applies(561, 64) and gram_form_applies(152, 16)
    assert not gram_form_applies(152, 32) and not gram_form_applies(3, 5)


@pytest.fixture
def gram_everywhere(monkeypatch):
    """The Gram form on every layer with d_in >= d_out (the op takes it only where it is faster)."""
    monkeypatch.setattr(family_chunk, "gram_form_applies", lambda d_in, d_out: d_in >= d_out)


def _grid():
    cases = []
    for i, (name, read, depth) in enumerate(itertools.product(("atlas", "muon", "muon2"), ("token", "chunk"), (1, 2, 3))):
        T, chunk = SHAPES[i % len(SHAPES)]
        cases.append(pytest.param(name, T, chunk, depth, read, i % 4 == 3, i,
                                  id=f"{name}-{read}-d{depth}-T{T}-c{chunk}{'-res' if i % 4 == 3 else ''}"))
    return cases


@pytest.mark.parametrize("name, T, chunk, depth, read, residual, seed", _grid())
def test_gram_form_matches_naive_float64(gram_everywhere, name, T, chunk, depth, read, residual, seed):
    case = Case(RULES[name], T, depth, residual, seed=seed)
    _compare(case, dict(chunk_size=chunk, read=read, residual=residual), {"recompute_chunks": depth % 2 * 2})


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_atlas_never_forms_the_momenta(gram_everywhere, monkeypatch, depth):
    # Every Atlas layer here is tall (10 features -> hidden 5 -> 4): none may fall back to the formed
    # momenta, and the result is still the oracle's.
    def refuse(*args, **kwargs):
        raise AssertionError("a tall Muon layer formed its per-token momenta")

    monkeypatch.setattr(family_chunk, "_materialised_layer", refuse)
    case = Case(RULES["atlas"], 9, depth, False, seed=depth)
    _compare(case, dict(chunk_size=4, read="token"))


def test_wide_layers_still_form_the_momenta(gram_everywhere, monkeypatch):
    # Muon without features: the first layer (3 -> 5) is wide and keeps the formed momenta.
    calls = []
    original = family_chunk._materialised_layer

    def counted(*args, **kwargs):
        calls.append(args[0].shape[-2:])
        return original(*args, **kwargs)

    monkeypatch.setattr(family_chunk, "_materialised_layer", counted)
    case = Case(RULES["muon"], 7, 2, False, seed=1)
    _compare(case, dict(chunk_size=3, read="token"))
    assert set(calls) == {torch.Size([3, 5])}


def test_float32_gram_form_close_to_float64_oracle(gram_everywhere):
    # The Gram matrices and the iterations run in float64: in float32 the squared condition number of
    # S^T S cost 1e-4 to 5e-4 relative error in the weights (6 seeds), 30 times the formed momenta's.
    case64 = Case(RULES["atlas"], 33, 2, False, seed=6, requires_grad=False)
    y_ref, s_ref = case64.call(neural_memory_family_naive, chunk_size=8)
    t = {name: x.float() for name, x in case64.tensors.items()}
    y, s = neural_memory_family_chunk(t["q"], t["k"], t["v"], t["theta"], t["eta"], t["alpha"],
                                      case64.state.to(torch.float32), chunk_size=8, rule=case64.rule, gamma=t["gamma"])
    assert_close("y", y_ref, y, 1e-4)
    for i in range(2):
        assert_close(f"weights[{i}]", s_ref.weights[i], s.weights[i], 1e-4)
