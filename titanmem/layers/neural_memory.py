"""The NeuralMemory token mixer (Titans §4.4): projections, gates and the neural-memory op.

Axes: ``b`` batch, ``t`` time, ``h`` heads, ``d`` head dim, ``c`` model width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..checks import check_int, check_real
from ..modules.conv import CausalDepthwiseConv1d
from ..modules.norm import RMSNorm
from ..ops import TITANS, MemoryRule, MemoryState, WindowContext, neural_memory_chunk, neural_memory_family_chunk
from ..ops.neural_memory.family_math import effective_weights
from ..ops.neural_memory.features import apply_feature_map, feature_dim
from ..ops.neural_memory.mlp import ACTIVATIONS, mlp_forward
from ..ops.neural_memory.state import state_precision
from ..ops.neural_memory.surprise import check_max_surprise

__all__ = ["MemoryDivergedError", "NeuralMemory", "NeuralMemoryState"]


class MemoryDivergedError(FloatingPointError):
    """The memory's weights or reads became non-finite: raised instead of returning NaN."""


@dataclass(frozen=True)
class NeuralMemoryState:
    """Per-sequence state of one NeuralMemory layer.

    Attributes:
        memory: memory weights and momentum at the last chunk boundary, ``[B, H, d_in, d_out]`` each.
        pending: ``(q, k, v, theta, eta, alpha)`` of the tokens after that boundary (fewer than a
            chunk): ``[B, r, H, D]`` and ``[B, r, H]``, followed by the window gates ``gamma`` (a rule
            with a window > 1) and the Huber thresholds ``delta`` (objective ``"huber"``). They are
            replayed with the next piece, so a chunk always starts at the same token however the
            sequence was split (eq. 16's chunks).
        conv_tail: the last ``kernel - 1`` projected inputs of the causal convolution, ``[B, K-1, 3HD]``.
        offset: number of tokens seen.
        window_tail: for a rule with an Omega window ``c > 1``: ``(k, v, gamma[, delta])`` of the last
            ``c - 1`` tokens before the boundary (they enter the next chunk's windows); else empty.
    """

    memory: MemoryState
    pending: tuple[torch.Tensor, ...]
    conv_tail: torch.Tensor | None
    offset: int
    window_tail: tuple[torch.Tensor, ...] = ()

    def detach(self) -> NeuralMemoryState:
        """The same state cut from the autograd graph (truncated backprop through time)."""
        tail = None if self.conv_tail is None else self.conv_tail.detach()
        return NeuralMemoryState(self.memory.detach(), tuple(t.detach() for t in self.pending), tail, self.offset,
                                 tuple(t.detach() for t in self.window_tail))


class NeuralMemory(nn.Module):
    """Titans' long-term memory as a layer: ``forward(x, state) -> (y, state)``.

    q, k, v = SiLU(causal depthwise conv(linear(x))), q and k l2-normalised per head (paper §4.4);
    per-token, per-head gates theta = max_lr * sigmoid(.), eta = sigmoid(.), alpha = max_alpha * sigmoid(.)
    from linear maps of x (§3.1: "functions of tokens"); a learned initial memory per head; output
    ``W_o(RMSNorm(y) * sigmoid(W_g x))`` (normalisation and gating before the output projection).

    Args:
        hidden_size: model width C.
        num_heads: memory heads H.
        head_dim: per-head width D (default C / H).
        memory_depth: layers L of the memory MLP (1 = linear memory).
        memory_expansion: hidden width of the memory MLP is ``memory_expansion * D``.
        chunk_size: tokens per chunk of the op (a model hyperparameter: train and infer with the same).
        activation: activation inside the memory MLP.
        max_lr: upper bound of the inner learning rate theta.
        max_alpha: upper bound of the forgetting gate alpha, in (0, 1]. A stored association shrinks by
            ``(1 - alpha)`` per token, so over T tokens it keeps at least ``(1 - max_alpha)^T`` of
            itself: with 1e-4 that is e^-0.4 after 4,096 tokens, where alpha near 1 could erase it in
            one token. 1 is the paper's unbounded sigmoid.
        forget_bias_init: initial bias of the forgetting gate's logit: alpha starts at
            ``max_alpha * sigmoid(forget_bias_init)`` (default -5: 0.0067 with max_alpha 1).
        momentum_bias_init: initial bias of the momentum gate's logit: eta starts at
            ``sigmoid(momentum_bias_init)`` (default 0: 0.5; see the comment in ``__init__``).
        conv_kernel: kernel of the causal depthwise convolution.
        read: ``"token"`` (read after each token's update) or ``"chunk"``.
        compiled: run the op's full chunks through ``torch.compile`` (see ``neural_memory_chunk``):
            an execution choice, not a hyperparameter; the first call of each shape compiles.
        recompute_chunks: chunks per recomputed group when autograd records (see
            ``neural_memory_chunk``; 0 keeps every intermediate).
        max_surprise: bound on each token's surprise norm (``neural_memory_naive``); None: unbounded.
        check_finite: after each call, check that the memory state is finite and raise
            :class:`MemoryDivergedError` naming the layer and the first non-finite position if not
            (one device sync per call; turn it off where that costs).
        name: how errors name this layer (the model sets its module path).
        rule: the memory rule (:class:`~titanmem.ops.MemoryRule`: MIRAS objective and retention,
            ATLAS window, Muon step, feature map); None is Titans. A rule with a window gets a
            per-token, per-head window gate ``gamma = sigmoid(.)`` (bias 3 at init: 0.95); the Huber
            objective a threshold ``delta = max_delta * sigmoid(.)`` (bias 0 at init). A rule other
            than Titans runs :func:`~titanmem.ops.neural_memory_family_chunk` (no ``compiled``).
        max_delta: upper bound of the Huber threshold delta, > 0 (objective ``"huber"`` only).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int | None = None,
        memory_depth: int = 2,
        memory_expansion: int = 4,
        chunk_size: int = 64,
        activation: str = "gelu",
        max_lr: float = 0.01,
        conv_kernel: int = 4,
        read: str = "token",
        compiled: bool = False,
        recompute_chunks: int = 8,
        max_surprise: float | None = None,
        check_finite: bool = True,
        name: str = "NeuralMemory",
        max_alpha: float = 1.0,
        forget_bias_init: float = -5.0,
        momentum_bias_init: float = 0.0,
        rule: MemoryRule | None = None,
        max_delta: float = 1.0,
    ) -> None:
        super().__init__()
        rule = TITANS if rule is None else rule
        if not isinstance(rule, MemoryRule):
            raise TypeError(f"rule must be a MemoryRule or None, got {type(rule).__name__}")
        if compiled and not rule.is_titans:
            raise ValueError("compiled=True runs the Titans op only; the rule given is not Titans' "
                             f"({rule}); use compiled=False")
        self.rule = rule
        self.max_delta = check_real("max_delta", max_delta, 0.0, low_open=True)
        for arg, value in (("hidden_size", hidden_size), ("num_heads", num_heads), ("memory_depth", memory_depth),
                           ("memory_expansion", memory_expansion), ("chunk_size", chunk_size),
                           ("conv_kernel", conv_kernel)):
            check_int(arg, value, 1)
        check_int("recompute_chunks", recompute_chunks, 0)
        if head_dim is None:
            if hidden_size % num_heads:
                raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
            head_dim = hidden_size // num_heads
        check_int("head_dim", head_dim, 1)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        if read not in ("token", "chunk"):
            raise ValueError(f"read must be 'token' or 'chunk', got {read!r}")
        if not max_lr > 0:
            raise ValueError(f"max_lr must be > 0, got {max_lr}")
        self.max_alpha = check_real("max_alpha", max_alpha, 0.0, 1.0, low_open=True)
        forget_bias_init = check_real("forget_bias_init", forget_bias_init)
        momentum_bias_init = check_real("momentum_bias_init", momentum_bias_init)
        if not isinstance(compiled, bool):
            raise TypeError(f"compiled must be a bool, got {type(compiled).__name__}")
        self.num_heads, self.head_dim, self.chunk_size = num_heads, head_dim, chunk_size
        self.activation, self.max_lr, self.read, self.compiled = activation, max_lr, read, compiled
        self.recompute_chunks = recompute_chunks
        self.max_surprise = check_max_surprise(max_surprise)
        if not isinstance(check_finite, bool):
            raise TypeError(f"check_finite must be a bool, got {type(check_finite).__name__}")
        self.check_finite, self.name = check_finite, name
        inner = num_heads * head_dim
        self.qkv_proj = nn.Linear(hidden_size, 3 * inner, bias=False)
        self.conv = CausalDepthwiseConv1d(3 * inner, conv_kernel)
        self.gate_proj = nn.Linear(hidden_size, 3 * num_heads)  # theta, eta, alpha per head
        # The extra gates of the rule, after theta, eta and alpha: the window's gamma, the Huber delta.
        self.extra_gates = (("gamma",) if rule.window > 1 else ()) + (("delta",) if rule.objective == "huber" else ())
        self.extra_gate_proj = nn.Linear(hidden_size, len(self.extra_gates) * num_heads) if self.extra_gates else None
        first = feature_dim(head_dim, rule.feature_map, rule.feature_degree)
        dims = [first] + [memory_expansion * head_dim] * (memory_depth - 1) + [head_dim]
        self.memory_init = nn.ParameterList(
            nn.Parameter(torch.randn(num_heads, a, b) / a**0.5) for a, b in zip(dims[:-1], dims[1:])
        )
        self.out_norm = RMSNorm(head_dim)
        self.out_gate = nn.Linear(hidden_size, inner, bias=False)
        self.o_proj = nn.Linear(inner, hidden_size, bias=False)
        with torch.no_grad():
            # Start with a mild learning rate (theta = 0.12 max_lr), moderate momentum (eta = 0.5 with
            # momentum_bias_init 0) and almost no forgetting (alpha = 0.007 * max_alpha with
            # forget_bias_init -5). Inside a chunk every token's gradient is taken at the chunk-start
            # weights, so one chunk moves the memory by about chunk_size * theta / (1 - eta) times an
            # average gradient. In an early version of the block eta = 0.88 (bias 2) diverged within 16
            # steps of training a tiny MAC on Shakespeare; today's demo MAC trains with it to within
            # 0.002 bits/byte of eta = 0.5 (docs/results.md, "Gate initialisation"). 0 stays because
            # no other start measured better beyond the noise, not because it is the only stable one.
            bias = self.gate_proj.bias.view(3, num_heads)
            bias[0].fill_(-2.0)
            bias[1].fill_(float(momentum_bias_init))
            bias[2].fill_(float(forget_bias_init))
            if self.extra_gate_proj is not None:
                # gamma starts near 1 (the window's losses summed almost unweighted), delta at max_delta / 2.
                extra = self.extra_gate_proj.bias.view(len(self.extra_gates), num_heads)
                for i, gate in enumerate(self.extra_gates):
                    extra[i].fill_(3.0 if gate == "gamma" else 0.0)

    def initial_state(self, batch_size: int) -> NeuralMemoryState:
        """State before the first token: the learned initial memory, zero momentum, nothing pending."""
        # The memory state is float32 whatever the compute dtype; a float64 model (numerical checks)
        # keeps float64.
        param = self.memory_init[0]
        dtype = torch.float64 if param.dtype == torch.float64 else torch.float32
        memory = MemoryState.initial(list(self.memory_init), batch_size, dtype=dtype)
        device = param.device
        empty = torch.zeros(batch_size, 0, self.num_heads, self.head_dim, device=device)
        gates = torch.zeros(batch_size, 0, self.num_heads, device=device)
        pending = (empty, empty, empty, gates, gates, gates) + (gates,) * len(self.extra_gates)
        window_tail = (empty, empty) + (gates,) * len(self.extra_gates) if self.rule.window > 1 else ()
        return NeuralMemoryState(memory, pending, None, 0, window_tail)

    def _inputs(self, x: torch.Tensor, tail: torch.Tensor | None):
        proj, tail = self.conv(self.qkv_proj(x), tail)
        q, k, v = rearrange(F.silu(proj), "b t (three h d) -> three b t h d", three=3, h=self.num_heads)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        theta, eta, alpha = rearrange(torch.sigmoid(self.gate_proj(x)), "b t (three h) -> three b t h", three=3)
        inputs = (q, k, v, self.max_lr * theta, eta, self.max_alpha * alpha)
        if self.extra_gate_proj is not None:
            extra = rearrange(torch.sigmoid(self.extra_gate_proj(x)), "b t (n h) -> n b t h", n=len(self.extra_gates))
            inputs += tuple(g * self.max_delta if name == "delta" else g for name, g in zip(self.extra_gates, extra))
        return inputs, tail

    def _raise_if_diverged(self, y: torch.Tensor, memory: MemoryState, offset: int) -> None:
        # One host sync for the common, finite case (every check reduced on the device first); the
        # search for the position only on failure.
        finite = torch.stack([torch.isfinite(t).all() for t in (y, *memory.weights)])
        if bool(finite.all()):
            return
        bad = (~torch.isfinite(y)).flatten(2).any(-1).any(0).nonzero()  # token positions within this call
        where = (f"first non-finite read at position {offset + int(bad[0])}" if bad.numel()
                 else f"the state after position {offset + y.shape[1] - 1}")
        raise MemoryDivergedError(
            f"{self.name}: the memory diverged ({where}): the inner update grew without bound. Set "
            "max_surprise (TitansConfig.max_surprise) to bound each token's update, or lower max_lr; "
            "check_finite=False (TitansConfig.check_memory_finite=False) turns this check off"
        )

    def retrieve(self, queries: torch.Tensor, state: NeuralMemoryState) -> torch.Tensor:
        """Read the memory without writing it: ``M(q)`` at the state's last chunk boundary (eq. 15).

        With a rule, the read is ``M_W(phi(q))`` with ``W = N(A)`` the retention's weights.

        MAC's retrieval (eq. 21) reads this way, with its own query projection. ``queries``:
        ``[B, n, H, D]``; returns ``[B, n, H, D]`` in their dtype. The read runs in the state's dtype
        (float32) whatever autocast says, as the op's reads do.

        Raises:
            ValueError: ``queries`` not of shape ``[B, n, H, D]`` with this layer's ``H`` and ``D`` and
                the state's batch size.
        """
        weights = state.memory.weights
        want = (weights[0].shape[0], self.num_heads, self.head_dim)
        if queries.dim() != 4 or (queries.shape[0], queries.shape[2], queries.shape[3]) != want:
            raise ValueError(f"queries must have shape [B={want[0]}, n, H={want[1]}, D={want[2]}], "
                             f"got {tuple(queries.shape)}")
        with state_precision(queries.device):
            weights = [effective_weights(a, self.rule) for a in weights]
            x = apply_feature_map(queries.transpose(1, 2).to(weights[0].dtype), self.rule.feature_map,
                                  self.rule.feature_degree)
            read = mlp_forward(weights, x, self.activation, residual=False)
        return read.transpose(1, 2).to(queries.dtype)

    def forward(
        self, x: torch.Tensor, state: NeuralMemoryState | None = None
    ) -> tuple[torch.Tensor, NeuralMemoryState]:
        """``x [B, T, C] -> y [B, T, C]``; any split of a sequence into pieces gives the same outputs."""
        if x.dim() != 3:
            raise ValueError(f"x must have shape [B, T, C], got {tuple(x.shape)}")
        batch, length = x.shape[:2]
        if state is None:
            state = self.initial_state(batch)
        if state.memory.weights[0].shape[0] != batch:
            raise ValueError(f"state is for batch size {state.memory.weights[0].shape[0]}, x has {batch}")
        if length == 0:
            return x.new_zeros(batch, 0, x.shape[-1]), state
        new, tail = self._inputs(x, state.conv_tail)
        # Replay the unfinished chunk before the new tokens, so chunks start where they would in one call.
        seq = [torch.cat((p.to(n.dtype), n), dim=1) for p, n in zip(state.pending, new)]
        replay = state.pending[0].shape[1]
        full = (replay + length) // self.chunk_size * self.chunk_size
        # Gates come from sigmoids, so their ranges hold by construction; shapes are still checked.
        kw = dict(chunk_size=self.chunk_size, read=self.read, activation=self.activation, check_inputs=False,
                  recompute_chunks=self.recompute_chunks, max_surprise=self.max_surprise)
        memory, ys = state.memory, []
        window_tail = state.window_tail
        if full:
            y_full, memory = self._op(seq, slice(0, full), memory, window_tail, kw)
            ys.append(y_full)
            window_tail = self._next_window_tail(window_tail, seq, full)
        if full < replay + length:
            y_rest, _ = self._op(seq, slice(full, None), memory, window_tail, kw)
            ys.append(y_rest)
        y = torch.cat(ys, dim=1)[:, replay:]
        if self.check_finite:
            self._raise_if_diverged(y, memory, state.offset)
        gate = torch.sigmoid(self.out_gate(x))
        out = self.o_proj(rearrange(self.out_norm(y.to(x.dtype)), "b t h d -> b t (h d)") * gate)
        # Copies, not views: a view would keep the whole piece's projections alive with the state.
        pending = tuple(t[:, full:].clone() for t in seq)
        return out, NeuralMemoryState(memory, pending, tail, state.offset + length, window_tail)

    def _op(self, seq, part: slice, memory: MemoryState, window_tail: tuple[torch.Tensor, ...], kw: dict):
        """The op on the tokens ``part`` of ``seq`` (which starts at a chunk boundary)."""
        q, k, v, theta, eta, alpha, *extra = (t[:, part] for t in seq)
        if self.rule.is_titans:
            return neural_memory_chunk(q, k, v, theta, eta, alpha, memory, compiled=self.compiled, **kw)
        named = dict(zip(self.extra_gates, extra))
        context = WindowContext(*window_tail) if window_tail and window_tail[0].shape[1] else None
        return neural_memory_family_chunk(q, k, v, theta, eta, alpha, memory, rule=self.rule, gamma=named.get("gamma"),
                                          delta=named.get("delta"), context=context, **kw)

    def _next_window_tail(self, window_tail: tuple[torch.Tensor, ...], seq, full: int) -> tuple[torch.Tensor, ...]:
        """``(k, v, gamma[, delta])`` of the last ``c - 1`` tokens before position ``full`` of ``seq``."""
        if self.rule.window == 1:
            return ()
        k, v = seq[1], seq[2]
        extra = seq[6:]  # gamma first, then delta if the objective is Huber
        # Copies, not views, as for the pending tokens.
        return tuple(torch.cat((old.to(new.dtype), new[:, :full]), dim=1)[:, -(self.rule.window - 1):].clone()
                     for old, new in zip(window_tail, (k, v, *extra)))
