"""Each choice of the family on a linear memory at chunk size 1, against its formula written out here.

One batch row and one head; the memory is ``M_W(x) = x W`` (row convention), so the surprise of a
token is ``k^T psi(k W - v)`` with ``psi`` the objective's derivative. Each test writes MIRAS's or
ATLAS's rule by hand (not through the library's helpers) for two or three tokens and compares the
reads and the final state of both implementations with it.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import assert_close
from titanmem.ops import MemoryRule, MemoryState, neural_memory_family_chunk, neural_memory_family_naive
from titanmem.ops.neural_memory.features import apply_feature_map, feature_dim

IMPLS = [pytest.param(neural_memory_family_naive, id="naive"), pytest.param(neural_memory_family_chunk, id="chunk")]
F64 = torch.float64
DK, DV, T = 3, 4, 3


def _inputs(seed: int, dk: int = DK):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(T, dk, dtype=F64, generator=g)
    k = torch.randn(T, dk, dtype=F64, generator=g) * 0.7
    v = torch.randn(T, DV, dtype=F64, generator=g)
    theta = 0.05 + 0.2 * torch.rand(T, dtype=F64, generator=g)
    eta = torch.rand(T, dtype=F64, generator=g)
    alpha = 0.3 * torch.rand(T, dtype=F64, generator=g)
    w0 = torch.randn(dk, DV, dtype=F64, generator=g) / math.sqrt(dk)
    s0 = 0.3 * torch.randn(dk, DV, dtype=F64, generator=g)
    return q, k, v, theta, eta, alpha, w0, s0


def _call(impl, rule, q, k, v, theta, eta, alpha, w0, s0, **kw):
    """The op on one row and head (``[1, T, 1, D]``) at chunk size 1; returns y ``[T, Dv]``, A, S."""
    def bth(x):
        return x.reshape(1, T, 1, -1) if x.dim() == 2 else x.reshape(1, T, 1)
    extra = {name: bth(t) for name, t in kw.items()}
    state = MemoryState((w0[None, None],), (s0[None, None],))
    y, s = impl(bth(q), bth(k), bth(v), bth(theta), bth(eta), bth(alpha), state, chunk_size=1, rule=rule, **extra)
    return y[0, :, 0], s.weights[0][0, 0], s.momentum[0][0, 0]


def _check(impl, rule, expected_y, expected_a, expected_s, *args, rtol=1e-12, **kw):
    y, a, s = _call(impl, rule, *args, **kw)
    assert_close("y", torch.stack(expected_y), y, rtol)
    assert_close("A", expected_a, a, rtol)
    assert_close("S", expected_s, s, rtol)


def _momentum_loop(args, psi, read_map=lambda a: a, gamma=None):
    """Titans momentum + decay with a given output derivative ``psi(err, t)``, written out."""
    q, k, v, theta, eta, alpha, w0, s0 = args
    acc, mom, ys = w0, s0, []
    for t in range(T):
        w = read_map(acc)
        grad = torch.outer(k[t], psi(k[t] @ w - v[t], t))  # d/dW of the objective: k^T psi
        mom = eta[t] * mom - theta[t] * grad
        acc = (1 - alpha[t]) * acc + mom
        ys.append(q[t] @ read_map(acc))
    return ys, acc, mom


@pytest.mark.parametrize("impl", IMPLS)
def test_lp_gradient(impl):
    # Moneta (MIRAS eq. 24): grad = p k^T (Sign(e) |e|^(p-1)), Sign(x) ~ tanh(a x), |x| ~ sqrt(x^2 + eps).
    p, a, eps = 3.0, 10.0, 1e-6
    args = _inputs(1)
    ys, acc, mom = _momentum_loop(args, lambda e, t: p * torch.tanh(a * e) * torch.sqrt(e * e + eps) ** (p - 1))
    _check(impl, MemoryRule(objective="lp", p=p, sign_sharpness=a, abs_eps=eps), ys, acc, mom, *args)


@pytest.mark.parametrize("impl", IMPLS)
def test_huber_gradient(impl):
    # Yaad (MIRAS eq. 26): the l2 gradient 2 k^T e while ||e|| <= delta_t, else delta_t k^T Sign(e).
    args = _inputs(2)
    delta = torch.tensor([10.0, 0.2, 10.0], dtype=F64)  # tokens 0 and 2 inside, token 1 outside

    def psi(e, t):
        return 2 * e if e.norm() <= delta[t] else delta[t] * torch.tanh(10.0 * e)

    ys, acc, mom = _momentum_loop(args, psi)
    _check(impl, MemoryRule(objective="huber"), ys, acc, mom, *args, delta=delta)


@pytest.mark.parametrize("impl", IMPLS)
def test_huber_with_zero_threshold_is_scaled_sign_only(impl):
    # delta = 0: every token is outside, and 0 * Sign: the memory only decays.
    q, k, v, theta, eta, alpha, w0, s0 = _inputs(3)
    y, a, s = _call(impl, MemoryRule(objective="huber"), q, k, v, theta, eta, alpha, w0, s0,
                    delta=torch.zeros(T, dtype=F64))
    mom, acc = s0, w0
    for t in range(T):
        mom = eta[t] * mom
        acc = (1 - alpha[t]) * acc + mom
    assert_close("A", acc, a, 1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_lq_normalisation(impl):
    # Moneta: A_t = (1 - alpha_t) A_{t-1} + S_t, W_t = A_t / ||A_t||_q^{q-2}; q = 4: ||A||_4^2 = sqrt(sum A^4).
    args = _inputs(4)

    def normalised(acc):
        return acc / torch.sqrt((acc**4).sum())

    ys, acc, mom = _momentum_loop(args, lambda e, t: 2 * e, read_map=normalised)
    # rtol 1e-10: the op adds LQ_EPS = 1e-12 to sum |A|^q (here ~1), which the formula leaves out.
    _check(impl, MemoryRule(retention="lq", q=4.0), ys, acc, mom, *args, rtol=1e-10)


@pytest.mark.parametrize("impl", IMPLS)
def test_softmax_retention_is_memoras_rule(impl):
    # Memora (MIRAS eq. 27): W_t = Softmax(keep_t log W_{t-1} - theta_t grad l2(W_{t-1})) per row, with
    # keep_t = 1 - alpha_t, written here in the paper's form (log of the previous weights), without
    # momentum (eta = 0, S_0 = 0) as the paper states it.
    q, k, v, theta, eta, alpha, w0, s0 = _inputs(5)
    eta, s0 = torch.zeros_like(eta), torch.zeros_like(s0)
    w = torch.softmax(w0, dim=-1)
    ys = []
    for t in range(T):
        grad = torch.outer(k[t], 2 * (k[t] @ w - v[t]))
        w = torch.softmax((1 - alpha[t]) * torch.log(w) - theta[t] * grad, dim=-1)
        ys.append(q[t] @ w)
    y, a, s = _call(impl, MemoryRule(retention="kl"), q, k, v, theta, eta, alpha, w0, s0)
    assert_close("y", torch.stack(ys), y, 1e-12)
    assert_close("softmax(A)", w, torch.softmax(a, dim=-1), 1e-12)
    assert_close("row sums", torch.ones(DK, dtype=F64), torch.softmax(a, dim=-1).sum(-1), 1e-14)


def _newton_schulz_step(x):
    a, b, c = 3.4445, -4.7750, 2.0315
    gram = x @ x.T
    return a * x + b * gram @ x + c * gram @ gram @ x


@pytest.mark.parametrize("impl", IMPLS)
def test_one_newton_schulz_step(impl):
    # ATLAS (eqs. 32-33): S_t = eta_t S_{t-1} - grad, A_t = (1 - alpha_t) A_{t-1} + theta_t NS(S_t), with one
    # Newton-Schulz step on S_t / ||S_t||_F (the matrix is 3 x 4, so X X^T is 3 x 3).
    q, k, v, theta, eta, alpha, w0, s0 = _inputs(6)
    acc, mom, ys = w0, s0, []
    for t in range(T):
        mom = eta[t] * mom - torch.outer(k[t], 2 * (k[t] @ acc - v[t]))
        acc = (1 - alpha[t]) * acc + theta[t] * _newton_schulz_step(mom / mom.norm())
        ys.append(q[t] @ acc)
    _check(impl, MemoryRule(optimizer="muon", ns_steps=1), ys, acc, mom, q, k, v, theta, eta, alpha, w0, s0)


def test_five_newton_schulz_steps_nearly_orthogonalise():
    # Muon's coefficients drive every singular value into roughly [0.7, 1.2] in five steps.
    from titanmem.ops.neural_memory.family_math import newton_schulz

    x = torch.randn(6, 9, 7, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    sv = torch.linalg.svdvals(newton_schulz(x, 5))
    assert float(sv.min()) > 0.6 and float(sv.max()) < 1.25, (float(sv.min()), float(sv.max()))
    ref = x[0, 0] / x[0, 0].norm()
    for _ in range(5):
        ref = _newton_schulz_step(ref.T).T  # the tall 7 x 4 matrix is orthogonalised as its transpose
    assert_close("NS5", ref, newton_schulz(x, 5)[0, 0], 1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_omega_window_of_two(impl):
    # ATLAS eq. 9 with c = 2: g_t = gamma_{t-1} grad l(W_{t-1}; k_{t-1}, v_{t-1}) + gamma_t grad l(W_{t-1}; k_t, v_t)
    # (chunk size 1: every gradient at the weights before token t), the first token alone in its window.
    q, k, v, theta, eta, alpha, w0, s0 = _inputs(7)
    gamma = torch.tensor([0.9, 0.5, 0.7], dtype=F64)
    acc, mom, ys = w0, s0, []
    for t in range(T):
        grad = sum(gamma[i] * torch.outer(k[i], 2 * (k[i] @ acc - v[i])) for i in range(max(0, t - 1), t + 1))
        mom = eta[t] * mom - theta[t] * grad
        acc = (1 - alpha[t]) * acc + mom
        ys.append(q[t] @ acc)
    _check(impl, MemoryRule(window=2), ys, acc, mom, q, k, v, theta, eta, alpha, w0, s0, gamma=gamma)


def test_polynomial_features_give_the_truncated_exponential_kernel():
    # phi(x) . phi(y) = sum_{i=1..p} (x . y)^i / i!, and the size is sum_i C(d + i - 1, i).
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 4, dtype=F64, generator=g), torch.randn(5, 4, dtype=F64, generator=g)
    for degree in (1, 2, 3):
        fx, fy = apply_feature_map(x, "poly", degree), apply_feature_map(y, "poly", degree)
        assert fx.shape[-1] == feature_dim(4, "poly", degree) == sum(math.comb(4 + i - 1, i) for i in range(1, degree + 1))
        dot = (x * y).sum(-1)
        expected = sum(dot**i / math.factorial(i) for i in range(1, degree + 1))
        assert_close(f"kernel degree {degree}", expected, (fx * fy).sum(-1), 1e-13)


def test_polynomial_features_are_each_monomial_once():
    import itertools

    from titanmem.ops.neural_memory.features import _monomials

    for dim, degree in ((1, 3), (4, 2), (5, 3)):
        combos = _monomials(dim, degree)[0]
        assert sorted(combos) == list(itertools.combinations_with_replacement(range(dim), degree))
    # Degree 2 of (x0, x1): x0^2 / sqrt(2), x0 x1, x1^2 / sqrt(2), after the degree-1 features.
    x = torch.tensor([2.0, 3.0], dtype=F64)
    want = torch.tensor([2.0, 3.0, 4.0 / math.sqrt(2), 6.0, 9.0 / math.sqrt(2)], dtype=F64)
    assert_close("phi", want, apply_feature_map(x, "poly", 2), 1e-15)


@pytest.mark.parametrize("impl", IMPLS)
def test_polynomial_features_feed_the_memory(impl):
    # The memory sees phi(k) and phi(q): the same as the identity map on pre-mapped keys and queries.
    args = list(_inputs(8))
    dkf = feature_dim(DK, "poly", 2)
    w0 = torch.randn(dkf, DV, dtype=F64, generator=torch.Generator().manual_seed(1)) / math.sqrt(dkf)
    s0 = torch.zeros(dkf, DV, dtype=F64)
    q, k = args[0], args[1]
    mapped = [apply_feature_map(q, "poly", 2), apply_feature_map(k, "poly", 2), *args[2:6], w0, s0]
    ys, acc, mom = _momentum_loop(mapped, lambda e, t: 2 * e)
    _check(impl, MemoryRule(feature_map="poly", feature_degree=2), ys, acc, mom, q, k, *args[2:6], w0, s0)
