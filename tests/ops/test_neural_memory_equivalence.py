"""neural_memory_chunk computes the same numbers as the token-by-token oracle neural_memory_naive.

float64 comparisons use rtol 1e-8 (measured errors are ~1e-15). The relative error of a tensor is
``max|ref - out| / max|ref|`` (see tests/helpers.py).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from tests.helpers import (
    assert_close,
    compare_states,
    make_inputs,
    run_with_grads,
)
from titanmem.ops import neural_memory_chunk, neural_memory_naive

RTOL64 = 1e-8


def _dims(residual: bool) -> dict:
    # Dk != Dv whenever allowed, so a transposed weight or swapped dimension cannot go unnoticed.
    return {"Dk": 6, "Dv": 6} if residual else {"Dk": 6, "Dv": 5}


def _case_id(T, chunk, depth, read, residual, activation, recompute_chunks=None):
    parts = [f"T{T}", f"c{chunk}", f"d{depth}", read, "res" if residual else "nores", activation]
    if recompute_chunks is not None:
        parts.append(f"recompute{recompute_chunks}")
    return "-".join(parts)


# --------------------------------------------------------------------------------------------------
# Forward: outputs and final state over a large grid.
# --------------------------------------------------------------------------------------------------

T_VALUES = (1, 7, 63, 65, 257)
CHUNKS = (1, 4, 16, 64)
DEPTHS = (1, 2, 3)
READS = ("token", "chunk")
ACTIVATIONS = ("gelu", "silu", "relu")


def _forward_grid():
    cases = []
    # Full product for T <= 65 (the activation only matters with a hidden layer: depth 1 uses gelu).
    for T, chunk, depth, read, residual in itertools.product(T_VALUES[:-1], CHUNKS, DEPTHS, READS, (False, True)):
        for act in (ACTIVATIONS if depth > 1 else ("gelu",)):
            cases.append((T, chunk, depth, read, residual, act))
    # T = 257 (the naive loop is slow there): every chunk x depth x read, residual/activation rotated.
    for i, (chunk, depth, read) in enumerate(itertools.product(CHUNKS, DEPTHS, READS)):
        cases.append((257, chunk, depth, read, bool(i % 2), ACTIVATIONS[i % 3]))
    return [pytest.param(*c, id=_case_id(*c)) for c in cases]


@pytest.mark.parametrize("T, chunk, depth, read, residual, activation", _forward_grid())
def test_forward_matches_naive_float64(T, chunk, depth, read, residual, activation):
    inp = make_inputs(B=2, T=T, H=2, depth=depth, hidden=7, seed=T * 1000 + chunk * 10 + depth, **_dims(residual))
    kw = dict(chunk_size=chunk, read=read, activation=activation, residual=residual)
    y_ref, s_ref = neural_memory_naive(*inp.args(), **kw)
    y, s = neural_memory_chunk(*inp.args(), **kw)
    assert y.dtype == torch.float64
    assert_close("y", y_ref, y, RTOL64)
    compare_states("state", s_ref, s, RTOL64)


# --------------------------------------------------------------------------------------------------
# Gradients: a hand-picked covering set (every value of every axis, most pairs of values).
# --------------------------------------------------------------------------------------------------

GRAD_CASES = [
    # T, chunk, depth, read, residual, activation, recompute_chunks (0 = no checkpointing)
    (1, 1, 1, "token", False, "gelu", 8),
    (1, 4, 2, "chunk", True, "silu", 0),
    (7, 16, 3, "token", False, "relu", 0),
    (63, 64, 1, "chunk", True, "relu", 8),
    (65, 64, 2, "token", False, "silu", 8),
    (65, 1, 3, "chunk", True, "gelu", 0),
    (257, 16, 1, "token", True, "silu", 3),
    (63, 4, 3, "token", False, "gelu", 8),
    (257, 1, 2, "chunk", False, "relu", 0),
    (7, 16, 2, "chunk", True, "gelu", 8),
    (65, 4, 1, "token", False, "relu", 0),
    (257, 64, 3, "token", False, "gelu", 0),
    (63, 1, 2, "token", False, "silu", 0),
    (1, 16, 3, "token", False, "silu", 8),
    (7, 1, 1, "token", False, "silu", 8),
    (1, 64, 1, "token", False, "relu", 8),
    (7, 4, 1, "token", False, "gelu", 8),
    (7, 64, 1, "token", False, "gelu", 8),
    (63, 16, 1, "token", False, "gelu", 8),
    (65, 16, 1, "token", False, "gelu", 8),
    (257, 4, 1, "token", False, "gelu", 8),
    (257, 4, 3, "chunk", True, "silu", 8),
    (65, 16, 2, "token", True, "relu", 8),
    (63, 64, 3, "chunk", False, "relu", 0),
    (65, 4, 2, "token", True, "gelu", 0),
]


def _check_grads(inp, naive_kw, chunk_kw, rtol):
    y_ref, s_ref, g_ref = run_with_grads(neural_memory_naive, inp, **naive_kw)
    y, s, g = run_with_grads(neural_memory_chunk, inp, **naive_kw, **chunk_kw)
    assert_close("y", y_ref, y, rtol)
    compare_states("state", s_ref, s, rtol)
    for name, a, b in zip(inp.leaf_names(), g_ref, g):
        assert_close(f"d loss / d {name}", a, b, rtol)


@pytest.mark.parametrize(
    "T, chunk, depth, read, residual, activation, recompute_chunks",
    [pytest.param(*c, id=_case_id(*c)) for c in GRAD_CASES],
)
def test_gradients_match_naive_float64(T, chunk, depth, read, residual, activation, recompute_chunks):
    inp = make_inputs(B=2, T=T, H=2, depth=depth, hidden=7, requires_grad=True, seed=T + 7 * chunk + depth,
                      **_dims(residual))
    naive_kw = dict(chunk_size=chunk, read=read, activation=activation, residual=residual)
    _check_grads(inp, naive_kw, {"recompute_chunks": recompute_chunks}, RTOL64)


# recompute_chunks: chunks per activation-checkpointed group (0 = no checkpointing). T = 65 with
# chunk 4 gives 17 chunks: groups of 3 and 8 leave a partial last group, 100 is a single group.
@pytest.mark.parametrize(
    "recompute_chunks",
    [
        pytest.param(None, id="recompute_default"),
        pytest.param(0, id="recompute_chunks0"),
        pytest.param(1, id="recompute_chunks1"),
        pytest.param(3, id="recompute_chunks3"),
        pytest.param(8, id="recompute_chunks8"),
        pytest.param(17, id="recompute_chunks17"),
        pytest.param(100, id="recompute_chunks100"),
    ],
)
@pytest.mark.parametrize("read", READS)
def test_recompute_settings_same_gradients(recompute_chunks, read):
    chunk_kw = {} if recompute_chunks is None else {"recompute_chunks": recompute_chunks}
    inp = make_inputs(B=2, T=65, H=2, depth=2, hidden=7, requires_grad=True, seed=5, **_dims(False))
    naive_kw = dict(chunk_size=4, read=read, activation="silu", residual=False)
    _check_grads(inp, naive_kw, chunk_kw, RTOL64)


# --------------------------------------------------------------------------------------------------
# float32
# --------------------------------------------------------------------------------------------------

# float32 chunk op vs the float64 naive oracle (inputs generated in float64 and rounded to float32, so
# the error includes that rounding). Measured on these cases (T=129, chunk 16, B=H=2): worst relative
# error 1.0e-6 on outputs/state and 3.8e-7 on gradients (naive fp32 does the same: 8.9e-7 / 3.8e-7);
# over 72 other configurations (T up to 257, chunk up to 64, depth 1-3, 4 seeds) at most 2.9e-6 / 1.3e-6.
# float32 eps is 1.2e-7 and the error grows over the recurrent steps, hence tolerances ~10x above.
RTOL32_FWD = 1e-5
RTOL32_GRAD = 5e-6


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("depth, activation", [(1, "gelu"), (2, "gelu"), (3, "silu")], ids=["d1", "d2-gelu", "d3-silu"])
def test_float32_close_to_float64_reference(depth, activation, read):
    kw = dict(chunk_size=16, read=read, activation=activation, residual=False)
    inp64 = make_inputs(B=2, T=129, H=2, depth=depth, hidden=7, requires_grad=True, seed=11, **_dims(False))
    inp32 = make_inputs(B=2, T=129, H=2, depth=depth, hidden=7, requires_grad=True, seed=11, dtype=torch.float32,
                        **_dims(False))
    y_ref, s_ref, g_ref = run_with_grads(neural_memory_naive, inp64, **kw)
    y, s, g = run_with_grads(neural_memory_chunk, inp32, **kw)
    assert y.dtype == torch.float32 and s.weights[0].dtype == torch.float32
    assert_close("y", y_ref, y, RTOL32_FWD)
    for i in range(depth):
        assert_close(f"weights[{i}]", s_ref.weights[i], s.weights[i], RTOL32_FWD)
        assert_close(f"momentum[{i}]", s_ref.momentum[i], s.momentum[i], RTOL32_FWD)
    for name, a, b in zip(inp64.leaf_names(), g_ref, g):
        assert b.dtype == torch.float32
        assert_close(f"d loss / d {name}", a, b, RTOL32_GRAD)


# --------------------------------------------------------------------------------------------------
# recompute really drops the intermediates from the autograd graph.
# --------------------------------------------------------------------------------------------------


def _saved_bytes(**chunk_kw) -> int:
    """Bytes of tensors the autograd graph of one forward saves (as seen by saved_tensors_hooks)."""
    inp = make_inputs(B=2, T=256, H=2, Dk=16, Dv=16, depth=2, hidden=32, dtype=torch.float32,
                      requires_grad=True, seed=3)
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        neural_memory_chunk(*inp.args(), chunk_size=16, **chunk_kw)
    return total


@pytest.mark.parametrize("recompute_chunks", [1, 4, 8, 16])
def test_recompute_saves_only_group_inputs_and_boundary_states(recompute_chunks):
    # 256 tokens in chunks of 16 = 16 chunks. With recomputation the graph must hold exactly the
    # inputs (q, k, v and three gates, 4 bytes each) and one memory state per group; no intermediate.
    B, T, H, D, hidden = 2, 256, 2, 16, 32
    inputs = 4 * B * T * H * (3 * D + 3)
    state = 4 * 2 * B * H * (D * hidden + hidden * D)  # weights and momentum of both layers
    groups = 16 // recompute_chunks
    assert _saved_bytes(recompute_chunks=recompute_chunks) == inputs + groups * state
    assert _saved_bytes(recompute_chunks=0) > 5 * (inputs + state)  # without: every intermediate
