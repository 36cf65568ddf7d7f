"""Chunk-parallel neural memory: the naive loop's numbers from batched matmuls (see README.md)."""

from __future__ import annotations

import functools

import torch

from .coefficients import ChunkCoefficients, chunk_coefficients
from .mlp import activation_backward, activation_fn, mlp_forward
from .state import MemoryState, state_precision
from .surprise import check_max_surprise, surprise_scale
from .validation import validate_op_inputs

__all__ = ["neural_memory_chunk"]

# Without autograd, chunks still run in groups of this many: the coefficients of a group are built in
# one batched call, O(group x chunk) memory per row and head, so a 1M-token no-grad call stays bounded.
NO_GRAD_GROUP_CHUNKS = 16


def _chunk_step(
    weights: tuple[torch.Tensor, ...],
    moments: tuple[torch.Tensor, ...],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    theta: torch.Tensor,
    coef: ChunkCoefficients,
    read: str,
    activation: str,
    residual: bool,
    max_surprise: float | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """One chunk of n tokens: q, k ``[B, H, n, Dk]``, v ``[B, H, n, Dv]``, theta ``[B, H, n]``.

    Returns the reads ``[B, H, n, Dv]`` and the weights and momentum after the chunk's last token.
    """
    act, act_backward = activation_fn(activation), activation_backward(activation)
    depth = len(weights)

    # Forward on the keys at the chunk-start weights W_0, keeping each layer's input h_{l-1}.
    inputs, pre = [], []
    h = k
    for i, w in enumerate(weights):
        inputs.append(h)
        z = h @ w
        if i < depth - 1:
            pre.append(z)
            h = act(z)
    # Backward by hand: delta_l = d loss / d z_l per token; the gradient of token m for layer l is the
    # outer product h_{l-1,m}^T delta_{l,m} (eq. 12 with the factor 2 of the square), never formed.
    delta = 2.0 * ((z + k if residual else z) - v)
    deltas = [delta]
    for i in range(depth - 2, -1, -1):
        delta = act_backward(delta @ weights[i + 1].transpose(-1, -2), pre[i])
        deltas.append(delta)
    deltas.reverse()
    if max_surprise is not None:
        # ||h^T delta||_F = ||h|| ||delta|| per token: the squared norm of each token's whole gradient.
        squared = sum(h.square().sum(-1) * d.square().sum(-1) for h, d in zip(inputs, deltas))
        theta = theta * surprise_scale(squared, max_surprise)

    if read == "chunk":
        y = mlp_forward(weights, q, activation, residual)
    else:
        # Dual form (TTT mini-batch dual form, with momentum and forgetting folded into gamma):
        # x_i W_{l,i} = beta_i x_i W_{l,0} + c_i x_i S_{l,0} - sum_m G[i,m] theta_m (x_i . h_m) delta_m,
        # computed as one matmul [beta x | c x | -G theta (x h^T)] @ [W_0; S_0; delta]: the scalings
        # fall on the narrow left factor and no output is sliced.
        neg_g_theta = -(coef.gamma * theta.unsqueeze(-2))  # [B, H, n, n]
        beta, c = coef.beta.unsqueeze(-1), coef.c.unsqueeze(-1)
        x = q
        for i, (w, s) in enumerate(zip(weights, moments)):
            left = torch.cat((beta * x, c * x, neg_g_theta * (x @ inputs[i].mT)), dim=-1)
            z = left @ torch.cat((w, s, deltas[i]), dim=-2)
            x = act(z) if i < depth - 1 else z
        y = x + q if residual else x

    # Carry to the next chunk: W_n and S_n as weighted sums of the per-token gradients.
    carry_w = (coef.carry_w * theta).unsqueeze(-1)
    carry_s = (coef.carry_s * theta).unsqueeze(-1)
    beta_end = coef.beta[..., -1, None, None]
    c_end = coef.c[..., -1, None, None]
    eta_end = coef.eta_end[..., None, None]
    new_w, new_s = [], []
    for w, s, h_in, d in zip(weights, moments, inputs, deltas):
        h_t = h_in.mT
        new_w.append(beta_end * w + c_end * s - h_t @ (carry_w * d))
        new_s.append(eta_end * s - h_t @ (carry_s * d))
    return y, tuple(new_w), tuple(new_s)


def _group_coefficients(eta: torch.Tensor, alpha: torch.Tensor, chunk_size: int):
    """Coefficients of each chunk of gates ``[B, H, len]``; they do not depend on the state, so
    all full chunks are computed in one batched call."""
    length = eta.shape[-1]
    full = length - length % chunk_size
    if full:
        batched = chunk_coefficients(
            eta[..., :full].unflatten(-1, (-1, chunk_size)), alpha[..., :full].unflatten(-1, (-1, chunk_size))
        )
        fields = [getattr(batched, name) for name in ChunkCoefficients.__dataclass_fields__]
        for i in range(full // chunk_size):
            yield ChunkCoefficients(*(f.select(2, i) for f in fields))
    if full < length:
        yield chunk_coefficients(eta[..., full:], alpha[..., full:])


@functools.cache
def _compiled_step():
    """``_chunk_step`` through ``torch.compile`` (built once; static shapes, so only full chunks use it)."""
    return torch.compile(_chunk_step, dynamic=False)


def _chunk_group(
    weights: tuple[torch.Tensor, ...],
    moments: tuple[torch.Tensor, ...],
    inputs: tuple[torch.Tensor, ...],
    chunk_size: int,
    read: str,
    activation: str,
    residual: bool,
    compiled: bool = False,
    max_surprise: float | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Consecutive chunks of ``inputs = (q, k, v, theta, eta, alpha)``, the state carried from one to
    the next (eqs. 13-14 across chunks); returns the reads ``[B, H, len, Dv]`` and the last state.

    Runs with autocast off (see ``state_precision``), in the forward and in the recomputing backward
    alike, so both compute the same float32 numbers whatever autocast context each was called in.
    """
    q, k, v, theta, eta, alpha = inputs
    # A shorter last chunk runs eagerly: compiling every tail length would recompile up to
    # chunk_size - 1 times and then fall back to eager anyway.
    fast = _compiled_step() if compiled else _chunk_step
    # split, not slices: a slice's backward writes into a zero tensor of the whole input's size.
    pieces = zip(*(t.split(chunk_size, dim=2) for t in (q, k, v, theta)), _group_coefficients(eta, alpha, chunk_size))
    ys = []
    with state_precision(q.device):
        for q_c, k_c, v_c, theta_c, coef in pieces:
            step = fast if q_c.shape[2] == chunk_size else _chunk_step
            y, weights, moments = step(weights, moments, q_c, k_c, v_c, theta_c, coef, read, activation, residual,
                                       max_surprise)
            ys.append(y)
    return torch.cat(ys, dim=2), weights, moments


class _RecomputedGroup(torch.autograd.Function):
    """A group of chunks run without recording a graph; the backward pass recomputes it.

    This is activation checkpointing written out: unlike ``torch.utils.checkpoint`` (non-reentrant),
    whose forward keeps every autograd node of the group alive, the forward here leaves a single
    node per group. Thousands of small long-lived nodes interleaved with the chunks' megabyte-sized
    temporaries fragment the heap and multiply the resident memory; one node per group does not.
    The backward uses ``torch.autograd.grad`` on the recomputed group, so ``torch.autograd.grad``
    and ``gradcheck`` work from outside (reentrant checkpointing supports only ``backward()``).
    """

    @staticmethod
    def forward(ctx, settings: tuple, depth: int, *tensors: torch.Tensor):  # type: ignore[override]
        ctx.settings, ctx.depth = settings, depth
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*tensors)
        y, weights, moments = _chunk_group(*_unflatten(tensors, depth), *settings)
        return (y, *weights, *moments)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):  # type: ignore[override]
        needs = ctx.needs_input_grad[2:]
        leaves = [t.detach().requires_grad_(need) for t, need in zip(ctx.saved_tensors, needs)]
        with torch.enable_grad():
            y, weights, moments = _chunk_group(*_unflatten(leaves, ctx.depth), *ctx.settings)
        used = [(o, g) for o, g in zip((y, *weights, *moments), grads) if g is not None and o.requires_grad]
        wanted = [t for t in leaves if t.requires_grad]
        if not used or not wanted:
            return (None, None, *[None] * len(leaves))
        found = iter(torch.autograd.grad(
            [out for out, _ in used], wanted, [g for _, g in used], allow_unused=True
        ))
        return (None, None, *[next(found) if t.requires_grad else None for t in leaves])


def _unflatten(tensors, depth: int):
    return tuple(tensors[:depth]), tuple(tensors[depth : 2 * depth]), tuple(tensors[2 * depth :])


def neural_memory_chunk(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    theta: torch.Tensor,
    eta: torch.Tensor,
    alpha: torch.Tensor,
    state: MemoryState,
    chunk_size: int = 64,
    read: str = "token",
    activation: str = "gelu",
    residual: bool = False,
    check_inputs: bool = True,
    recompute_chunks: int = 8,
    compiled: bool = False,
    max_surprise: float | None = None,
) -> tuple[torch.Tensor, MemoryState]:
    """Titans neural memory (arXiv 2501.00663v1, eqs. 12-18), computed chunk by chunk with matmuls.

    Same arguments and the same results as :func:`neural_memory_naive` (see it for the equations):
    inside a chunk, every gradient is taken at the chunk-start weights and the momentum + forgetting
    recurrence is a lower-triangular coefficient matrix built in log space; reads after each token's
    update use the dual form; MLP gradients are written in closed form. No per-token weights or
    per-token gradient matrices are materialised.

    Args:
        q, k: ``[B, T, H, Dk]``; v: ``[B, T, H, Dv]``; theta, eta, alpha: ``[B, T, H]``, the gates
            (inner learning rate, momentum, forgetting; see :func:`neural_memory_naive`).
        state: weights and momentum, each ``[B, H, d_in, d_out]``, float32 (or float64).
        chunk_size, read, activation, residual, check_inputs: as in :func:`neural_memory_naive`.
        recompute_chunks: when autograd records, keep only the inputs of each group of this many
            chunks and the state between groups, and recompute the group in the backward pass
            (activation checkpointing, see ``_RecomputedGroup``): memory linear in T with a
            small constant, one extra forward. Larger groups keep fewer states alive and hold
            more intermediates while one group is recomputed. 0 keeps every intermediate
            (fastest backward, most memory). Without autograd, groups of
            ``NO_GRAD_GROUP_CHUNKS`` chunks bound the memory of long inputs.
        compiled: run each full chunk through ``torch.compile`` of the chunk step (inductor; on
            CPU it needs a C++ compiler). The same numbers up to float rounding order; the
            first call of each shape compiles (about 20 s on a 2-core CPU), later ones run about
            a quarter faster there (benchmarks/results/peers_compiled.md).
        max_surprise: bound on each token's surprise, as in :func:`neural_memory_naive`.

    Under ``torch.autocast`` the memory's arithmetic still runs in the state's dtype (float32): the
    op casts its inputs and turns autocast off inside, in the recomputing backward too.

    Returns:
        ``y`` of shape ``[B, T, H, Dv]`` in q's dtype, and the state after the last token.
    """
    dims = validate_op_inputs(
        q, k, v, theta, eta, alpha, state, chunk_size, read, activation, residual, check_inputs
    )
    if isinstance(recompute_chunks, bool) or not isinstance(recompute_chunks, int):
        raise TypeError(f"recompute_chunks must be an int, got {type(recompute_chunks).__name__}")
    if recompute_chunks < 0:
        raise ValueError(f"recompute_chunks must be >= 0 (0 disables recomputation), got {recompute_chunks}")
    if not isinstance(compiled, bool):
        raise TypeError(f"compiled must be a bool, got {type(compiled).__name__}")
    max_surprise = check_max_surprise(max_surprise)
    if dims.length == 0:
        return q.new_empty(dims.batch, 0, dims.heads, dims.dim_v), state

    dtype, out_dtype = state.weights[0].dtype, q.dtype
    q, k, v = (t.to(dtype).transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
    theta, eta, alpha = (g.to(dtype).transpose(1, 2) for g in (theta, eta, alpha))  # [B, H, T]

    use_checkpoint = recompute_chunks > 0 and torch.is_grad_enabled()
    if use_checkpoint:
        group = chunk_size * recompute_chunks
    elif torch.is_grad_enabled():  # recompute_chunks=0: the graph keeps every intermediate anyway
        group = dims.length
    else:
        group = chunk_size * NO_GRAD_GROUP_CHUNKS
    weights, moments = state.weights, state.momentum
    # split, not slices in the loop: the backward of a split concatenates the groups' gradients
    # once, where each slice's backward would write into a zero tensor of the whole input's size.
    settings = (chunk_size, read, activation, residual, compiled, max_surprise)
    depth = len(weights)
    ys: list[torch.Tensor] = []
    for inputs in zip(*(t.split(group, dim=2) for t in (q, k, v, theta, eta, alpha))):
        if use_checkpoint:
            out = _RecomputedGroup.apply(settings, depth, *weights, *moments, *inputs)
            y_group, weights, moments = out[0], tuple(out[1 : 1 + depth]), tuple(out[1 + depth :])
        else:
            y_group, weights, moments = _chunk_group(weights, moments, inputs, *settings)
        ys.append(y_group)
    y = (ys[0] if len(ys) == 1 else torch.cat(ys, dim=2)).transpose(1, 2).to(out_dtype)
    return y, MemoryState(weights, moments)
