"""Attention layer: sdpa == eager == a per-query oracle, causality, windows, persistent tokens, caching."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import assert_close, run_in_pieces
from titanmem.layers import Attention, causal_window_mask

F64 = torch.float64
C, H = 16, 2


def make_attention(window=None, n_persistent=0, impl="sdpa", seed=0, **kw) -> Attention:
    torch.manual_seed(seed)
    attn = Attention(C, H, window=window, n_persistent=n_persistent, impl=impl, **kw).double()
    if n_persistent:
        with torch.no_grad():  # larger than the 0.02 init so persistent tokens matter in the checks
            attn.persistent.normal_()
    return attn


def x_of(B: int, T: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, C, dtype=F64, generator=g)


def oracle(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """One query at a time: softmax over [persistent || tokens max(0, p-w+1)..p] (paper eqs. 26-27)."""
    B, T, _ = x.shape
    D = attn.head_dim
    rows = []
    for p in range(T):
        lo = 0 if attn.window is None else max(0, p - attn.window + 1)
        pos = torch.arange(lo, p + 1)
        q = attn.q_proj(x[:, p]).view(B, H, D)
        cos, sin = _rope(torch.tensor([p]), D)
        q = _rotate(q, cos[0], sin[0])
        k = attn.k_proj(x[:, lo : p + 1]).view(B, -1, H, D)
        cos, sin = _rope(pos, D)
        k = _rotate(k, cos[:, None], sin[:, None])
        v = attn.v_proj(x[:, lo : p + 1]).view(B, -1, H, D)
        if attn.n_persistent:
            pk = attn.k_proj(attn.persistent).view(1, -1, H, D).expand(B, -1, H, D)
            pv = attn.v_proj(attn.persistent).view(1, -1, H, D).expand(B, -1, H, D)
            k, v = torch.cat([pk, k], 1), torch.cat([pv, v], 1)
        w = torch.softmax(torch.einsum("bhd,bshd->bhs", q, k) / math.sqrt(D), dim=-1)
        rows.append(attn.o_proj(torch.einsum("bhs,bshd->bhd", w, v).reshape(B, H * D)))
    return torch.stack(rows, dim=1)


def _rope(pos: torch.Tensor, D: int):
    freqs = 10000.0 ** (-torch.arange(0, D, 2, dtype=F64) / D)
    ang = pos.to(F64)[:, None] * freqs
    return ang.cos(), ang.sin()


def _rotate(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


CONFIGS = [(w, p) for w in (None, 1, 5) for p in (0, 3)]


@pytest.mark.parametrize("T", [1, 7, 33])
@pytest.mark.parametrize("window,n_persistent", CONFIGS)
def test_sdpa_equals_eager_outputs_and_gradients(window, n_persistent, T):
    fast = make_attention(window, n_persistent, "sdpa")
    ref = make_attention(window, n_persistent, "eager")
    ref.load_state_dict(fast.state_dict())
    x = x_of(2, T)
    r = torch.randn(2, T, C, dtype=F64)
    results = []
    for attn in (fast, ref):
        xi = x.clone().requires_grad_(True)
        y, state = attn(xi)
        params = [p for _, p in attn.named_parameters()]
        grads = torch.autograd.grad((y * r).sum(), [xi, *params])
        results.append((y, state, grads))
    (y0, s0, g0), (y1, s1, g1) = results
    assert_close("y", y1, y0, 1e-12)
    assert torch.equal(s0.k, s1.k) and torch.equal(s0.v, s1.v) and s0.offset == s1.offset == T
    names = ["x"] + [n for n, _ in fast.named_parameters()]
    assert ("persistent" in names) == bool(n_persistent)
    for name, a, b in zip(names, g1, g0):
        # With one visible key (T=1 or w=1, no persistent tokens) q and k have exactly zero gradient
        # in eager and rounding-level noise in sdpa, so the error is relative to max(|ref|, 1).
        err = (a - b).abs().max() / max(a.abs().max().item(), 1.0)
        assert err <= 1e-12, f"grad {name}: error {err:.3e}"


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("window,n_persistent", [(None, 0), (1, 0), (4, 2), (None, 3)])
def test_matches_per_query_oracle(window, n_persistent, impl):
    attn = make_attention(window, n_persistent, impl)
    x = x_of(2, 11)
    with torch.no_grad():
        assert_close("y", oracle(attn, x), attn(x)[0], 1e-12)


@pytest.mark.parametrize("window,n_persistent", [(None, 0), (3, 2)])
def test_causal_perturbing_token_p_leaves_earlier_outputs_unchanged(window, n_persistent):
    attn = make_attention(window, n_persistent)
    x = x_of(1, 12)
    with torch.no_grad():
        y, _ = attn(x)
        for p in (0, 5, 11):
            x2 = x.clone()
            x2[:, p] += 1.0
            y2, _ = attn(x2)
            assert torch.equal(y2[:, :p], y[:, :p]), f"outputs before {p} changed"
            assert (y2[:, p] - y[:, p]).abs().max() > 1e-6, f"output {p} did not change"


@pytest.mark.parametrize("w", [1, 2, 5])
def test_window_hides_tokens_more_than_w_minus_1_back(w):
    attn = make_attention(w, n_persistent=2)
    x = x_of(1, 14)
    q = 12
    with torch.no_grad():
        y, _ = attn(x)
        for src in range(q + 1):
            x2 = x.clone()
            x2[:, src] += 1.0
            moved = (attn(x2)[0][:, q] - y[:, q]).abs().max()
            if q - src >= w:
                assert moved == 0, f"window {w}: token {src} reached position {q}"
            else:
                assert moved > 1e-6, f"window {w}: token {src} should reach position {q}"


def test_persistent_tokens_reach_every_output_with_window_1():
    attn = make_attention(1, n_persistent=3)
    x = x_of(2, 9)
    with torch.no_grad():
        y, _ = attn(x)
        attn.persistent[1] += 0.5
        y2, _ = attn(x)
    assert ((y2 - y).abs().amax(dim=-1) > 1e-6).all()
    # Without persistent tokens a window of 1 is a per-token map: o(v(x_t)).
    plain = make_attention(1)
    with torch.no_grad():
        assert_close("w=1", plain.o_proj(plain.v_proj(x)), plain(x)[0], 1e-13)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("window,n_persistent", [(None, 0), (5, 2), (1, 1)])
def test_prefill_then_decode_equals_one_call(window, n_persistent, impl):
    attn = make_attention(window, n_persistent, impl)
    T = 13
    x = x_of(2, T)
    with torch.no_grad():
        full, full_state = attn(x)
        for P in (0, 1, 4, 7, T):
            y, state = run_in_pieces(attn, x, [P] + [1] * (T - P))
            assert_close(f"P={P}", full, y, 1e-12)
            assert state.offset == T
            assert_close(f"P={P} cached keys", full_state.k, state.k, 1e-12)


@pytest.mark.parametrize("window,n_persistent", [(None, 2), (4, 2), (4, 0)])
def test_uneven_pieces_equal_one_call(window, n_persistent):
    attn = make_attention(window, n_persistent)
    x = x_of(2, 16)
    with torch.no_grad():
        full, _ = attn(x)
        y, state = run_in_pieces(attn, x, [5, 0, 1, 7, 3])
    assert_close("pieces", full, y, 1e-12)
    assert state.offset == 16


def test_batch_rows_are_independent():
    attn = make_attention(4, 2)
    x = x_of(3, 10)
    with torch.no_grad():
        y, _ = attn(x)
        for b in range(3):
            assert_close(f"row {b}", attn(x[b : b + 1])[0][0], y[b], 1e-12)
        x2 = x.clone()
        x2[0] += 1.0
        y2, _ = attn(x2)
    assert torch.equal(y2[1:], y[1:])
    assert (y2[0] - y[0]).abs().max() > 1e-6


@pytest.mark.parametrize("window", [1, 3, 6])
def test_kv_cache_never_grows_past_window(window):
    attn = make_attention(window, n_persistent=2)
    x = x_of(1, 3 * window)
    state = None
    with torch.no_grad():
        for t in range(3 * window):
            _, state = attn(x[:, t : t + 1], state)
            assert state.k.shape[1] == state.v.shape[1] == min(t + 1, window - 1)
            assert state.offset == t + 1
        _, state = attn(x, None)  # a long prefill keeps only the tail too, also in memory
    assert state.k.shape[1] == window - 1
    per_token = H * (C // H) * state.k.element_size()
    for cached in (state.k, state.v):
        assert cached.untyped_storage().nbytes() == (window - 1) * per_token


def test_full_attention_cache_keeps_every_token():
    attn = make_attention(None)
    _, state = run_in_pieces(attn, x_of(1, 6), [2, 1, 3])
    assert state.k.shape == (1, 6, H, C // H)


def test_causal_window_mask_matches_definition():
    qp, kp = torch.arange(3, 7), torch.arange(0, 7)
    for w in (None, 1, 3):
        m = causal_window_mask(qp, kp, w)
        for i, p in enumerate(qp.tolist()):
            for j, s in enumerate(kp.tolist()):
                assert bool(m[i, j]) == (s <= p and (w is None or p - s < w)), (w, p, s)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(hidden_size=10, num_heads=3), "hidden_size"),
        (dict(hidden_size=12, num_heads=4), "head_dim"),  # derived head_dim 3 is odd
        (dict(hidden_size=16, num_heads=2, head_dim=5), "head_dim"),
        (dict(hidden_size=16, num_heads=2, window=0), "window"),
        (dict(hidden_size=16, num_heads=2, n_persistent=-1), "n_persistent"),
        (dict(hidden_size=16, num_heads=2, impl="flash"), "impl"),
        (dict(hidden_size=16, num_heads=0), "num_heads"),
    ],
)
def test_bad_constructor_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Attention(**kwargs)


def test_bad_forward_arguments_raise():
    attn = make_attention(3)
    with pytest.raises(ValueError, match="x must be 3-D with last size 16"):
        attn(torch.randn(1, 4, 8, dtype=F64))
    _, state = attn(x_of(2, 4))
    with pytest.raises(ValueError, match=r"state\.k"):
        attn(x_of(1, 1), state)  # batch size differs from the cached state
    with pytest.raises(TypeError, match="state"):
        attn(x_of(2, 1), (state.k, state.v))
    with pytest.raises(ValueError, match="window"):
        causal_window_mask(torch.arange(3), torch.arange(3), 0)
