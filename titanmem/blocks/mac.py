"""Memory as a Context (Titans §4.1, eqs. 21-25), segment by segment.

For segment S^(t) with M_{t-1} the memory before it:

    h_t   = M*_{t-1}(q_t),  q_t = S^(t) W_Q          (21)  retrieve, no update
    S~    = [p_1 .. p_Np] || h_t || S^(t)            (22)
    y_t   = Attn(S~)                                 (23)  causal inside the segment
    M_t   = M_{t-1}(y_t)                             (24)  write with the attention output
    o_t   = y_t (x) M*_t(y_t)                        (25)

Choices where the paper is silent (docs/architectures.md): one retrieved token per segment token, and segment
position j attends to every persistent token, to h_1..h_j and to x_1..x_j, so nothing of the segment's
future reaches j through h; h_i and x_i share the rotary position i inside the segment, persistent
tokens have none. With ``spec.mac_query_conv = K > 0`` the retrieval query is ``conv(S^(t) W_Q)``, a
causal depthwise convolution of kernel K whose window crosses the segment boundary (see ``_retrieve``).
With ``spec.mac_read_residual`` the retrieved tokens are also added to the residual stream,
``x + h_t + y (x) M*_t(y)``: a path from the memory's read to the output that does not go through
attention (the paper's read reaches the output only as attention context).
With ``spec.mac_memory_input = "input"`` eqs. 24-25 write and read the memory with the normalised
block input N(x) instead of y, so the gate is ``o_t = y (x) M*_t(N(x))``, as MAG's and MAL's
memories are written and read: not the paper's block, but the one that learns the DNA tasks
(docs/results.md, "MAC's memory written with the block input").
The memory's chunk is the segment, so its state at a chunk boundary is M_{t-1}; the
write with y and the per-token read M*_t(y_j) after token j's update (read="token") are one call of
the memory layer. (x) is the gate ``y * sigmoid(M*(.))``, read at y or at N(x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..layers.masked_attention import masked_attention
from ..layers.neural_memory import NeuralMemory, NeuralMemoryState
from ..modules.conv import CausalDepthwiseConv1d
from ..modules.mlp import SwiGLU
from ..modules.norm import RMSNorm
from ..modules.rotary import apply_rotary
from .spec import BlockSpec

__all__ = ["MACBlock", "MACState"]


@dataclass(frozen=True)
class MACState:
    """State of one MAC block between calls.

    Attributes:
        memory: the memory layer's state (its chunk boundary is the current segment's start).
        keys, values: rotated keys and the values of the current segment's tokens so far, retrieved
            tokens first then input tokens, ``[B, 2j, H, D]``; cleared at each segment boundary.
        offset: tokens seen.
        query_tail: the last ``K - 1`` retrieval-query projections (``spec.mac_query_conv = K``),
            ``[B, K-1, H*D]``; None without the convolution or before the first token.
    """

    memory: NeuralMemoryState
    keys: torch.Tensor | None
    values: torch.Tensor | None
    offset: int
    query_tail: torch.Tensor | None = None


class MACBlock(nn.Module):
    """``x + MAC(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))``; segments of ``spec.segment_size``."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.segment, self.num_heads, self.head_dim = spec.segment_size, spec.num_heads, spec.resolved_head_dim
        self.rope_theta, self.attn_impl = spec.rope_theta, spec.attn_impl
        inner = spec.num_heads * spec.resolved_head_dim
        self.norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        # eq. 21: the retrieval query W_Q and the map of the read back to the model width.
        self.retrieve_q = nn.Linear(spec.hidden_size, inner, bias=False)
        self.retrieve_conv = CausalDepthwiseConv1d(inner, spec.mac_query_conv) if spec.mac_query_conv else None
        self.retrieve_norm = RMSNorm(spec.resolved_head_dim, spec.norm_eps)
        self.retrieve_out = nn.Linear(inner, spec.hidden_size, bias=False)
        self.read_residual = spec.mac_read_residual
        self.memory_reads_input = spec.mac_memory_input == "input"
        # eqs. 22-23: attention inside the segment.
        self.q_proj = nn.Linear(spec.hidden_size, inner, bias=False)
        self.k_proj = nn.Linear(spec.hidden_size, inner, bias=False)
        self.v_proj = nn.Linear(spec.hidden_size, inner, bias=False)
        self.o_proj = nn.Linear(inner, spec.hidden_size, bias=False)
        self.persistent = (
            nn.Parameter(torch.randn(spec.n_persistent, spec.hidden_size) * 0.02) if spec.n_persistent else None
        )
        # eqs. 24-25: the memory, written and read with the attention output.
        self.memory = NeuralMemory(spec.hidden_size, spec.num_heads, spec.head_dim, memory_depth=spec.memory_depth,
                                   memory_expansion=spec.memory_expansion, chunk_size=spec.segment_size,
                                   activation=spec.memory_activation, max_lr=spec.max_lr, read="token",
                                   compiled=spec.compiled, recompute_chunks=spec.recompute_chunks,
                                   max_surprise=spec.max_surprise, check_finite=spec.check_memory_finite,
                                   max_alpha=spec.max_alpha, forget_bias_init=spec.forget_bias_init,
                                   momentum_bias_init=spec.momentum_bias_init,
                                   rule=spec.memory_rule, max_delta=spec.max_delta)
        self.mlp_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.mlp = SwiGLU(spec.hidden_size, spec.intermediate_size)

    def initial_state(self, batch_size: int) -> MACState:
        """State before the first token."""
        return MACState(self.memory.initial_state(batch_size), None, None, 0)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return rearrange(t, "b t (h d) -> b t h d", h=self.num_heads)

    def _retrieve(self, h: torch.Tensor, state: MACState) -> tuple[torch.Tensor, torch.Tensor | None]:
        # eq. 21 with M_{t-1} = the memory at the segment's start (the last chunk boundary). Without
        # the convolution the query of a segment's first token is that token alone: an answer that
        # starts a segment then cannot ask the memory about the question just before it.
        q, tail = self.retrieve_q(h), state.query_tail
        if self.retrieve_conv is not None:
            q, tail = self.retrieve_conv(q, tail)
        q = F.normalize(self._heads(q), dim=-1)  # [B, n, H, D]
        read = self.memory.retrieve(q, state.memory)
        return self.retrieve_out(rearrange(self.retrieve_norm(read), "b t h d -> b t (h d)")), tail

    def _segment_part(self, x: torch.Tensor, state: MACState) -> tuple[torch.Tensor, MACState]:
        """Tokens ``x [B, n, C]`` that lie inside one segment, starting at its position ``a``."""
        batch, n = x.shape[:2]
        a = state.offset % self.segment
        h = self.norm(x)
        retrieved, query_tail = self._retrieve(h, state)  # [B, n, C]
        pos = torch.arange(a, a + n, device=x.device)
        q = apply_rotary(self._heads(self.q_proj(h)), pos, self.rope_theta)
        new_k = torch.cat([apply_rotary(self._heads(self.k_proj(t)), pos, self.rope_theta) for t in (retrieved, h)], 1)
        new_v = torch.cat([self._heads(self.v_proj(t)) for t in (retrieved, h)], dim=1)
        if a == 0:
            seg_k, seg_v = new_k, new_v
        else:
            # cached [h_0..h_{a-1}, x_0..x_{a-1}] + new [h_a.., x_a..] -> [h_0.., h_a.., x_0.., x_a..]
            seg_k = torch.cat((state.keys[:, :a], new_k[:, :n], state.keys[:, a:], new_k[:, n:]), dim=1)
            seg_v = torch.cat((state.values[:, :a], new_v[:, :n], state.values[:, a:], new_v[:, n:]), dim=1)
        # segment position j sees h_i and x_i for i <= j (and every persistent token).
        key_pos = torch.arange(a + n, device=x.device).repeat(2)
        mask = key_pos[None, :] <= pos[:, None]  # [n, 2(a+n)]
        keys, values = seg_k, seg_v
        if self.persistent is not None:
            p = self.persistent.to(h.dtype).expand(batch, -1, -1)
            keys = torch.cat((self._heads(self.k_proj(p)), keys), dim=1)
            values = torch.cat((self._heads(self.v_proj(p)), values), dim=1)
            mask = torch.cat((mask.new_ones(n, p.shape[1]), mask), dim=1)
        attended = masked_attention(q, keys, values, mask, impl=self.attn_impl)  # eq. 23
        y = self.o_proj(rearrange(attended, "b t h d -> b t (h d)"))
        # eqs. 24-25: write with y, read M*_t(y) (or with the block input, mac_memory_input="input").
        read, memory = self.memory(h if self.memory_reads_input else y, state.memory)
        x = x + y * torch.sigmoid(read)
        if self.read_residual:
            x = x + retrieved
        if a + n == self.segment:  # the segment is complete: the next one attends afresh
            seg_k = seg_v = None
        return x, MACState(memory, seg_k, seg_v, state.offset + n, query_tail)

    def forward(self, x: torch.Tensor, state: MACState | None = None) -> tuple[torch.Tensor, MACState]:
        """``x [B, T, C] -> [B, T, C]`` and the block state; any split into pieces gives the same."""
        if state is None:
            state = self.initial_state(x.shape[0])
        outs, start = [], 0
        while start < x.shape[1]:
            n = min(self.segment - state.offset % self.segment, x.shape[1] - start)
            out, state = self._segment_part(x[:, start : start + n], state)
            outs.append(out)
            start += n
        x = torch.cat(outs, dim=1) if outs else x
        return x + self.mlp(self.mlp_norm(x)), state
