"""NeuralMemory layer: pieces == one call, decoding == parallel, causality, batching, gradients."""

from __future__ import annotations

import pytest
import torch

import titanmem.layers.neural_memory as layer_module
from tests.helpers import assert_close, run_in_pieces
from titanmem.layers.neural_memory import NeuralMemory
from titanmem.ops import neural_memory_naive

RTOL = 1e-10


def _layer(seed: int = 0, **kw) -> NeuralMemory:
    torch.manual_seed(seed)
    args = dict(hidden_size=12, num_heads=2, memory_depth=2, memory_expansion=2, chunk_size=8, max_lr=0.5)
    args.update(kw)
    layer = NeuralMemory(**args).double()
    with torch.no_grad():  # random gate biases, so the gates differ per head and token
        layer.gate_proj.bias.normal_(0.0, 1.0)
    return layer


def _x(B: int = 2, T: int = 37, C: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, T, C, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _compare_states(a, b):
    for name in ("weights", "momentum"):
        for i, (u, w) in enumerate(zip(getattr(a.memory, name), getattr(b.memory, name))):
            assert_close(f"memory.{name}[{i}]", u, w, RTOL)
    for i, (u, w) in enumerate(zip(a.pending, b.pending)):
        assert u.shape == w.shape
        assert_close(f"pending[{i}]", u, w, RTOL)
    assert_close("conv_tail", a.conv_tail, b.conv_tail, RTOL)
    assert a.offset == b.offset


@pytest.mark.parametrize("read", ["token", "chunk"])
@pytest.mark.parametrize(
    "lengths", [(37,), (5, 0, 1, 17, 3, 11), (8, 8, 8, 13), (1,) * 37], ids=["one", "uneven", "aligned", "tokens"]
)
def test_pieces_equal_one_call(lengths, read):
    layer, x = _layer(read=read), _x()
    y_ref, s_ref = layer(x)
    y, s = run_in_pieces(layer, x, lengths)
    assert_close("y", y_ref, y, RTOL)
    _compare_states(s_ref, s)


@pytest.mark.parametrize("depth", [1, 3])
def test_prefill_then_decode_equals_parallel(depth):
    layer, x = _layer(memory_depth=depth, chunk_size=4), _x(T=23)
    y_ref, _ = layer(x)
    for prefill in (0, 3, 4, 9):
        y, state = layer(x[:, :prefill])
        ys = [y]
        for t in range(prefill, x.shape[1]):
            y_t, state = layer(x[:, t : t + 1], state)
            ys.append(y_t)
        assert_close(f"decode after prefill {prefill}", y_ref, torch.cat(ys, dim=1), RTOL)


@pytest.mark.parametrize("read", ["token", "chunk"])
def test_same_outputs_with_the_naive_op(read, monkeypatch):
    layer, x = _layer(read=read), _x(T=21)
    y_fast, s_fast = layer(x)
    # compiled and recompute_chunks are execution options of the chunk op only; the naive loop has none.
    monkeypatch.setattr(layer_module, "neural_memory_chunk",
                        lambda *a, compiled, recompute_chunks, **kw: neural_memory_naive(*a, **kw))
    y_ref, s_ref = layer(x)
    assert_close("y", y_ref, y_fast, RTOL)
    _compare_states(s_ref, s_fast)


@pytest.mark.parametrize("p", [0, 7, 8, 9, 30])
def test_causal(p):
    layer, x = _layer(), _x()
    y, _ = layer(x)
    x2 = x.clone()
    x2[:, p] += 1.0
    y2, _ = layer(x2)
    assert torch.equal(y[:, :p], y2[:, :p])
    assert (y[:, p] - y2[:, p]).abs().max() > 1e-6  # the perturbation is seen at p


def test_batch_rows_independent():
    layer, x = _layer(), _x(B=3)
    y, _ = layer(x)
    for b in range(3):
        y_b, _ = layer(x[b : b + 1])
        assert_close(f"row {b}", y[b : b + 1], y_b, RTOL)


def test_gradients_through_pieces_equal_one_call_and_reach_every_parameter():
    layer, x = _layer(), _x(T=29)
    weights = torch.randn(2, 29, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def grads(lengths):
        layer.zero_grad()
        y, _ = run_in_pieces(layer, x, lengths)
        (y * weights).sum().backward()
        return {n: p.grad.clone() for n, p in layer.named_parameters()}

    one, pieces = grads((29,)), grads((3, 10, 1, 15))
    for name, g in one.items():
        assert g.abs().max() > 0, f"{name} gets no gradient"
        assert_close(f"d/d {name}", g, pieces[name], 1e-9)


def test_empty_input_returns_the_state():
    layer, x = _layer(), _x(T=5)
    _, state = layer(x)
    y, same = layer(x[:, :0], state)
    assert y.shape == (2, 0, 12) and same is state


def test_detach_cuts_the_graph():
    layer, x = _layer(), _x(T=11)
    _, state = layer(x)
    assert state.memory.weights[0].requires_grad
    cut = state.detach()
    assert not any(t.requires_grad for t in (*cut.memory.weights, *cut.pending, cut.conv_tail))


def test_float32_model_keeps_a_float32_state_under_bfloat16_inputs():
    torch.manual_seed(0)
    layer = NeuralMemory(hidden_size=12, num_heads=2, chunk_size=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = layer(torch.randn(1, 9, 12))
    assert state.memory.weights[0].dtype == torch.float32
    assert bool(torch.isfinite(y.float()).all())


@pytest.mark.parametrize(
    "kw, pattern",
    [
        (dict(hidden_size=10, num_heads=3), r"hidden_size \(10\) must be divisible by num_heads \(3\)"),
        (dict(hidden_size=12, num_heads=2, chunk_size=0), r"chunk_size must be >= 1, got 0"),
        (dict(hidden_size=12, num_heads=0), r"num_heads must be >= 1, got 0"),
        (dict(hidden_size=12, num_heads=2, memory_depth=0), r"memory_depth must be >= 1, got 0"),
        (dict(hidden_size=12, num_heads=2, activation="tanh"), r"activation must be one of"),
        (dict(hidden_size=12, num_heads=2, read="both"), r"read must be 'token' or 'chunk'"),
        (dict(hidden_size=12, num_heads=2, max_lr=0.0), r"max_lr must be > 0"),
    ],
)
def test_bad_arguments(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        NeuralMemory(**kw)


def test_state_of_another_batch_size_is_rejected():
    layer, x = _layer(), _x(B=2, T=5)
    _, state = layer(x)
    with pytest.raises(ValueError, match=r"state is for batch size 2, x has 1"):
        layer(x[:1], state)


def test_state_does_not_keep_the_whole_piece_alive():
    # The carried pending tokens and conv tail must be copies: views would pin every projection of
    # the last piece in memory for as long as the state lives.
    layer = NeuralMemory(32, 2, chunk_size=16)
    _, state = layer(torch.randn(2, 1000, 32))
    for t in (*state.pending, state.conv_tail):
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), t.shape


def test_retrieve_reads_the_memory_at_the_last_chunk_boundary_without_writing():
    from titanmem.ops.neural_memory.mlp import mlp_forward

    layer, x = _layer(), _x(T=21)
    _, state = layer(x)
    before = [w.clone() for w in state.memory.weights]
    q = torch.nn.functional.normalize(torch.randn(2, 5, layer.num_heads, layer.head_dim, dtype=x.dtype), dim=-1)
    read = layer.retrieve(q, state)
    want = mlp_forward(before, q.transpose(1, 2), layer.activation, residual=False).transpose(1, 2)
    assert_close("retrieve", want, read, RTOL)
    assert all(torch.equal(a, b) for a, b in zip(before, state.memory.weights))  # nothing written
    with pytest.raises(ValueError, match=r"queries must have shape \[B=2, n, H=2, D=6\], got \(2, 5, 2\)"):
        layer.retrieve(q[..., 0], state)


def test_the_forgetting_gate_stays_below_max_alpha_and_starts_at_its_bias():
    torch.manual_seed(0)
    layer = NeuralMemory(hidden_size=12, num_heads=2, chunk_size=8, max_alpha=1e-3, forget_bias_init=-1.0).double()
    bias = layer.gate_proj.bias.detach().view(3, -1)[2]
    assert torch.equal(bias, torch.full_like(bias, -1.0))
    x = 50.0 * _x(T=9)  # large inputs push the gate logits far from their bias
    with torch.no_grad():
        (_, _, _, _, _, alpha), _ = layer._inputs(x, None)
        assert float(alpha.max()) <= 1e-3 and float(alpha.min()) >= 0.0
        layer.gate_proj.weight.zero_()  # logits = bias: alpha = max_alpha * sigmoid(-1)
        (_, _, _, _, _, alpha), _ = layer._inputs(x, None)
    torch.testing.assert_close(alpha, torch.full_like(alpha, 1e-3 * torch.sigmoid(torch.tensor(-1.0)).item()))


def test_the_momentum_gate_starts_at_its_bias():
    layer = NeuralMemory(hidden_size=12, num_heads=2, chunk_size=8, momentum_bias_init=2.0).double()
    with torch.no_grad():
        layer.gate_proj.weight.zero_()
        (_, _, _, theta, eta, _), _ = layer._inputs(_x(T=5), None)
    torch.testing.assert_close(eta, torch.full_like(eta, torch.sigmoid(torch.tensor(2.0)).item()))
    torch.testing.assert_close(theta, torch.full_like(theta, 0.01 * torch.sigmoid(torch.tensor(-2.0)).item()))
    with pytest.raises(ValueError, match="momentum_bias_init"):
        NeuralMemory(hidden_size=12, num_heads=2, momentum_bias_init=float("nan"))


def test_a_layer_keeps_the_name_its_errors_use():
    assert NeuralMemory(hidden_size=12, num_heads=2, name="encoder.memory").name == "encoder.memory"
    assert NeuralMemory(hidden_size=12, num_heads=2).name == "NeuralMemory"
