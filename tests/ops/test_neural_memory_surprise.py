"""Bounded surprise (``max_surprise``): chunk == naive in float64 with the bound active, the plain rule
when no gradient reaches it, a hand-written one-token check, and the argument's errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests.helpers import assert_close, compare_states, make_inputs, run_with_grads
from titanmem.ops import MemoryState, neural_memory_chunk, neural_memory_naive

RTOL64 = 1e-8


def _per_token_norms(inp, chunk: int, **kw) -> torch.Tensor:
    """Norms ``||g_t||`` of every token's surprise under the plain rule (naive loop, autograd)."""
    norms = []
    weights = list(inp.state.weights)
    q, k, v, theta, eta, alpha = (t.detach() for t in inp.args()[:6])
    state = MemoryState(tuple(w.detach() for w in weights), tuple(s.detach() for s in inp.state.momentum))
    for t in range(q.shape[1]):
        start = t - t % chunk
        # The chunk-start weights of token t: the state after the tokens before its chunk.
        _, at_start = neural_memory_naive(q[:, :start], k[:, :start], v[:, :start], theta[:, :start],
                                          eta[:, :start], alpha[:, :start], state, chunk_size=chunk, **kw)
        ws = [w.detach().requires_grad_(True) for w in at_start.weights]
        from titanmem.ops.neural_memory.mlp import mlp_forward

        out = mlp_forward(ws, k[:, t : t + 1].transpose(1, 2), kw.get("activation", "gelu"), False)
        loss = (out - v[:, t : t + 1].transpose(1, 2)).square().sum()
        grads = torch.autograd.grad(loss, ws)
        norms.append(sum(g.square().sum((-2, -1)) for g in grads).sqrt())
    return torch.stack(norms)


CASES = [  # T, chunk, depth, read
    (1, 1, 1, "token"), (9, 1, 2, "chunk"), (13, 4, 3, "token"), (13, 4, 2, "chunk"), (33, 8, 1, "token"),
    (33, 16, 2, "token"), (21, 3, 3, "chunk"), (40, 8, 2, "chunk"),
]


@pytest.mark.parametrize("T, chunk, depth, read", CASES, ids=lambda v: str(v))
def test_bounded_chunk_matches_naive_float64_with_gradients(T, chunk, depth, read):
    inp = make_inputs(B=2, T=T, H=2, Dk=6, Dv=5, depth=depth, hidden=7, requires_grad=True, seed=T * 10 + depth,
                      lr_scale=0.5)
    norms = _per_token_norms(inp, chunk)
    # Halfway between two neighbouring norms near the median: about half the tokens are clipped, and no
    # token sits on the bound, where the two ops' roundings could pick different sides of the kink.
    ranked = norms.flatten().sort().values
    middle = max(1, ranked.numel() // 2)
    tau = float(ranked[middle - 1] + ranked[middle]) / 2
    assert bool((norms > tau).any()) and bool((norms < tau).any())
    kw = dict(chunk_size=chunk, read=read, max_surprise=tau)
    y_ref, s_ref, g_ref = run_with_grads(neural_memory_naive, inp, **kw)
    for recompute in (0, 2):
        y, s, g = run_with_grads(neural_memory_chunk, inp, recompute_chunks=recompute, **kw)
        assert_close("y", y_ref, y, RTOL64)
        compare_states("state", s_ref, s, RTOL64)
        for name, a, b in zip(inp.leaf_names(), g_ref, g):
            assert_close(f"d loss / d {name}", a, b, RTOL64)
    plain = neural_memory_naive(*inp.args(), chunk_size=chunk, read=read)[0]
    assert (plain - y_ref).abs().max() > 1e-6  # the bound changed the result


@pytest.mark.parametrize("impl", [neural_memory_naive, neural_memory_chunk], ids=["naive", "chunk"])
@pytest.mark.parametrize("depth, read", list(itertools.product((1, 2, 3), ("token", "chunk"))))
def test_a_bound_above_every_gradient_is_the_plain_rule(impl, depth, read):
    inp = make_inputs(B=2, T=19, H=2, depth=depth, hidden=7, requires_grad=True, seed=depth)
    tau = 1.01 * float(_per_token_norms(inp, 4).max())
    y_ref, s_ref, g_ref = run_with_grads(impl, inp, chunk_size=4, read=read)
    y, s, g = run_with_grads(impl, inp, chunk_size=4, read=read, max_surprise=tau)
    assert torch.equal(y, y_ref)
    for a, b in zip((*s_ref.weights, *s_ref.momentum), (*s.weights, *s.momentum)):
        assert torch.equal(a, b)
    for name, a, b in zip(inp.leaf_names(), g_ref, g):
        assert_close(f"d loss / d {name}", a, b, 1e-12)


def test_one_token_on_a_linear_memory_by_hand():
    # W_1 = (1 - alpha) W_0 + eta S_0 - theta * g * min(1, tau / ||g||), g = 2 k (k W_0 - v)^T.
    g = torch.Generator().manual_seed(3)
    k, v = torch.randn(1, 1, 1, 4, dtype=torch.float64, generator=g), torch.randn(1, 1, 1, 3, dtype=torch.float64,
                                                                                  generator=g)
    w0, s0 = torch.randn(1, 1, 4, 3, dtype=torch.float64, generator=g), torch.randn(1, 1, 4, 3, dtype=torch.float64,
                                                                                    generator=g)
    theta, eta, alpha = (torch.full((1, 1, 1), x, dtype=torch.float64) for x in (0.3, 0.6, 0.1))
    grad = 2 * k[0, 0, 0][:, None] * (k[0, 0, 0] @ w0[0, 0] - v[0, 0, 0])[None, :]
    for tau in (0.05 * grad.norm().item(), 10 * grad.norm().item()):
        want = (1 - 0.1) * w0[0, 0] + 0.6 * s0[0, 0] - 0.3 * grad * min(1.0, tau / grad.norm().item())
        for impl in (neural_memory_naive, neural_memory_chunk):
            _, state = impl(k, k, v, theta, eta, alpha, MemoryState((w0,), (s0,)), chunk_size=1, max_surprise=tau)
            torch.testing.assert_close(state.weights[0][0, 0], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", [neural_memory_naive, neural_memory_chunk], ids=["naive", "chunk"])
@pytest.mark.parametrize("value, error", [(0.0, ValueError), (-1.0, ValueError), (math.nan, ValueError),
                                          (math.inf, ValueError), ("1", TypeError), (True, TypeError)])
def test_bad_max_surprise_is_refused(impl, value, error):
    inp = make_inputs(T=3)
    with pytest.raises(error, match="max_surprise"):
        impl(*inp.args(), max_surprise=value)


def test_the_bound_keeps_a_saturated_memory_finite_where_the_plain_rule_diverges():
    # theta = 0.01 (the default max_lr), eta = 0.99, alpha = 0: the plain rule reaches NaN at token 256.
    torch.manual_seed(0)
    B, T, H, D, hidden = 1, 512, 2, 16, 64
    q, k = (torch.nn.functional.normalize(torch.randn(B, T, H, D), dim=-1) for _ in range(2))
    v = torch.randn(B, T, H, D)
    gates = (torch.full((B, T, H), 0.01), torch.full((B, T, H), 0.99), torch.zeros(B, T, H))
    state = MemoryState.initial([torch.randn(H, D, hidden) / D**0.5, torch.randn(H, hidden, D) / hidden**0.5], B)
    with torch.no_grad():
        plain, _ = neural_memory_chunk(q, k, v, *gates, state, chunk_size=64)
        bounded, bounded_state = neural_memory_chunk(q, k, v, *gates, state, chunk_size=64, max_surprise=1.0)
    assert not bool(torch.isfinite(plain).all())
    assert bool(torch.isfinite(bounded).all()) and all(bool(torch.isfinite(w).all()) for w in bounded_state.weights)
