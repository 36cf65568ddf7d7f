"""``compiled=True``: the chunk op with its full chunks through ``torch.compile`` gives the eager
op's outputs, state and gradients (float64, so only the rounding order may differ)."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.helpers import assert_close, compare_states, make_inputs, run_with_grads
from titanmem.ops import neural_memory_chunk

# Inductor compiles C++ on CPU.
HAS_CXX = any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.mark.skipif(not HAS_CXX, reason="torch.compile on CPU needs a C++ compiler (g++, c++ or clang++) on PATH")
def test_compiled_matches_eager_float64():
    from torch._dynamo.utils import counters

    # 2 full chunks of 16 and a tail of 5 (run eagerly); 2 chunks per recomputed group.
    inp = make_inputs(B=2, T=37, H=2, Dk=4, Dv=4, depth=2, hidden=8, requires_grad=True, seed=9)
    kw = dict(chunk_size=16, read="token", activation="gelu", residual=False, recompute_chunks=2)
    y_ref, s_ref, g_ref = run_with_grads(neural_memory_chunk, inp, **kw)
    counters.clear()
    y, s, g = run_with_grads(neural_memory_chunk, inp, compiled=True, **kw)
    assert counters["stats"]["unique_graphs"] >= 1, "nothing was compiled"
    assert_close("y", y_ref, y, 1e-10)
    compare_states("state", s_ref, s, 1e-10)
    for name, a, b in zip(inp.leaf_names(), g_ref, g):
        assert_close(f"d loss / d {name}", a, b, 1e-10)


def test_compiled_must_be_a_bool():
    inp = make_inputs(T=5)
    with pytest.raises(TypeError, match="compiled must be a bool, got str"):
        neural_memory_chunk(*inp.args(), compiled="yes")
