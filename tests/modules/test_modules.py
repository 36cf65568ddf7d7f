"""RMSNorm, SwiGLU, the causal depthwise conv and rotary embeddings against hand-written formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import assert_close, run_in_pieces
from titanmem.modules import CausalDepthwiseConv1d, RMSNorm, SwiGLU, apply_rotary

F64 = torch.float64


def test_rmsnorm_matches_formula_and_keeps_half_dtype():
    norm = RMSNorm(6, eps=1e-5).double()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 6, dtype=F64))
    x = torch.randn(3, 4, 6, dtype=F64) * 3
    want = x / torch.sqrt((x * x).sum(-1, keepdim=True) / 6 + 1e-5) * norm.weight
    assert_close("rmsnorm", want, norm(x), 1e-14)
    # bf16 in, bf16 out (the statistic is taken in float32, so the result is still close).
    half = norm.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    assert_close("rmsnorm bf16", want, half, 1e-2)


def test_swiglu_matches_formula():
    mlp = SwiGLU(5, 7, bias=True).double()
    x = torch.randn(2, 3, 5, dtype=F64)
    gate = x @ mlp.gate.weight.T + mlp.gate.bias
    up = x @ mlp.up.weight.T + mlp.up.bias
    want = (gate * torch.sigmoid(gate) * up) @ mlp.down.weight.T + mlp.down.bias
    assert_close("swiglu", want, mlp(x), 1e-13)


def _conv_loop(conv: CausalDepthwiseConv1d, x: torch.Tensor) -> torch.Tensor:
    B, T, C = x.shape
    y = torch.zeros_like(x)
    for t in range(T):
        for j in range(conv.kernel_size):
            src = t - conv.kernel_size + 1 + j
            if src >= 0:
                y[:, t] += conv.weight[:, j] * x[:, src]
        y[:, t] += conv.bias
    return y


@pytest.mark.parametrize("kernel", [1, 2, 4])
def test_conv_matches_loop_and_conv1d(kernel):
    conv = CausalDepthwiseConv1d(3, kernel).double()
    x = torch.randn(2, 9, 3, dtype=F64)
    y, _ = conv(x)
    assert_close("conv vs loop", _conv_loop(conv, x), y, 1e-14)
    ref = F.conv1d(F.pad(x.transpose(1, 2), (kernel - 1, 0)), conv.weight.unsqueeze(1), conv.bias, groups=3)
    assert_close("conv vs F.conv1d", ref.transpose(1, 2), y, 1e-14)


@pytest.mark.parametrize("kernel", [1, 4])
def test_conv_pieces_with_tail_equal_one_call_exactly(kernel):
    conv = CausalDepthwiseConv1d(3, kernel).double()
    x = torch.randn(2, 16, 3, dtype=F64)
    full, full_tail = conv(x)
    pieces, tail = run_in_pieces(conv, x, (5, 0, 1, 7, 3))
    assert torch.equal(pieces, full)
    assert torch.equal(tail, full_tail)
    assert tail.shape == (2, kernel - 1, 3)
    # step() is the single-token form of the same computation.
    tail, steps = None, []
    for t in range(16):
        y, tail = conv.step(x[:, t], tail)
        steps.append(y)
    assert torch.equal(torch.stack(steps, dim=1), full)


def test_conv_is_causal_and_sees_exactly_kernel_inputs():
    conv = CausalDepthwiseConv1d(3, 4).double()
    x = torch.randn(1, 12, 3, dtype=F64)
    y, _ = conv(x)
    x2 = x.clone()
    x2[:, 6] += 1.0
    y2, _ = conv(x2)
    changed = (y2 - y).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [False] * 6 + [True] * 4 + [False] * 2


def test_conv_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        CausalDepthwiseConv1d(3, 0)
    with pytest.raises(TypeError, match="channels"):
        CausalDepthwiseConv1d(3.0)
    conv = CausalDepthwiseConv1d(3, 4)
    with pytest.raises(ValueError, match="tail"):
        conv(torch.randn(2, 5, 3), torch.zeros(2, 2, 3))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def test_rotary_scores_depend_only_on_relative_position():
    q = torch.randn(1, 1, 2, 8, dtype=F64)
    k = torch.randn(1, 1, 2, 8, dtype=F64)
    for delta in (0, 3, 17):
        scores = [_dot(apply_rotary(q, p + delta), apply_rotary(k, p)) for p in (0, 5, 1000, 123456)]
        for s in scores[1:]:
            assert_close(f"delta {delta}", scores[0], s, 1e-9)
    # ...and the rotation does change scores with the distance, and preserves norms.
    assert (_dot(apply_rotary(q, 3), apply_rotary(k, 0)) - _dot(q, k)).abs().max() > 1e-3
    assert_close("norm", q.norm(dim=-1), apply_rotary(q, 77).norm(dim=-1), 1e-14)


def test_rotary_position_zero_is_identity_and_offset_equals_positions():
    x = torch.randn(2, 5, 3, 8, dtype=F64)
    assert torch.equal(apply_rotary(x[:, :1], 0), x[:, :1])
    by_offset = apply_rotary(x, 11)
    assert torch.equal(by_offset, apply_rotary(x, torch.arange(11, 16)))
    assert torch.equal(by_offset, apply_rotary(x, torch.arange(11, 16).expand(2, 5)))
    # decoding: token t alone at position 11 + t matches its row in the whole-sequence call
    for t in range(5):
        assert torch.equal(apply_rotary(x[:, t : t + 1], 11 + t), by_offset[:, t : t + 1])


def test_rotary_matches_rotate_half_formula():
    x = torch.randn(1, 3, 1, 4, dtype=F64)
    out = apply_rotary(x, 2)
    freqs = torch.tensor([1.0, 10000.0 ** -0.5], dtype=F64)
    for t in range(3):
        ang = (2 + t) * freqs
        x1, x2 = x[0, t, 0, :2], x[0, t, 0, 2:]
        want = torch.cat([x1 * ang.cos() - x2 * ang.sin(), x2 * ang.cos() + x1 * ang.sin()])
        assert_close(f"t={t}", want, out[0, t, 0], 1e-14)


def test_rotary_rejects_bad_arguments():
    x = torch.randn(1, 3, 1, 4)
    with pytest.raises(ValueError, match="positions"):
        apply_rotary(x, -1)
    with pytest.raises(TypeError, match="positions"):
        apply_rotary(x, torch.arange(3.0))
    with pytest.raises(ValueError, match="positions"):
        apply_rotary(x, torch.arange(4))
    with pytest.raises(ValueError, match="head_dim"):
        apply_rotary(torch.randn(1, 3, 1, 5), 0)
