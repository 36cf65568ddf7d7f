"""The memory's arithmetic stays float32 under bf16 autocast, in the forward and in the recomputing
backward; long inputs without autograd run in bounded groups of chunks."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import IMPLS, linear_functional, make_inputs, run_with_grads
from titanmem.ops import neural_memory_chunk
from titanmem.ops.neural_memory import chunk as chunk_module


def _forward_in_bf16_autocast(impl, inp, **kwargs):
    """Forward under bf16 autocast, backward outside it (as torch's AMP recipe and the trainer do)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = impl(*inp.args(), **kwargs)
    return y, state, torch.autograd.grad(linear_functional(y, state), inp.leaves())


@pytest.mark.parametrize("read", ["token", "chunk"])
@pytest.mark.parametrize("impl", IMPLS)
def test_autocast_leaves_the_memory_in_float32(impl, read):
    # With bf16 arithmetic inside the op (before state_precision) the reads here were off by about 1e-2.
    inp = make_inputs(B=2, T=40, H=2, Dk=16, Dv=16, depth=2, hidden=32, dtype=torch.float32, requires_grad=True)
    plain_y, plain_state, plain_grads = run_with_grads(impl, inp, chunk_size=8, read=read)
    y, state, grads = _forward_in_bf16_autocast(impl, inp, chunk_size=8, read=read)
    assert y.dtype == torch.float32 and all(w.dtype == torch.float32 for w in state.weights)
    torch.testing.assert_close(y, plain_y, rtol=1e-6, atol=1e-6)
    for a, b in zip((*plain_state.weights, *plain_state.momentum), (*state.weights, *state.momentum)):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    for name, a, b in zip(inp.leaf_names(), plain_grads, grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_recompute_under_autocast_gives_the_gradients_of_no_recompute():
    inp = make_inputs(B=2, T=130, H=2, Dk=16, Dv=16, depth=2, hidden=32, dtype=torch.float32, requires_grad=True)
    _, _, kept = _forward_in_bf16_autocast(neural_memory_chunk, inp, chunk_size=16, recompute_chunks=0)
    _, _, recomputed = _forward_in_bf16_autocast(neural_memory_chunk, inp, chunk_size=16, recompute_chunks=2)
    for name, a, b in zip(inp.leaf_names(), kept, recomputed):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=lambda m, name=name: f"{name}: {m}")


def test_no_grad_long_inputs_build_coefficients_in_bounded_groups(monkeypatch):
    sizes: list[int] = []
    original = chunk_module.chunk_coefficients

    def recording(eta, alpha):
        sizes.append(eta.numel() // (eta.shape[0] * eta.shape[1]))  # tokens of coefficients per row and head
        return original(eta, alpha)

    inp = make_inputs(B=1, T=8 * 50 + 3, H=2, Dk=8, Dv=8, depth=2, hidden=16, dtype=torch.float32)
    want, want_state = neural_memory_chunk(*inp.args(), chunk_size=8, recompute_chunks=0)  # no grad needed: 1 group
    monkeypatch.setattr(chunk_module, "chunk_coefficients", recording)
    with torch.no_grad():
        got, got_state = neural_memory_chunk(*inp.args(), chunk_size=8)
    assert max(sizes) <= 8 * chunk_module.NO_GRAD_GROUP_CHUNKS < 8 * 50
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    for a, b in zip(want_state.weights, got_state.weights):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
