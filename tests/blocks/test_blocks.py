"""Every architecture block: causal, pieces == one call, decoding == parallel, rows independent, no dead
parameter, and each paper-specific property (MAC's segment masking, MAG's gate, windows)."""

from __future__ import annotations

import pytest
import torch

from tests.invariants import check_causal, check_decoding_equals_parallel, check_pieces_equal_one_call, \
    check_rows_independent
from titanmem.blocks import VARIANTS, BlockSpec, build_block

RTOL = 1e-10
SEGMENT, WINDOW, T = 4, 5, 19
# Every variant, and MAC with a convolution on its retrieval query (its state carries a conv tail), with
# the residual read and with its memory written with the block input.
CASES = (*VARIANTS, "mac-query-conv", "mac-read-residual", "mac-memory-input")


def _block(variant: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    args = dict(hidden_size=16, num_heads=2, intermediate_size=32, window=WINDOW, n_persistent=2,
                chunk_size=SEGMENT, segment_size=SEGMENT, memory_expansion=2, max_lr=0.5)
    if variant == "mac-query-conv":
        variant, args["mac_query_conv"] = "mac", 3
    if variant == "mac-read-residual":
        variant, args["mac_read_residual"] = "mac", True
    if variant == "mac-memory-input":
        variant, args["mac_memory_input"] = "mac", "input"
    args.update(kw)
    block = build_block(variant, BlockSpec(**args)).double()
    with torch.no_grad():  # random gate biases: gates differ per head (the defaults are uniform)
        for name, p in block.named_parameters():
            if name.endswith("gate_proj.bias"):
                p.normal_(0.0, 1.0)
    return block


def _x(B: int = 2, length: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, length, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", CASES)
@pytest.mark.parametrize("p", [0, 3, 4, 5, 9, 18], ids=lambda p: f"p{p}")
def test_causal(variant, p):
    # p = 3, 4, 5 and 9 sit at and around segment/chunk (4) and window (5) boundaries.
    check_causal(_block(variant), _x(), p, lambda row: row + 1.0)


@pytest.mark.parametrize("variant", CASES)
@pytest.mark.parametrize("lengths", [(3, 7, 9), (4, 4, 11), (1, 0, 2, 16)], ids=["uneven", "aligned", "small"])
def test_pieces_equal_one_call(variant, lengths):
    check_pieces_equal_one_call(_block(variant), _x(), lengths, RTOL)


@pytest.mark.parametrize("variant", CASES)
@pytest.mark.parametrize("prefill", [0, 3, 4, 6])
def test_decoding_equals_parallel(variant, prefill):
    check_decoding_equals_parallel(_block(variant), _x(), prefill, RTOL)


@pytest.mark.parametrize("variant", CASES)
def test_batch_rows_independent(variant):
    check_rows_independent(_block(variant), _x(B=3), RTOL)


@pytest.mark.parametrize("variant", CASES)
def test_every_parameter_gets_a_gradient(variant):
    block, x = _block(variant), _x()
    y, _ = block(x)
    (y * torch.randn_like(y)).sum().backward()
    dead = [name for name, p in block.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead, f"parameters with no gradient: {dead}"


def test_mac_retrieval_sees_only_past_segments_and_attention_stays_in_the_segment():
    # The attention of segment s sees only its own tokens and h; h reads M_{t-1}, written by earlier
    # segments. With the memory's learning rate and forget gate at 0 (the forget gate depends on the
    # data too) the weights never change, so the only path from segment 0 onwards is the memory's
    # causal conv over y (kernel 4: the first 3 tokens of segment 1).
    block, x = _block("mac"), _x()
    with torch.no_grad():
        block.memory.gate_proj.bias.view(3, -1)[0].fill_(-1e4)  # theta = max_lr * sigmoid(-1e4) = 0
        block.memory.gate_proj.bias.view(3, -1)[2].fill_(-1e4)  # alpha = 0
    y, _ = block(x)
    x2 = x.clone()
    x2[:, 1] += 1.0  # inside segment 0
    y2, _ = block(x2)
    reach = SEGMENT + 3
    assert (y[:, 1:SEGMENT] - y2[:, 1:SEGMENT]).abs().max() > 1e-8
    assert (y[:, SEGMENT:reach] - y2[:, SEGMENT:reach]).abs().max() > 1e-8  # the conv path
    assert torch.equal(y[:, reach:], y2[:, reach:])


@pytest.mark.parametrize("residual", [False, True])
def test_mac_read_residual_gives_the_memory_read_a_path_that_skips_attention(residual):
    # With attention's values at zero, eq. 22-25's output no longer depends on the retrieved tokens
    # (they enter only as attention context); the residual read still reaches the output.
    block = _block("mac", mac_read_residual=residual)
    with torch.no_grad():
        block.v_proj.weight.zero_()
    y, _ = block(_x())
    (grad,) = torch.autograd.grad(y.square().sum(), block.retrieve_out.weight, allow_unused=True)
    reaches = grad is not None and bool(grad.abs().max() > 0)
    assert reaches == residual


@pytest.mark.parametrize("source", ["attention", "input"])
def test_mac_memory_input_chooses_the_stream_the_memory_is_written_with(source):
    # One whole segment: the block's memory state is the memory layer's own state after the
    # normalised block input exactly when the memory is written with the input (eq. 24 writes y).
    block = _block("mac", mac_memory_input=source)
    x = _x(length=SEGMENT)
    with torch.no_grad():
        _, state = block(x)
        _, own = block.memory(block.norm(x), block.memory.initial_state(2))
    tensors = (*state.memory.memory.weights, *state.memory.memory.momentum)
    expected = (*own.memory.weights, *own.memory.momentum)
    same = all(torch.allclose(a, b, rtol=RTOL, atol=0) for a, b in zip(tensors, expected, strict=True))
    assert same == (source == "input")


@pytest.mark.parametrize("kernel", [0, 3])
def test_mac_query_conv_lets_a_segment_start_ask_with_the_tokens_before_it(kernel):
    # Eq. 21's query is per token: the retrieval of a segment's first token knows nothing of the
    # tokens before it. With a kernel-K convolution it sees the K - 1 tokens before it, no more.
    block = _block("mac", mac_query_conv=kernel)
    h = _x()
    state = block.initial_state(2)

    def first_read_changes(position: int) -> bool:
        h2 = h.clone()
        h2[:, position] += 1.0
        a, _ = block._retrieve(h, state)
        b, _ = block._retrieve(h2, state)
        return bool((a[:, SEGMENT] - b[:, SEGMENT]).abs().max() > 1e-8)

    assert first_read_changes(SEGMENT)
    assert first_read_changes(SEGMENT - 1) == (kernel == 3)
    assert first_read_changes(SEGMENT - 2) == (kernel == 3)
    assert not first_read_changes(SEGMENT - 3)


def test_mac_memory_carries_information_across_segments():
    block, x = _block("mac"), _x()
    y, _ = block(x)
    x2 = x.clone()
    x2[:, 1] += 1.0
    y2, _ = block(x2)
    assert (y[:, SEGMENT:] - y2[:, SEGMENT:]).abs().max() > 1e-8


@pytest.mark.parametrize("variant", ["swa", "mal"])
def test_window_bounds_what_attention_sees(variant):
    # SWA alone forgets tokens more than window-1 positions back; MAL keeps them through the memory.
    block, x = _block(variant), _x()
    y, _ = block(x)
    x2 = x.clone()
    x2[:, 0] += 1.0
    y2, _ = block(x2)
    far = (y[:, WINDOW:] - y2[:, WINDOW:]).abs().max()
    if variant == "swa":
        assert far == 0
    else:
        assert far > 1e-8


@pytest.mark.parametrize(
    "kw, pattern",
    [
        (dict(hidden_size=10, num_heads=3, intermediate_size=8), r"hidden_size \(10\) must be divisible"),
        (dict(hidden_size=8, num_heads=2, intermediate_size=8, window=0), r"window must be >= 1, got 0"),
        (dict(hidden_size=8, num_heads=2, intermediate_size=8, segment_size=0), r"segment_size must be >= 1"),
        (dict(hidden_size=8, num_heads=2, intermediate_size=8, n_persistent=-1), r"n_persistent must be >= 0"),
        (dict(hidden_size=8, num_heads=2, intermediate_size=8, mac_query_conv=-1), r"mac_query_conv must be >= 0"),
        (dict(hidden_size=8, num_heads=2, intermediate_size=8, mac_memory_input="output"),
         r"mac_memory_input must be one of \('attention', 'input'\), got 'output'"),
    ],
)
def test_bad_spec(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        BlockSpec(**kw)


def test_unknown_variant_and_swa_without_window():
    spec = BlockSpec(hidden_size=8, num_heads=2, intermediate_size=8)
    with pytest.raises(ValueError, match=r"variant must be one of"):
        build_block("rnn", spec)
    with pytest.raises(ValueError, match=r"variant 'swa' needs a window"):
        build_block("swa", spec)
