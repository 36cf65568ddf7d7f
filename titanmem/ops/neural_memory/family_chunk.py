"""The Titans / MIRAS / ATLAS family chunk-parallel: the token loop's numbers from batched matmuls.

Every gradient of a chunk is taken at the chunk-start weights ``W_0 = N(A_0)``, so inside a chunk the
surprises ``u_m`` of the tokens are fixed and everything that follows them is linear in them, or a
per-token function of a linear combination of them (docs/miras_atlas.md derives each step):

- objective: only the output gradient ``delta_L = psi(e)`` changes; the MLP's backward is as in Titans.
- window ``c``: the chunk also computes the surprises of the ``c - 1`` tokens before it (a halo, at
  ``W_0``); ``g_t = sum_m B[t, m] gamma_m u_m`` with a banded ``B``, so the Titans coefficient
  matrix ``Gamma diag(theta)`` becomes ``Gamma diag(theta) B diag(gamma)``, ``n x (n + c - 1)``.
- decay retention + momentum: the Titans dual form with that coefficient matrix (exact, nothing per
  token materialised).
- ``lq``/``kl`` retention, or Muon: the momenta ``S_t`` (linear in the surprises) are formed per token,
  ``[n, d_in, d_out]`` per layer; Muon orthogonalises each (batched); the accumulators are
  ``A_t = beta_t A_0 + sum_j K[t, j] step_j`` (one matmul) and the reads apply ``N(A_t)`` per token.
  Exact as well, at the cost of ``n`` weight-sized tensors per layer. With read "chunk" and the
  momentum optimizer the dual path carries the state and nothing is materialised.
- Muon with the decay retention, on a layer whose input side is at least 8 times its output side
  (Atlas's feature layer): Newton-Schulz in the Gram space of the output side, nothing weight-sized
  formed per token (family_muon.py).

Nothing here is approximated beyond the papers' own parallel training (gradients at the chunk start):
the chunk op equals the token loop of ``family_naive.py`` to float rounding, which the tests check.
Not supported here, unlike the Titans chunk op: ``compiled`` (the family runs eagerly), and the
recomputation is ``torch.utils.checkpoint`` rather than the Titans op's hand-written one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from .coefficients import _safe_log, segment_log_sums
from .family_inputs import WindowContext, prepare_family_inputs
from .family_math import effective_weights, newton_schulz, output_gradient
from .family_muon import gram_form_applies, muon_gram_layer
from .mlp import activation_backward, activation_fn, mlp_forward
from .rule import TITANS, MemoryRule
from .state import MemoryState, state_precision
from .surprise import check_max_surprise, surprise_scale

__all__ = ["neural_memory_family_chunk"]

NO_GRAD_GROUP_CHUNKS = 16


@dataclass(frozen=True)
class _Coefficients:
    """The Titans coefficients of coefficients.py, with the full ``P`` and ``K`` kept: ``[..., n(, n)]``."""

    p: torch.Tensor  # P[i, m] = prod_{l=m+1..i} eta_l
    keep: torch.Tensor  # K[i, j] = prod_{l=j+1..i} (1 - alpha_l)
    gamma: torch.Tensor  # Gamma = K P
    eta_cum: torch.Tensor  # E_i
    beta: torch.Tensor  # beta_i
    c: torch.Tensor  # c = K E

    def select(self, i: int) -> _Coefficients:
        return _Coefficients(*(getattr(self, f).select(2, i) for f in self.__dataclass_fields__))


def _coefficients(eta: torch.Tensor, alpha: torch.Tensor) -> _Coefficients:
    # The same operations as coefficients.chunk_coefficients, so the Titans rule gives its numbers.
    log_eta = _safe_log(eta)
    log_keep = _safe_log(1.0 - alpha)
    p = segment_log_sums(log_eta).exp()
    keep = segment_log_sums(log_keep).exp()
    eta_cum = log_eta.cumsum(-1).exp()
    return _Coefficients(
        p=p, keep=keep, gamma=keep @ p, eta_cum=eta_cum, beta=log_keep.cumsum(-1).exp(),
        c=(keep @ eta_cum.unsqueeze(-1)).squeeze(-1),
    )


def _group_coefficients(eta: torch.Tensor, alpha: torch.Tensor, chunk_size: int):
    length = eta.shape[-1]
    full = length - length % chunk_size
    if full:
        batched = _coefficients(eta[..., :full].unflatten(-1, (-1, chunk_size)),
                                alpha[..., :full].unflatten(-1, (-1, chunk_size)))
        for i in range(full // chunk_size):
            yield batched.select(i)
    if full < length:
        yield _coefficients(eta[..., full:], alpha[..., full:])


def _surprise_squared_norms(inputs, deltas, gamma, weights_tm) -> torch.Tensor:
    """``||g_t||^2`` over every layer, ``g_t = sum_m weights_tm[t, m] h_m^T delta_m``: ``[B, H, n]``.

    Window 1 (``weights_tm`` None): ``g_t = gamma_t h_t^T delta_t``, whose norm is
    ``gamma_t ||h_t|| ||delta_t||`` (as the Titans op computes it).
    """
    if weights_tm is None:
        return gamma.square() * sum(h.square().sum(-1) * d.square().sum(-1) for h, d in zip(inputs, deltas))
    gram = sum((h @ h.mT) * (d @ d.mT) for h, d in zip(inputs, deltas))  # <u_m, u_m'> summed over layers
    return ((weights_tm @ gram) * weights_tm).sum(-1)


def _chunk_step(accs, moments, q, k, v, gamma, delta, theta, co: _Coefficients, rule: MemoryRule, read: str,
                activation: str, residual: bool, max_surprise: float | None):
    """One chunk of n tokens: q ``[B, H, n, Dk]``, theta ``[B, H, n]``; k, v, gamma, delta over the
    chunk's window tokens ``m = n + c - 1`` (the ``c - 1`` before the chunk first).

    Returns the reads ``[B, H, n, Dv]``, the accumulators and the momenta after the chunk's last token.
    """
    act, act_backward = activation_fn(activation), activation_backward(activation)
    depth = len(accs)
    n, m = q.shape[2], k.shape[2]
    halo = m - n
    weights0 = tuple(effective_weights(a, rule) for a in accs)

    # Forward on the window's keys at W_0, keeping each layer's input; backward by hand from psi(e).
    inputs, pre = [], []
    h = k
    for i, w in enumerate(weights0):
        inputs.append(h)
        z = h @ w
        if i < depth - 1:
            pre.append(z)
            h = act(z)
    delta_l = output_gradient((z + k if residual else z) - v, rule, delta)
    deltas = [delta_l]
    for i in range(depth - 2, -1, -1):
        delta_l = act_backward(delta_l @ weights0[i + 1].mT, pre[i])
        deltas.append(delta_l)
    deltas.reverse()

    # weights_tm[t, m]: weight of token m's surprise in g_t (band t <= m <= t + c - 1, times gamma_m).
    if halo:
        band = torch.ones(n, m, dtype=q.dtype, device=q.device).triu(0).tril(halo)
        weights_tm = band * gamma.unsqueeze(-2)
    else:
        weights_tm = None
    # rate_t: the factor of g_t in the momentum (theta_t for momentum GD, 1 for Muon), clipped.
    rate = theta if rule.optimizer == "momentum" else torch.ones_like(theta)
    if max_surprise is not None:
        rate = rate * surprise_scale(_surprise_squared_norms(inputs, deltas, gamma, weights_tm), max_surprise)

    def token_weights(coef: torch.Tensor) -> torch.Tensor:
        """``coef diag(rate) B diag(gamma)``: the weight of each window token's surprise."""
        if weights_tm is None:
            return coef * (rate * gamma).unsqueeze(-2)
        return (coef * rate.unsqueeze(-2)) @ weights_tm

    if not _materialises(rule, read):
        return _dual_path(accs, moments, weights0, q, inputs, deltas, co, token_weights, read, activation,
                          residual)
    return _materialised_path(accs, moments, weights0, q, theta, inputs, deltas, co, token_weights, rule, read,
                              activation, residual)


def _materialises(rule: MemoryRule, read: str) -> bool:
    """Whether a chunk forms its per-token momenta / accumulators (Muon, or lq/kl read per token)."""
    return rule.optimizer == "muon" or (rule.retention != "decay" and read == "token")


def _dual_path(accs, moments, weights0, q, inputs, deltas, co, token_weights, read, activation, residual):
    """Decay retention (or chunk reads) with momentum GD: the Titans chunk step, windowed."""
    act = activation_fn(activation)
    depth = len(accs)
    gamma_tw = token_weights(co.gamma)  # [B, H, n, m]
    if read == "chunk":
        y = mlp_forward(weights0, q, activation, residual)
    else:
        # Dual form (README.md §5): x_i W_i = beta_i x_i W_0 + c_i x_i S_0 - sum_m Gamma'[i, m] (x_i . h_m) delta_m.
        neg = -gamma_tw
        beta, c = co.beta.unsqueeze(-1), co.c.unsqueeze(-1)
        x = q
        for i, (w, s) in enumerate(zip(weights0, moments)):
            left = torch.cat((beta * x, c * x, neg * (x @ inputs[i].mT)), dim=-1)
            z = left @ torch.cat((w, s, deltas[i]), dim=-2)
            x = act(z) if i < depth - 1 else z
        y = x + q if residual else x
    carry_w = gamma_tw[..., -1, :].unsqueeze(-1)
    carry_s = token_weights(co.p[..., -1:, :]).squeeze(-2).unsqueeze(-1)
    beta_end, c_end = co.beta[..., -1, None, None], co.c[..., -1, None, None]
    eta_end = co.eta_cum[..., -1, None, None]
    new_a, new_s = [], []
    for a, s, h_in, d in zip(accs, moments, inputs, deltas):
        h_t = h_in.mT
        new_a.append(beta_end * a + c_end * s - h_t @ (carry_w * d))
        new_s.append(eta_end * s - h_t @ (carry_s * d))
    return y, tuple(new_a), tuple(new_s)


def _materialised_path(accs, moments, weights0, q, theta, inputs, deltas, co, token_weights, rule, read, activation,
                       residual):
    """Per-token weights: Muon and non-linear retention (each layer in the Gram form where it applies)."""
    act = activation_fn(activation)
    coef_s = token_weights(co.p)  # [B, H, n, m]: weight of u_m in S_t (before E_t S_0)
    readers, ends_a, ends_s = [], [], []
    for a, s, h, d in zip(accs, moments, inputs, deltas):
        # The Gram form iterates in float64, which Apple's MPS backend lacks.
        if (rule.optimizer == "muon" and rule.retention == "decay" and gram_form_applies(*a.shape[-2:])
                and a.device.type != "mps"):
            layer = muon_gram_layer(a, s, h, d, coef_s, theta, co.eta_cum, co.keep, co.beta, rule.ns_steps)
        else:
            layer = _materialised_layer(a, s, h, d, coef_s, theta, co, rule)
        readers.append(layer[0])
        ends_a.append(layer[1])
        ends_s.append(layer[2])
    if read == "chunk":
        y = mlp_forward(weights0, q, activation, residual)
    else:
        x = q
        for i, layer_read in enumerate(readers):
            z = layer_read(x)
            x = act(z) if i < len(readers) - 1 else z
        y = x + q if residual else x
    return y, tuple(ends_a), tuple(ends_s)


def _materialised_layer(a, s, h, d, coef_s, theta, co, rule):
    """One layer's per-token momenta and accumulators ``[B, H, n, d_in, d_out]``, formed in full.

    Returns ``read(x)`` (token ``t``'s input times its weights ``N(A_t)``), ``A_n`` and ``S_n``.
    """
    # sum_m coef_s[t, m] h_m^T delta_m for every t, as one matmul [n d_in, m] @ [m, d_out] (a
    # broadcast over t on the right would copy delta n times).
    n, d_in = coef_s.shape[-2], h.shape[-1]
    left = (coef_s.unsqueeze(-2) * h.mT.unsqueeze(-3)).flatten(-3, -2)  # [B, H, n d_in, m]
    update = (left @ d).unflatten(-2, (n, d_in))
    s_all = co.eta_cum[..., None, None] * s.unsqueeze(2) - update
    if rule.optimizer == "momentum":
        step = s_all
    else:
        step = theta[..., None, None] * newton_schulz(s_all, rule.ns_steps)
    kept = (co.keep @ step.flatten(-2)).view_as(step)
    a_all = co.beta[..., None, None] * a.unsqueeze(2) + kept

    def read(x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(-2) @ effective_weights(a_all, rule)).squeeze(-2)

    return read, a_all[:, :, -1], s_all[:, :, -1]


def _family_group(accs, moments, q, k, v, gamma, delta, theta, eta, alpha, settings):
    """Consecutive chunks of a group; k, v, gamma, delta start ``c - 1`` tokens before q."""
    chunk_size, rule, read, activation, residual, max_surprise = settings
    halo = rule.window - 1
    length = q.shape[2]
    ys = []
    with state_precision(q.device):
        for index, co in enumerate(_group_coefficients(eta, alpha, chunk_size)):
            s = index * chunk_size
            e = min(s + chunk_size, length)
            window = slice(s, e + halo)
            y, accs, moments = _chunk_step(
                accs, moments, q[:, :, s:e], k[:, :, window], v[:, :, window], gamma[:, :, window],
                None if delta is None else delta[:, :, window], theta[:, :, s:e], co, rule, read, activation,
                residual, max_surprise,
            )
            ys.append(y)
    return torch.cat(ys, dim=2), accs, moments


def _run_group(depth: int, settings: tuple, *tensors):
    accs, moments = tensors[:depth], tensors[depth : 2 * depth]
    q, k, v, gamma, delta, theta, eta, alpha = tensors[2 * depth :]
    y, accs, moments = _family_group(accs, moments, q, k, v, gamma, delta, theta, eta, alpha, settings)
    return (y, *accs, *moments)


def neural_memory_family_chunk(
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
    max_surprise: float | None = None,
    *,
    rule: MemoryRule = TITANS,
    gamma: torch.Tensor | None = None,
    delta: torch.Tensor | None = None,
    context: WindowContext | None = None,
) -> tuple[torch.Tensor, MemoryState]:
    """One memory rule of the Titans family (MIRAS, ATLAS), computed chunk by chunk with matmuls.

    The same arguments and results as :func:`neural_memory_family_naive` (see it for the equations),
    with ``recompute_chunks`` as in :func:`titanmem.ops.neural_memory_chunk` (here through
    ``torch.utils.checkpoint``). The decay retention with momentum GD runs the Titans dual form
    (nothing per token is materialised); Muon and the ``lq``/``kl`` retentions with reads after each
    token hold ``chunk_size`` weight-sized tensors per layer while a chunk runs, and recompute one
    chunk at a time when ``recompute_chunks > 0`` (whatever its value) to bound that memory.

    Raises:
        TypeError, ValueError: as :func:`neural_memory_family_naive`, and for a bad ``recompute_chunks``.

    Returns:
        ``y`` ``[B, T, H, Dv]`` in q's dtype, and the state (accumulators, momentum) after the last token.
    """
    dims, inp = prepare_family_inputs(q, k, v, theta, eta, alpha, state, gamma, delta, context, rule, chunk_size,
                                      read, activation, residual, check_inputs)
    if isinstance(recompute_chunks, bool) or not isinstance(recompute_chunks, int):
        raise TypeError(f"recompute_chunks must be an int, got {type(recompute_chunks).__name__}")
    if recompute_chunks < 0:
        raise ValueError(f"recompute_chunks must be >= 0 (0 disables recomputation), got {recompute_chunks}")
    max_surprise = check_max_surprise(max_surprise)
    if dims.length == 0:
        return q.new_empty(dims.batch, 0, dims.heads, dims.dim_v), state

    # Every chunk sees exactly c - 1 tokens before it: the context, then zero tokens of gate 0 (which
    # add 0 to every surprise) where the sequence has fewer.
    halo = rule.window - 1
    pad = halo - inp.context_length
    k_ext, v_ext, gamma_ext, delta_ext = inp.k, inp.v, inp.gamma, inp.delta
    if pad:
        def padded(t):
            return None if t is None else torch.cat((t.new_zeros(*t.shape[:2], pad, *t.shape[3:]), t), dim=2)
        k_ext, v_ext, gamma_ext, delta_ext = (padded(t) for t in (k_ext, v_ext, gamma_ext, delta_ext))

    use_checkpoint = recompute_chunks > 0 and torch.is_grad_enabled()
    if use_checkpoint:
        # A materialising chunk's intermediates (chunk_size weight-sized tensors per layer) outweigh
        # the state kept between groups many times over: recompute chunk by chunk to bound them.
        group = chunk_size * (1 if _materialises(rule, read) else recompute_chunks)
    elif torch.is_grad_enabled():
        group = dims.length
    else:
        group = chunk_size * NO_GRAD_GROUP_CHUNKS
    settings = (chunk_size, rule, read, activation, residual, max_surprise)
    depth = len(state.weights)
    accs, moments = state.weights, state.momentum
    ys = []
    for s in range(0, dims.length, group):
        e = min(s + group, dims.length)
        window = slice(s, e + halo)
        tensors = (*accs, *moments, inp.q[:, :, s:e], k_ext[:, :, window], v_ext[:, :, window],
                   gamma_ext[:, :, window], None if delta_ext is None else delta_ext[:, :, window],
                   inp.theta[:, :, s:e], inp.eta[:, :, s:e], inp.alpha[:, :, s:e])
        if use_checkpoint:
            out = checkpoint(_run_group, depth, settings, *tensors, use_reentrant=False)
        else:
            out = _run_group(depth, settings, *tensors)
        ys.append(out[0])
        accs, moments = tuple(out[1 : 1 + depth]), tuple(out[1 + depth :])
    y = (ys[0] if len(ys) == 1 else torch.cat(ys, dim=2)).transpose(1, 2).to(q.dtype)
    return y, MemoryState(accs, moments)
