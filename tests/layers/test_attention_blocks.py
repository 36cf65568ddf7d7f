"""Windowed attention in query blocks (O(T * window)) equals the dense-mask computation."""

from __future__ import annotations

import pytest
import torch

import titanmem.layers.attention as attention_module
from tests.helpers import assert_close
from titanmem.layers.attention import Attention
from titanmem.layers.masked_attention import causal_window_mask, masked_attention
from titanmem.modules.rotary import apply_rotary


def _dense_reference(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """The layer's output written with one [T, T] mask (no cache, no blocks)."""
    B, T, _ = x.shape
    H, D = attn.num_heads, attn.head_dim
    q = apply_rotary(attn.q_proj(x).view(B, T, H, D), 0, attn.rope_theta)
    k = apply_rotary(attn.k_proj(x).view(B, T, H, D), 0, attn.rope_theta)
    v = attn.v_proj(x).view(B, T, H, D)
    pos = torch.arange(T)
    mask = causal_window_mask(pos, pos, attn.window)
    if attn.n_persistent:
        pk, pv = attn._persistent_kv(B, k.dtype)
        k, v = torch.cat([pk, k], 1), torch.cat([pv, v], 1)
        mask = torch.cat([mask.new_ones(T, attn.n_persistent), mask], 1)
    return attn.o_proj(masked_attention(q, k, v, mask, "eager").reshape(B, T, H * D))


def _attn(window, n_persistent, impl="sdpa"):
    torch.manual_seed(0)
    return Attention(16, 2, window=window, n_persistent=n_persistent, impl=impl).double()


@pytest.mark.parametrize("n_persistent", [0, 3])
@pytest.mark.parametrize("window", [1, 5, 40, 200])
def test_long_windowed_prefill_equals_dense(window, n_persistent):
    attn = _attn(window, n_persistent)
    x = torch.randn(2, 300, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert_close("blocked", _dense_reference(attn, x), attn(x)[0], 1e-12)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_many_small_blocks_with_a_cache_equal_one_call(impl, monkeypatch):
    monkeypatch.setattr(attention_module, "_MIN_QUERY_BLOCK", 1)  # blocks of `window` queries
    attn = _attn(3, 2, impl)
    x = torch.randn(2, 23, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y_ref = _dense_reference(attn, x)
    y1, state = attn(x[:, :10])
    y2, _ = attn(x[:, 10:], state)  # second piece starts with a cache of window - 1 tokens
    assert_close("pieces", y_ref, torch.cat([y1, y2], 1), 1e-12)
