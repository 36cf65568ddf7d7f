"""Properties of the neural-memory op that do not need the naive oracle, or check it too."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import (
    IMPLS,
    assert_close,
    compare_states,
    linear_functional,
    make_inputs,
    make_state,
    rel_err,
    run_with_grads,
)
from titanmem.ops import MemoryState, neural_memory_chunk, neural_memory_naive

RTOL64 = 1e-8
READS = ("token", "chunk")


# --------------------------------------------------------------------------------------------------
# Linear memory against online / mini-batch GD with momentum and forgetting written out by hand.
# --------------------------------------------------------------------------------------------------


def hand_written_linear_memory(q, k, v, theta, eta, alpha, w0, s0, chunk_size, read, residual):
    """Depth-1 memory M(x) = x W (+ x), no autograd: per (b, h), with W_c the chunk-start weights,
    grad = 2 k^T (M_{W_c}(k) - v), S = eta S - theta grad, W = (1 - alpha) W + S."""
    B, T, H, _ = q.shape
    W, S = w0.clone(), s0.clone()
    y = torch.empty(B, T, H, v.shape[-1], dtype=w0.dtype)
    Wc = W
    for t in range(T):
        if t % chunk_size == 0:
            Wc = W.clone()
        for b in range(B):
            for h in range(H):
                kt, vt, qt = k[b, t, h], v[b, t, h], q[b, t, h]
                pred = kt @ Wc[b, h] + (kt if residual else 0.0)
                grad = 2.0 * torch.outer(kt, pred - vt)  # d/dW ||k W (+k) - v||^2 = 2 k^T (k W (+k) - v)
                S[b, h] = eta[b, t, h] * S[b, h] - theta[b, t, h] * grad
                W[b, h] = (1.0 - alpha[b, t, h]) * W[b, h] + S[b, h]
                read_w = W[b, h] if read == "token" else Wc[b, h]
                y[b, t, h] = qt @ read_w + (qt if residual else 0.0)
    return y, W, S


@pytest.mark.parametrize("residual", [False, True], ids=["nores", "res"])
@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("chunk_size", [1, 4, 5], ids=["online-c1", "minibatch-c4", "minibatch-c5"])
@pytest.mark.parametrize("impl", IMPLS)
def test_linear_memory_is_hand_written_gd_with_momentum(impl, chunk_size, read, residual):
    dv = 4 if residual else 3
    inp = make_inputs(B=2, T=13, H=2, Dk=4, Dv=dv, depth=1, seed=3)
    w0, s0 = inp.state.weights[0], inp.state.momentum[0]
    y_ref, w_ref, s_ref = hand_written_linear_memory(
        inp.q, inp.k, inp.v, inp.theta, inp.eta, inp.alpha, w0, s0, chunk_size, read, residual
    )
    y, state = impl(*inp.args(), chunk_size=chunk_size, read=read, residual=residual)
    assert_close("y", y_ref, y, RTOL64)
    assert_close("weights", w_ref, state.weights[0], RTOL64)
    assert_close("momentum", s_ref, state.momentum[0], RTOL64)


def test_chunk_size_matters_for_linear_memory():
    # Sanity check that the property above is not vacuous: mini-batch GD (chunk 4) differs from online GD.
    inp = make_inputs(B=1, T=8, H=1, Dk=4, Dv=3, depth=1, seed=3, lr_scale=1.0)
    y1, _ = neural_memory_chunk(*inp.args(), chunk_size=1)
    y4, _ = neural_memory_chunk(*inp.args(), chunk_size=4)
    assert rel_err(y1, y4) > 1e-3


# --------------------------------------------------------------------------------------------------
# Splitting the sequence at chunk boundaries and carrying the state.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("impl", IMPLS)
def test_split_at_chunk_boundaries_equals_one_call(impl, read):
    T, chunk, pieces = 130, 16, (32, 48, 50)
    inp = make_inputs(B=2, T=T, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=21)
    kw = dict(chunk_size=chunk, read=read, activation="silu")
    y_full, s_full = impl(*inp.args(), **kw)
    ys, state, start = [], inp.state, 0
    for n in pieces:
        sl = slice(start, start + n)
        y, state = impl(inp.q[:, sl], inp.k[:, sl], inp.v[:, sl], inp.theta[:, sl], inp.eta[:, sl],
                        inp.alpha[:, sl], state, **kw)
        ys.append(y)
        start += n
    assert_close("y", y_full, torch.cat(ys, dim=1), RTOL64)
    compare_states("state", s_full, state, RTOL64)


def test_split_at_non_chunk_boundary_differs():
    # The chunk grid restarts at every call: splitting mid-chunk must change the result (else the
    # split test above could not detect a wrong chunk grid).
    inp = make_inputs(B=1, T=32, H=1, Dk=5, Dv=4, depth=2, hidden=6, seed=21, lr_scale=1.0)
    y_full, _ = neural_memory_chunk(*inp.args(), chunk_size=16)
    y_a, st = neural_memory_chunk(*(t[:, :10] for t in inp.args()[:6]), inp.state, chunk_size=16)
    y_b, _ = neural_memory_chunk(*(t[:, 10:] for t in inp.args()[:6]), st, chunk_size=16)
    assert rel_err(y_full, torch.cat([y_a, y_b], dim=1)) > 1e-4


@pytest.mark.parametrize("read", READS)
def test_split_gradients_equal_one_call(read):
    T, chunk, pieces = 130, 16, (32, 48, 50)
    inp = make_inputs(B=2, T=T, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=22, requires_grad=True)
    kw = dict(chunk_size=chunk, read=read, activation="gelu")
    y_full, s_full, g_full = run_with_grads(neural_memory_chunk, inp, **kw)
    ys, state, start = [], inp.state, 0
    for n in pieces:
        sl = slice(start, start + n)
        y, state = neural_memory_chunk(inp.q[:, sl], inp.k[:, sl], inp.v[:, sl], inp.theta[:, sl],
                                       inp.eta[:, sl], inp.alpha[:, sl], state, **kw)
        ys.append(y)
        start += n
    g_split = torch.autograd.grad(linear_functional(torch.cat(ys, dim=1), state), inp.leaves())
    for name, a, b in zip(inp.leaf_names(), g_full, g_split):
        assert_close(f"d loss / d {name}", a, b, RTOL64)


# --------------------------------------------------------------------------------------------------
# Extreme gate values.
# --------------------------------------------------------------------------------------------------


def _mixed(shape, values, g, rand_scale=1.0):
    """Per-token choice among fixed ``values`` and a uniform random value (times rand_scale)."""
    choices = torch.tensor(values, dtype=torch.float64)
    idx = torch.randint(0, len(values) + 1, shape, generator=g)
    rand = torch.rand(shape, dtype=torch.float64, generator=g) * rand_scale
    fixed = choices[idx.clamp(max=len(values) - 1)]
    return torch.where(idx == len(values), rand, fixed)


ONE_MINUS = 1.0 - 1e-16  # rounds to the largest float64 below 1

GATE_SETTINGS = {
    "eta=0": dict(eta=0.0),
    "eta=1": dict(eta=1.0),
    "alpha=0": dict(alpha=0.0),
    "alpha=1": dict(alpha=1.0),
    "theta=0": dict(theta=0.0),
    "eta=1,alpha=0": dict(eta=1.0, alpha=0.0),
    "eta=0,alpha=1": dict(eta=0.0, alpha=1.0),
    "all_mixed": dict(
        theta=("mixed", (0.0, 1e-30), 0.1),
        eta=("mixed", (0.0, 1e-310, 1e-30, ONE_MINUS, 1.0), 1.0),
        alpha=("mixed", (0.0, 1e-30, ONE_MINUS, 1.0), 1.0),
    ),
    # everything close to, but not exactly at, the boundaries (1e-30, 1 - 1e-16), mixed with random values
    "near_boundary_mixed": dict(
        eta=("mixed", (1e-30, ONE_MINUS), 1.0),
        alpha=("mixed", (1e-30, ONE_MINUS), 1.0),
    ),
    "eta_mixed": dict(eta=("mixed", (0.0, 1e-30, ONE_MINUS, 1.0), 1.0)),
    "alpha_mixed": dict(alpha=("mixed", (0.0, 1e-30, ONE_MINUS, 1.0), 1.0)),
}


def _apply_gates(inp, setting, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    for name, spec in setting.items():
        old = getattr(inp, name)
        if isinstance(spec, tuple):
            new = _mixed(old.shape, spec[1], g, spec[2])
        else:
            new = torch.full(old.shape, spec, dtype=torch.float64)
        setattr(inp, name, new.to(dtype).requires_grad_(old.requires_grad))
    return inp


def _assert_finite(name, t):
    assert bool(torch.isfinite(t).all()), f"{name} has non-finite values"


def _extreme_run(setting, read):
    inp = make_inputs(B=2, T=37, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=31, requires_grad=True)
    inp = _apply_gates(inp, GATE_SETTINGS[setting], seed=32)
    kw = dict(chunk_size=8, read=read, activation="gelu")
    return inp, run_with_grads(neural_memory_naive, inp, **kw), run_with_grads(neural_memory_chunk, inp, **kw)


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("setting", list(GATE_SETTINGS), ids=list(GATE_SETTINGS))
def test_extreme_gates_finite_and_forward_matches_naive(setting, read):
    inp, (y_ref, s_ref, g_ref), (y, s, g) = _extreme_run(setting, read)
    for impl, (yy, ss, gg) in (("naive", (y_ref, s_ref, g_ref)), ("chunk", (y, s, g))):
        for name, t in [("y", yy), *[(f"weights[{i}]", w) for i, w in enumerate(ss.weights)],
                        *[(f"momentum[{i}]", m) for i, m in enumerate(ss.momentum)],
                        *[(f"d loss / d {n}", gr) for n, gr in zip(inp.leaf_names(), gg)]]:
            _assert_finite(f"{impl} {name}", t)
    assert_close("y", y_ref, y, RTOL64)
    compare_states("state", s_ref, s, RTOL64)


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("setting", list(GATE_SETTINGS), ids=list(GATE_SETTINGS))
def test_extreme_gates_gradients_match_naive(setting, read):
    # The state is linear in each eta_t and (1 - alpha_t), so d/d eta at eta = 0 and d/d alpha at
    # alpha = 1 are ordinary, non-zero derivatives (the naive loop's autograd gives them).
    inp, (_, _, g_ref), (_, _, g) = _extreme_run(setting, read)
    for name, a, b in zip(inp.leaf_names(), g_ref, g):
        assert_close(f"d loss / d {name}", a, b, RTOL64)


FLOAT32_GATE_SETTINGS = {
    "eta=1e-30": dict(eta=1e-30),
    "eta=1e-45": dict(eta=1e-45),  # a float32 subnormal (below finfo(float32).tiny)
    "alpha=1-6e-8": dict(alpha=1.0 - 6e-8),  # the largest float32 below 1
    "eta=0,alpha=1": dict(eta=0.0, alpha=1.0),
    "all_mixed": dict(
        theta=("mixed", (0.0, 1e-30), 0.1),
        eta=("mixed", (0.0, 1e-30, 1e-45, 1.0 - 6e-8, 1.0), 1.0),
        alpha=("mixed", (0.0, 1e-30, 1e-45, 1.0 - 6e-8, 1.0), 1.0),
    ),
}


def _float32_extreme_run(setting):
    # float32 state and inputs against the float64 naive oracle on the same (rounded) values.
    spec = FLOAT32_GATE_SETTINGS[setting]
    inp32 = make_inputs(B=2, T=37, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=41, requires_grad=True,
                        dtype=torch.float32)
    inp32 = _apply_gates(inp32, spec, seed=42, dtype=torch.float32)
    inp64 = make_inputs(B=2, T=37, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=41, dtype=torch.float32)
    for name in ("q", "k", "v", "theta", "eta", "alpha"):
        setattr(inp64, name, getattr(inp32, name).detach().double().requires_grad_(True))
    inp64.state = MemoryState(tuple(w.detach().double().requires_grad_(True) for w in inp32.state.weights),
                              tuple(s.detach().double().requires_grad_(True) for s in inp32.state.momentum))
    kw = dict(chunk_size=8, activation="gelu")
    return inp32, run_with_grads(neural_memory_naive, inp64, **kw), run_with_grads(neural_memory_chunk, inp32, **kw)


# Tolerances as in the float32 equivalence test (measured ~1e-6 forward, ~5e-7 gradients).
@pytest.mark.parametrize("setting", list(FLOAT32_GATE_SETTINGS), ids=list(FLOAT32_GATE_SETTINGS))
def test_extreme_gates_float32_finite_and_forward_close(setting):
    inp32, (y_ref, s_ref, _), (y, s, g) = _float32_extreme_run(setting)
    assert y.dtype == torch.float32
    for name, gr in zip(inp32.leaf_names(), g):
        _assert_finite(f"d loss / d {name}", gr)
    assert_close("y", y_ref, y, 1e-5)
    for i in range(2):
        assert_close(f"weights[{i}]", s_ref.weights[i], s.weights[i], 1e-5)
        assert_close(f"momentum[{i}]", s_ref.momentum[i], s.momentum[i], 1e-5)


@pytest.mark.parametrize("setting", list(FLOAT32_GATE_SETTINGS), ids=list(FLOAT32_GATE_SETTINGS))
def test_extreme_gates_float32_gradients_close(setting):
    inp32, (_, _, g_ref), (_, _, g) = _float32_extreme_run(setting)
    for name, a, b in zip(inp32.leaf_names(), g_ref, g):
        # At gates below float32's smallest normal number (eta = 0 or 1e-45, alpha = 1) the gate's
        # gradient is recovered from products that pass through subnormals, whose mantissa is
        # shorter: measured up to 5.7e-6 there (2-3e-7 for every other gradient), hence 5e-5.
        rtol = 5e-5 if name in ("eta", "alpha") else 5e-6
        assert_close(f"d loss / d {name}", a, b, rtol)


# --------------------------------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("residual", [False, True], ids=["nores", "res"])
@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck(impl, read, residual):
    g = torch.Generator().manual_seed(51)
    B, T, H, D = 1, 5, 1, 3
    q = torch.randn(B, T, H, D, dtype=torch.float64, generator=g) * 0.5
    k = torch.randn(B, T, H, D, dtype=torch.float64, generator=g) * 0.5
    v = torch.randn(B, T, H, D, dtype=torch.float64, generator=g)
    # gates strictly inside their ranges, so finite differences never leave the domain
    theta = 0.05 + 0.1 * torch.rand(B, T, H, dtype=torch.float64, generator=g)
    eta = 0.1 + 0.8 * torch.rand(B, T, H, dtype=torch.float64, generator=g)
    alpha = 0.05 + 0.2 * torch.rand(B, T, H, dtype=torch.float64, generator=g)
    st = make_state(B, H, [(D, 4), (4, D)], generator=g)
    inputs = [q, k, v, theta, eta, alpha, *st.weights, *st.momentum]
    inputs = [t.clone().requires_grad_(True) for t in inputs]

    def fn(q, k, v, theta, eta, alpha, w1, w2, s1, s2):
        y, s = impl(q, k, v, theta, eta, alpha, MemoryState((w1, w2), (s1, s2)), chunk_size=2, read=read,
                    activation="gelu", residual=residual)
        return (y, *s.weights, *s.momentum)

    # fast_mode checks random projections of the Jacobian; the full Jacobian (~2-5 s per case here) is
    # checked for the chunk op's default configuration only.
    fast = not (impl is neural_memory_chunk and read == "token" and not residual)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=fast)


# --------------------------------------------------------------------------------------------------
# Independence of batch rows and heads.
# --------------------------------------------------------------------------------------------------


def _select(inp, dim_tokens: int, dim_state: int, i: int):
    def sel(t, dim):
        return t.narrow(dim, i, 1)

    args = [sel(t, dim_tokens) for t in (inp.q, inp.k, inp.v, inp.theta, inp.eta, inp.alpha)]
    state = MemoryState(tuple(sel(w, dim_state) for w in inp.state.weights),
                        tuple(sel(s, dim_state) for s in inp.state.momentum))
    return args, state


@pytest.mark.parametrize("axis", ["batch", "head"])
@pytest.mark.parametrize("impl", IMPLS)
def test_rows_and_heads_independent(impl, axis):
    inp = make_inputs(B=3, T=21, H=3, Dk=5, Dv=4, depth=2, hidden=6, seed=61)
    dim_tokens, dim_state = (0, 0) if axis == "batch" else (2, 1)
    kw = dict(chunk_size=4, activation="silu")
    y_all, s_all = impl(*inp.args(), **kw)
    for i in range(3):
        args, state = _select(inp, dim_tokens, dim_state, i)
        y_i, s_i = impl(*args, state, **kw)
        assert_close(f"y[{axis} {i}]", y_all.narrow(dim_tokens, i, 1), y_i, RTOL64)
        for j in range(2):
            assert_close(f"weights[{j}][{axis} {i}]", s_all.weights[j].narrow(dim_state, i, 1), s_i.weights[j], RTOL64)
            assert_close(f"momentum[{j}][{axis} {i}]", s_all.momentum[j].narrow(dim_state, i, 1), s_i.momentum[j],
                         RTOL64)


@pytest.mark.parametrize("impl", IMPLS)
def test_batch_row_gradients_do_not_leak(impl):
    inp = make_inputs(B=3, T=21, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=62, requires_grad=True)
    y, s = impl(*inp.args(), chunk_size=4)
    loss = (y[1] * torch.randn_like(y[1])).sum() + sum((w[1] ** 2).sum() for w in s.weights)
    grads = torch.autograd.grad(loss, inp.leaves())
    for name, gr in zip(inp.leaf_names(), grads):
        assert gr[1].abs().max() > 0, f"d loss / d {name}: no gradient on the row the loss depends on"
        assert gr[0].abs().max() == 0 and gr[2].abs().max() == 0, f"d loss / d {name} leaks into other rows"


# --------------------------------------------------------------------------------------------------
# Only some inputs require grad; non-contiguous inputs.
# --------------------------------------------------------------------------------------------------

SUBSETS = {
    "q": ("q",),
    "k,v": ("k", "v"),
    "gates": ("theta", "eta", "alpha"),
    "state": ("W0[0]", "W0[1]", "S0[0]", "S0[1]"),
    "weights0,eta": ("W0[0]", "eta"),
}


@pytest.mark.parametrize("subset", list(SUBSETS), ids=list(SUBSETS))
@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_when_only_some_inputs_require_grad(impl, subset):
    full = make_inputs(B=2, T=19, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=65, requires_grad=True)
    _, _, g_full = run_with_grads(impl, full, chunk_size=4)
    part = make_inputs(B=2, T=19, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=65)
    names = part.leaf_names()
    wanted = [part.leaves()[names.index(n)] for n in SUBSETS[subset]]
    for t in wanted:
        t.requires_grad_(True)
    y, s = impl(*part.args(), chunk_size=4)
    grads = torch.autograd.grad(linear_functional(y, s), wanted)
    for n, gr in zip(SUBSETS[subset], grads):
        assert_close(f"d loss / d {n}", g_full[names.index(n)], gr, RTOL64)


@pytest.mark.parametrize("impl", IMPLS)
def test_non_contiguous_inputs(impl):
    inp = make_inputs(B=2, T=19, H=3, Dk=5, Dv=4, depth=2, hidden=6, seed=66)
    y_ref, s_ref = impl(*inp.args(), chunk_size=4)
    # [B, H, T, D] storage seen as [B, T, H, D]; gates as every other element of a wider tensor.
    q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (inp.q, inp.k, inp.v))
    gates = [torch.stack([g, torch.zeros_like(g)], dim=-1)[..., 0] for g in (inp.theta, inp.eta, inp.alpha)]
    st = MemoryState(tuple(w.transpose(-1, -2).contiguous().transpose(-1, -2) for w in inp.state.weights),
                     inp.state.momentum)
    assert not q.is_contiguous() and not gates[0].is_contiguous() and not st.weights[0].is_contiguous()
    y, s = impl(q, k, v, *gates, st, chunk_size=4)
    assert_close("y", y_ref, y, 1e-12)
    compare_states("state", s_ref, s, 1e-12)


# --------------------------------------------------------------------------------------------------
# Empty sequence, no_grad, dtypes, MemoryState.initial.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("q_dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("impl", IMPLS)
def test_empty_sequence(impl, q_dtype):
    inp = make_inputs(B=2, T=0, H=3, Dk=5, Dv=4, depth=2, hidden=6, dtype=q_dtype, state_dtype=torch.float32)
    before = [t.clone() for t in (*inp.state.weights, *inp.state.momentum)]
    y, state = impl(*inp.args(), chunk_size=4)
    assert y.shape == (2, 0, 3, 4)
    assert y.dtype == q_dtype
    assert state is inp.state
    for a, b in zip(before, (*state.weights, *state.momentum)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_inference_mode(impl):
    inp = make_inputs(B=2, T=19, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=72)
    y_ref, s_ref = impl(*inp.args(), chunk_size=4)
    with torch.inference_mode():
        y, s = impl(*inp.args(), chunk_size=4)
    assert not y.requires_grad
    assert_close("y", y_ref, y, 1e-14)
    compare_states("state", s_ref, s, 1e-14)


@pytest.mark.parametrize("impl", IMPLS)
def test_no_grad_mode(impl):
    inp = make_inputs(B=2, T=19, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=71, requires_grad=True)
    y_grad, s_grad = impl(*inp.args(), chunk_size=4)
    assert y_grad.requires_grad
    with torch.no_grad():
        y, s = impl(*inp.args(), chunk_size=4)
    outs = [("y", y), *[(f"weights[{i}]", w) for i, w in enumerate(s.weights)],
            *[(f"momentum[{i}]", m) for i, m in enumerate(s.momentum)]]
    for name, t in outs:
        assert not t.requires_grad, f"{name} requires grad under no_grad"
        assert t.grad_fn is None, f"{name} has a grad_fn under no_grad"
    assert_close("y", y_grad, y, 1e-14)
    compare_states("state", s_grad, s, 1e-14)


# y is computed in float32 and rounded once: at most half an ulp of the largest output
# (bf16 2^-9 ~ 2.0e-3, fp16 2^-12 ~ 2.4e-4; measured 1.9e-3 and 2.6e-4 relative to max|y|).
@pytest.mark.parametrize("dtype, rtol", [(torch.bfloat16, 4e-3), (torch.float16, 5e-4)], ids=["bf16", "fp16"])
@pytest.mark.parametrize("impl", IMPLS)
def test_low_precision_inputs_float32_state(impl, dtype, rtol):
    inp = make_inputs(B=2, T=33, H=2, Dk=5, Dv=4, depth=2, hidden=6, seed=81, dtype=dtype,
                      state_dtype=torch.float32, requires_grad=True)
    y, s = impl(*inp.args(), chunk_size=8)
    assert y.dtype == dtype
    for t in (*s.weights, *s.momentum):
        assert t.dtype == torch.float32
    grads = torch.autograd.grad(linear_functional(y, s), inp.leaves())
    for name, leaf, gr in zip(inp.leaf_names(), inp.leaves(), grads):
        assert gr.dtype == leaf.dtype, f"d loss / d {name} has dtype {gr.dtype}, input has {leaf.dtype}"
        _assert_finite(f"d loss / d {name}", gr)
    # Values: the same op on the same (rounded) inputs in float32; the only extra error is rounding y.
    up = [t.detach().float() for t in (inp.q, inp.k, inp.v, inp.theta, inp.eta, inp.alpha)]
    y32, s32 = impl(*up, inp.state, chunk_size=8)
    assert_close("y", y32, y, rtol)
    compare_states("state", s32, s, 1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_memory_state_initial_gradients(impl):
    g = torch.Generator().manual_seed(91)
    H, dims = 2, [(5, 6), (6, 4)]
    per_head = [(torch.randn(H, a, b, dtype=torch.float64, generator=g) / a**0.5).requires_grad_(True)
                for a, b in dims]
    B = 3
    state = MemoryState.initial(per_head, batch_size=B, dtype=torch.float64)
    assert state.weights[0].shape == (B, H, 5, 6) and state.weights[0].dtype == torch.float64
    for w, p, m in zip(state.weights, per_head, state.momentum):
        assert torch.equal(w, p.detach().expand_as(w))
        assert torch.equal(m, torch.zeros_like(w))
    inp = make_inputs(B=B, T=11, H=H, Dk=5, Dv=4, depth=2, hidden=6, seed=92)
    y, s = impl(inp.q, inp.k, inp.v, inp.theta, inp.eta, inp.alpha, state, chunk_size=4)
    grads = torch.autograd.grad(linear_functional(y, s), per_head)
    # Reference: the same run from leaf copies of the expanded weights; the per-head gradient is the
    # sum over batch rows.
    leaves = [p.detach().expand(B, *p.shape).clone().requires_grad_(True) for p in per_head]
    ref_state = MemoryState(tuple(leaves), tuple(torch.zeros_like(w) for w in leaves))
    y2, s2 = impl(inp.q, inp.k, inp.v, inp.theta, inp.eta, inp.alpha, ref_state, chunk_size=4)
    ref = torch.autograd.grad(linear_functional(y2, s2), leaves)
    for i, (a, b) in enumerate(zip(ref, grads)):
        assert b.abs().max() > 0
        assert_close(f"d loss / d per_head[{i}]", a.sum(0), b, RTOL64)


def test_memory_state_initial_copies_weights():
    w = torch.randn(2, 3, 4)
    state = MemoryState.initial([w], batch_size=2)
    state.weights[0][0].zero_()
    assert state.weights[0][1].abs().max() > 0 and w.abs().max() > 0
    assert torch.equal(state.weights[0][1], w)
