"""The Titans / MIRAS / ATLAS family as a token loop, gradients by autograd (the oracle).

Why a new pair of functions beside ``neural_memory_naive``/``neural_memory_chunk`` rather than more
keyword arguments on them: the Titans pair is the tuned path every layer calls (compiled chunks, the
hand-written recomputation), and its state is the weights themselves; the family adds inputs
(window gates, Huber thresholds, a window context), an accumulator that is not the weights
(``lq``/``kl`` retention) and a per-token materialised path (Muon, non-linear retention) that would
bury the Titans path under branches. The pair shares its contract with the Titans pair (same
arguments first, same state, same chunks, same read modes, same errors) and adds ``rule``; with
``TITANS`` (the default rule) it computes the Titans numbers, which tests check against the Titans
pair.
"""

from __future__ import annotations

import torch

from .family_inputs import WindowContext, prepare_family_inputs
from .family_math import effective_weights, newton_schulz, output_gradient
from .mlp import mlp_forward
from .rule import TITANS, MemoryRule
from .state import MemoryState, state_precision
from .surprise import check_max_surprise, surprise_scale

__all__ = ["neural_memory_family_naive"]


def neural_memory_family_naive(
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
    *,
    rule: MemoryRule = TITANS,
    gamma: torch.Tensor | None = None,
    delta: torch.Tensor | None = None,
    context: WindowContext | None = None,
) -> tuple[torch.Tensor, MemoryState]:
    """One memory rule of the Titans family, token by token.

    Per batch row and head, with ``c`` the window, ``A`` the retained accumulator (``state.weights``),
    ``N`` the retention's map from it to the weights, and ``W_c = N(A)`` at the start of token t's
    chunk (every gradient of a chunk is taken there, as in the papers' parallel training)::

        g_t = sum_{i=t-c+1..t} gamma_i (d M_W(phi(k_i)) / d W)^T psi(M_W(phi(k_i)) - v_i)  at W = W_c
        S_t = eta_t S_{t-1} - theta_t g_t,   step_t = S_t             (optimizer "momentum")
        S_t = eta_t S_{t-1} - g_t,           step_t = theta_t NS(S_t) (optimizer "muon")
        A_t = (1 - alpha_t) A_{t-1} + step_t
        y_t = M_{N(A_t)}(phi(q_t)) if read == "token" else M_{W_c}(phi(q_t))

    ``psi`` is the objective's derivative (``family_math.output_gradient``), ``N`` the retention's
    map (``family_math.effective_weights``: identity, ``A / ||A||_q^{q-2}`` or a row softmax),
    ``NS`` Newton-Schulz (``family_math.newton_schulz``), ``phi`` the feature map
    (``features.apply_feature_map``). The window reaches back into ``context`` and stops at the
    first token available. The gradient is autograd's backpropagation of ``psi`` through the memory;
    for ``l2`` it is autograd's gradient of ``||M_W(k) - v||^2`` (the Titans op's). With the rule
    ``TITANS`` this is ``neural_memory_naive``.

    With a non-linear retention the paper's parallel training applies ``N`` "at chunk boundaries":
    here ``N`` enters every gradient only through ``W_c`` (the chunk-start weights), which is where
    the chunk boundary is, and reads at ``N(A_t)``, so ``chunk_size=1`` is the per-token rule of
    MIRAS exactly. Memora's logits may be carried unnormalised: a softmax does not change when a
    constant is added to its row, so ``softmax((1 - alpha) log W_{t-1} + step)`` equals
    ``softmax((1 - alpha) A_{t-1} + step)`` for ``W_{t-1} = softmax(A_{t-1})``.

    Args:
        q, k, v, theta, eta, alpha, state, chunk_size, read, activation, residual, check_inputs,
        max_surprise: as in :func:`titanmem.ops.neural_memory_naive` (``q``, ``k`` before the
            feature map; ``state.weights`` hold ``A``, the first layer taking ``feature_dim(Dk)``
            inputs; ``residual`` adds ``phi(q)``; ``max_surprise`` bounds ``||g_t||``).
        rule: the point of the design space (:class:`MemoryRule`).
        gamma: ``[B, T, H]`` window gates in [0, 1] (ATLAS's ``gamma_i``); None: all 1.
        delta: ``[B, T, H]`` Huber thresholds >= 0, required by objective ``"huber"`` only.
        context: tokens before ``q``'s first (:class:`WindowContext`), for the window; None: none.

    Raises:
        TypeError, ValueError: as ``neural_memory_naive``, and for a bad ``rule``, ``gamma``,
            ``delta`` or ``context`` (the message names it).

    Returns:
        ``y`` ``[B, T, H, Dv]`` in q's dtype, and the state (accumulators, momentum) after the last token.
    """
    dims, inp = prepare_family_inputs(q, k, v, theta, eta, alpha, state, gamma, delta, context, rule, chunk_size,
                                      read, activation, residual, check_inputs)
    max_surprise = check_max_surprise(max_surprise)
    if dims.length == 0:
        return q.new_empty(dims.batch, 0, dims.heads, dims.dim_v), state
    if torch.is_inference_mode_enabled():
        # Autograd computes the inner gradient, which inference tensors refuse: run on ordinary copies.
        with torch.inference_mode(False), torch.no_grad():
            clone = (lambda t: None if t is None else t.clone())
            ctx = None if context is None else WindowContext(*(clone(t) for t in (context.k, context.v,
                                                                                  context.gamma, context.delta)))
            state = MemoryState(tuple(w.clone() for w in state.weights), tuple(s.clone() for s in state.momentum))
            return neural_memory_family_naive(
                *(t.clone() for t in (q, k, v, theta, eta, alpha)), state, chunk_size, read, activation, residual,
                False, max_surprise, rule=rule, gamma=clone(gamma), delta=clone(delta), context=ctx,
            )

    track = torch.is_grad_enabled()
    accs, moments = list(state.weights), list(state.momentum)
    start = inp.context_length
    ys = []
    with torch.enable_grad(), state_precision(inp.q.device):
        for t in range(dims.length):
            if t % chunk_size == 0:
                at_start = [effective_weights(a, rule) for a in accs]
                at_start = [w if (track and w.requires_grad) else w.detach().requires_grad_(True)
                            for w in at_start]
            first = max(0, start + t - rule.window + 1)
            window = slice(first, start + t + 1)
            k_w, v_w, gamma_w = inp.k[:, :, window], inp.v[:, :, window], inp.gamma[:, :, window]
            delta_w = None if inp.delta is None else inp.delta[:, :, window]
            out = mlp_forward(at_start, k_w, activation, residual)
            # Summing over batch and heads is harmless: each slice of W only sees its own tokens.
            psi = gamma_w.unsqueeze(-1) * output_gradient(out - v_w, rule, delta_w)
            grads = torch.autograd.grad(out, at_start, grad_outputs=psi, create_graph=track)
            with torch.set_grad_enabled(track):
                eta_t, theta_t, alpha_t = (g[:, :, t, None, None] for g in (inp.eta, inp.theta, inp.alpha))
                scale = theta_t if rule.optimizer == "momentum" else torch.ones_like(theta_t)
                if max_surprise is not None:  # clip g_t to norm tau
                    squared = sum(g.square().sum((-2, -1)) for g in grads)
                    scale = scale * surprise_scale(squared, max_surprise)[..., None, None]
                moments = [eta_t * s - scale * g for s, g in zip(moments, grads)]
                if rule.optimizer == "momentum":
                    steps = moments
                else:
                    steps = [theta_t * newton_schulz(s, rule.ns_steps) for s in moments]
                accs = [(1.0 - alpha_t) * a + s for a, s in zip(accs, steps)]
                if read == "token":
                    read_weights = [effective_weights(a, rule) for a in accs]
                else:
                    read_weights = at_start
                ys.append(mlp_forward(read_weights, inp.q[:, :, t : t + 1], activation, residual))

    y = torch.cat(ys, dim=2).transpose(1, 2).to(q.dtype)
    new_state = MemoryState(tuple(accs), tuple(moments))
    if not track:
        y, new_state = y.detach(), new_state.detach()
    return y, new_state
