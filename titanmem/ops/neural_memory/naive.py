"""The token-by-token neural memory: the paper's equations as a loop, gradients by autograd (the oracle)."""

from __future__ import annotations

import torch

from .mlp import mlp_forward
from .state import MemoryState, state_precision
from .surprise import check_max_surprise, surprise_scale
from .validation import validate_op_inputs

__all__ = ["neural_memory_naive"]


def neural_memory_naive(
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
    max_surprise: float | None = None,
) -> tuple[torch.Tensor, MemoryState]:
    """Titans neural memory (arXiv 2501.00663v1, eqs. 12-15), one token at a time.

    For each batch row and head, with ``W_c`` the weights at the start of token t's chunk::

        g_t = grad_W ||M_W(k_t) - v_t||^2 at W = W_c      (eq. 12; sum over features, no 1/2)
        S_t = eta_t S_{t-1} - theta_t g_t                  (eq. 14)
        W_t = (1 - alpha_t) W_{t-1} + S_t                  (eq. 13)
        y_t = M_{W_t}(q_t) if read == "token" else M_{W_c}(q_t)   (eq. 15)

    ``chunk_size=1`` is exact online gradient descent with momentum and forgetting.

    Args:
        q, k: ``[B, T, H, Dk]`` queries and keys.
        v: ``[B, T, H, Dv]`` values.
        theta, eta, alpha: ``[B, T, H]`` gates, the paper's names: theta >= 0 the inner learning rate
            (surprise scale), eta in [0, 1] the momentum gate, alpha in [0, 1] the forgetting gate.
            (``state.momentum`` is the momentum buffer S, not the gate.)
        state: weights and momentum, each ``[B, H, d_in, d_out]``, float32 (or float64).
        chunk_size: tokens per chunk; gradients inside a chunk are taken at the chunk's first weights.
        read: ``"token"`` reads after the token's own update, ``"chunk"`` reads the chunk-start weights.
        activation: ``"gelu"``, ``"silu"`` or ``"relu"`` between memory layers.
        residual: memory is ``x + MLP(x)`` (needs Dk == Dv).
        check_inputs: validate shapes and gate ranges (the range check reads the gates' values).
        max_surprise: bound ``tau`` on each token's surprise: ``g_t`` is replaced by
            ``g_t * min(1, tau / ||g_t||)``, the norm over every memory layer's gradient, per batch
            row and head (see :mod:`titanmem.ops.neural_memory.surprise`). None: unbounded (the
            paper's rule).

    Under ``torch.autocast`` the loop still runs in the state's dtype (autocast is turned off inside).

    Returns:
        ``y`` of shape ``[B, T, H, Dv]`` in q's dtype, and the state after the last token.
    """
    dims = validate_op_inputs(
        q, k, v, theta, eta, alpha, state, chunk_size, read, activation, residual, check_inputs
    )
    max_surprise = check_max_surprise(max_surprise)
    if dims.length == 0:
        return q.new_empty(dims.batch, 0, dims.heads, dims.dim_v), state
    if torch.is_inference_mode_enabled():
        # The loop needs autograd for the inner gradient, which inference tensors refuse; run on
        # ordinary copies (the results carry no graph, as under no_grad).
        with torch.inference_mode(False), torch.no_grad():
            copies = [t.clone() for t in (q, k, v, theta, eta, alpha)]
            state = MemoryState(
                tuple(w.clone() for w in state.weights), tuple(s.clone() for s in state.momentum)
            )
            return neural_memory_naive(
                *copies, state, chunk_size, read, activation, residual, check_inputs=False,
                max_surprise=max_surprise,
            )

    dtype, out_dtype = state.weights[0].dtype, q.dtype
    q, k, v = (t.to(dtype).transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
    theta, eta, alpha = (g.to(dtype).transpose(1, 2)[..., None, None] for g in (theta, eta, alpha))
    # Outer gradients (to q, k, v, gates and the initial state) need the inner gradient's graph.
    track = torch.is_grad_enabled()

    weights, moments = list(state.weights), list(state.momentum)
    at_chunk_start = weights
    ys = []
    # Autocast off: the state's arithmetic stays in its dtype (float32), as in the chunk op.
    with torch.enable_grad(), state_precision(q.device):
        for t in range(dims.length):
            if t % chunk_size == 0:
                at_chunk_start = [
                    w if (track and w.requires_grad) else w.detach().requires_grad_(True) for w in weights
                ]
                weights = at_chunk_start
            k_t, v_t, q_t = k[:, :, t : t + 1], v[:, :, t : t + 1], q[:, :, t : t + 1]
            # Summing over batch and heads is harmless: each slice of W only sees its own loss.
            loss = (mlp_forward(at_chunk_start, k_t, activation, residual) - v_t).square().sum()
            grads = torch.autograd.grad(loss, at_chunk_start, create_graph=track)
            with torch.set_grad_enabled(track):
                eta_t, theta_t, alpha_t = eta[:, :, t], theta[:, :, t], alpha[:, :, t]
                if max_surprise is not None:  # clip g_t to norm tau: the same as scaling theta_t
                    squared = sum(g.square().sum((-2, -1)) for g in grads)  # [B, H]
                    theta_t = theta_t * surprise_scale(squared, max_surprise)[..., None, None]
                moments = [eta_t * s - theta_t * g for s, g in zip(moments, grads)]
                weights = [(1.0 - alpha_t) * w + s for w, s in zip(weights, moments)]
                read_weights = weights if read == "token" else at_chunk_start
                ys.append(mlp_forward(read_weights, q_t, activation, residual))

    y = torch.cat(ys, dim=2).transpose(1, 2).to(out_dtype)
    new_state = MemoryState(tuple(weights), tuple(moments))
    if not track:
        y, new_state = y.detach(), new_state.detach()
    return y, new_state
