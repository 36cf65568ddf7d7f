"""Multi-head softmax attention: causal, optionally sliding-window, with persistent memory tokens.

Persistent tokens are Titans' persistent memory (arXiv 2501.00663 eq. 19, and the ``[p || x]`` of
eqs. 26-27): learnable, input-independent rows prepended to the sequence before the k/v projections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int, check_tensor
from ..modules.rotary import apply_rotary
from .masked_attention import ATTENTION_IMPLS, causal_window_mask, masked_attention

__all__ = ["Attention", "AttentionState"]


# Smallest block of queries in windowed attention (tiny windows would otherwise mean tiny matmuls).
_MIN_QUERY_BLOCK = 128


@dataclass(frozen=True)
class AttentionState:
    """What the next token of a sequence needs from the tokens already seen.

    Attributes:
        k: ``[B, L, H, D]`` rotated keys of the last L tokens (positions ``offset-L .. offset-1``).
        v: ``[B, L, H, D]`` their values.
        offset: number of tokens seen so far (the absolute position of the next token).

    ``L <= window - 1`` for a sliding window (the cache never grows past it); every token seen when
    the window is None. Persistent tokens are recomputed from the parameters, never cached.
    """

    k: torch.Tensor
    v: torch.Tensor
    offset: int

    def detach(self) -> AttentionState:
        """The same values cut from the autograd graph (truncated backprop through time)."""
        return AttentionState(self.k.detach(), self.v.detach(), self.offset)


class Attention(nn.Module):
    """Causal multi-head attention with RoPE, an optional sliding window and persistent tokens.

    Args:
        hidden_size: model width C.
        num_heads: number of heads H.
        head_dim: per-head width D (even, for RoPE); default ``hidden_size // num_heads``.
        window: a token at position p attends positions ``max(0, p-w+1) .. p``; None = all before p.
        n_persistent: number of learnable persistent tokens (init N(0, 0.02^2)); they go through the
            k/v projections without rotary and every query sees them, whatever the window.
        rope_theta: RoPE base.
        impl: ``"sdpa"`` or ``"eager"`` (the written-out reference); same numbers.

    ``forward(x [B, T, C], state | None) -> (y [B, T, C], AttentionState)``; token t of ``x`` is at
    absolute position ``state.offset + t``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int | None = None,
        window: int | None = None,
        n_persistent: int = 0,
        rope_theta: float = 10000.0,
        impl: str = "sdpa",
    ) -> None:
        super().__init__()
        check_int("hidden_size", hidden_size, 1)
        check_int("num_heads", num_heads, 1)
        if head_dim is None:
            if hidden_size % num_heads:
                raise ValueError(
                    f"hidden_size must be divisible by num_heads when head_dim is None, "
                    f"got hidden_size={hidden_size}, num_heads={num_heads}"
                )
            head_dim = hidden_size // num_heads
        check_int("head_dim", head_dim, 2)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even (RoPE rotates channel pairs), got {head_dim}")
        if window is not None:
            check_int("window", window, 1)
        check_int("n_persistent", n_persistent, 0)
        if isinstance(rope_theta, bool) or not isinstance(rope_theta, (int, float)) or not rope_theta > 0:
            raise ValueError(f"rope_theta must be a number > 0, got {rope_theta!r}")
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.window = window
        self.n_persistent = n_persistent
        self.rope_theta = float(rope_theta)
        self.impl = impl
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(hidden_size, inner, bias=False)
        self.k_proj = nn.Linear(hidden_size, inner, bias=False)
        self.v_proj = nn.Linear(hidden_size, inner, bias=False)
        self.o_proj = nn.Linear(inner, hidden_size, bias=False)
        if n_persistent:
            self.persistent = nn.Parameter(torch.randn(n_persistent, hidden_size) * 0.02)
        else:
            self.register_parameter("persistent", None)

    @property
    def cache_size(self) -> int | None:
        """Most tokens a state keeps: ``window - 1`` (None = unbounded, full attention)."""
        return None if self.window is None else self.window - 1

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> AttentionState:
        """Empty cache (``L = 0``) at offset 0: the state before the first token."""
        check_int("batch_size", batch_size, 1)
        dtype = self.q_proj.weight.dtype if dtype is None else dtype
        device = self.q_proj.weight.device if device is None else device
        empty = torch.zeros(batch_size, 0, self.num_heads, self.head_dim, device=device, dtype=dtype)
        return AttentionState(empty, empty, 0)

    def _check_state(self, state: object, x: torch.Tensor) -> AttentionState:
        if not isinstance(state, AttentionState):
            raise TypeError(f"state must be an AttentionState or None, got {type(state).__name__}")
        B = x.shape[0]
        L = state.k.shape[1] if state.k.dim() == 4 else -1
        want = (B, L, self.num_heads, self.head_dim)
        if state.k.dim() != 4 or tuple(state.k.shape) != want or tuple(state.v.shape) != want:
            raise ValueError(
                f"state.k and state.v must have shape [B={B}, L, H={self.num_heads}, D={self.head_dim}], "
                f"got {tuple(state.k.shape)} and {tuple(state.v.shape)}"
            )
        check_int("state.offset", state.offset, L)
        if self.cache_size is not None and L > self.cache_size:
            raise ValueError(f"state holds {L} tokens, more than window - 1 = {self.cache_size}")
        return state

    def _persistent_kv(self, batch_size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``[B, P, H, D]`` of the persistent tokens: no rotary, so no position."""
        shape = (1, self.n_persistent, self.num_heads, self.head_dim)
        p = self.persistent.to(dtype)
        k = self.k_proj(p).view(shape).expand(batch_size, *shape[1:])
        v = self.v_proj(p).view(shape).expand(batch_size, *shape[1:])
        return k, v

    def forward(
        self, x: torch.Tensor, state: AttentionState | None = None
    ) -> tuple[torch.Tensor, AttentionState]:
        """Attend ``x [B, T, C]`` after ``state``; returns ``(y [B, T, C], state after x)``."""
        check_tensor("x", x, 3, self.hidden_size)
        B, T, _ = x.shape
        state = self.initial_state(B, x.device, x.dtype) if state is None else self._check_state(state, x)
        if T == 0:
            return x.new_zeros(B, 0, self.hidden_size), state
        H, D, offset = self.num_heads, self.head_dim, state.offset
        q = apply_rotary(self.q_proj(x).view(B, T, H, D), offset, self.rope_theta)
        k = apply_rotary(self.k_proj(x).view(B, T, H, D), offset, self.rope_theta)
        v = self.v_proj(x).view(B, T, H, D)
        keys = torch.cat([state.k.to(k.dtype), k], dim=1)  # positions offset-L .. offset+T-1
        values = torch.cat([state.v.to(v.dtype), v], dim=1)
        if self.impl == "sdpa" and state.k.shape[1] == 0 and not self.n_persistent and (
            self.window is None or self.window >= T
        ):
            # The mask is exactly causal (no cache, no persistent tokens, window not binding): the
            # fused causal kernel needs no T x T mask, so long prefills stay linear in memory.
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2), is_causal=True
            ).transpose(1, 2)
        else:
            persistent = self._persistent_kv(B, k.dtype) if self.n_persistent else None
            out = self._attend_in_blocks(q, keys, values, offset, persistent)
        y = self.o_proj(out.reshape(B, T, H * D))
        keep = keys.shape[1] if self.cache_size is None else min(self.cache_size, keys.shape[1])
        start = keys.shape[1] - keep
        if start == 0:
            return y, AttentionState(keys, values, offset + T)
        # Copy rather than view: a slice would keep the storage of the whole piece alive, and the
        # cache after a long prefill must cost window - 1 tokens of memory, not T.
        return y, AttentionState(keys[:, start:].clone(), values[:, start:].clone(), offset + T)

    def _attend_in_blocks(
        self,
        q: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        offset: int,
        persistent: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """Queries ``q [B, T, H, D]`` at ``offset..offset+T-1`` over cached + new ``keys``/``values``.

        With a window, a block of queries only needs the keys from ``window - 1`` before its first
        query to its last one, so each block attends to that range alone: O(T * window) time and
        memory instead of O(T^2); every query still sees exactly the keys its mask allows.
        """
        T, first_key = q.shape[1], offset - (keys.shape[1] - q.shape[1])
        block = T if self.window is None else max(self.window, _MIN_QUERY_BLOCK)
        outs = []
        for start in range(0, T, block):
            stop = min(start + block, T)
            lo = 0 if self.window is None else max(0, offset + start - self.window + 1 - first_key)
            hi = offset + stop - first_key
            q_pos = torch.arange(offset + start, offset + stop, device=q.device)
            k_pos = torch.arange(first_key + lo, first_key + hi, device=q.device)
            mask = causal_window_mask(q_pos, k_pos, self.window)
            k_blk, v_blk = keys[:, lo:hi], values[:, lo:hi]
            if persistent is not None:
                k_blk, v_blk = torch.cat([persistent[0], k_blk], dim=1), torch.cat([persistent[1], v_blk], dim=1)
                mask = torch.cat([mask.new_ones(stop - start, persistent[0].shape[1]), mask], dim=1)
            outs.append(masked_attention(q[:, start:stop], k_blk, v_blk, mask, self.impl))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"window={self.window}, n_persistent={self.n_persistent}, impl={self.impl!r}"
        )
