"""The settings every block is built from (the model derives them from its one config)."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import check_int, check_real
from ..ops import TITANS, MemoryRule

__all__ = ["BlockSpec", "MAC_MEMORY_INPUTS"]

# What MAC's memory is written with: the attention output (eqs. 24-25 as written) or the block input.
MAC_MEMORY_INPUTS = ("attention", "input")


@dataclass(frozen=True)
class BlockSpec:
    """Widths and hyperparameters of one block; each variant reads the fields it uses.

    Attributes:
        hidden_size: model width C.
        num_heads: heads of attention and of the memory.
        intermediate_size: hidden width of the SwiGLU feed-forward.
        head_dim: per-head width (default C / num_heads).
        window: sliding-window length of attention (``swa``, ``mag``, ``mal``); None = full.
        n_persistent: learnable persistent tokens of attention (Titans eq. 19).
        memory_depth, memory_expansion, chunk_size, max_lr, memory_activation: the neural memory.
        segment_size: MAC segment length C (eqs. 21-25).
        mac_query_conv: kernel of a causal depthwise convolution on MAC's retrieval query (0: none,
            eq. 21's per-token query ``q_t = S^(t) W_Q``).
        mac_read_residual: also add MAC's retrieved tokens ``h_t`` (eq. 21) to the residual stream,
            beside their use as attention context (False: eq. 22-25 as written).
        mac_memory_input: what MAC's memory is written with and read at in eqs. 24-25: ``"attention"``
            (the attention output y, as written) or ``"input"`` (the normalised block input, as MAG's
            and MAL's memories are).
        rope_theta: RoPE base; norm_eps: RMSNorm epsilon; attn_impl: ``"sdpa"`` or ``"eager"``.
        max_surprise: bound on each token's surprise norm in the memory (None: unbounded).
        max_alpha, forget_bias_init: the forgetting gate's upper bound and initial logit bias.
        momentum_bias_init: the momentum gate's initial logit bias (eta = sigmoid(.) at init).
        check_memory_finite: the memory layers raise when their state becomes non-finite.
        compiled, recompute_chunks: how the memory op runs (``torch.compile`` of its chunks; chunks
            per recomputed group in training, 0 = keep every intermediate). Execution choices: the
            numbers are the same up to float rounding.
        memory_rule: the memory's rule (MIRAS objective and retention, ATLAS window, Muon step,
            feature map; :class:`~titanmem.ops.MemoryRule`), Titans' by default.
        max_delta: upper bound of the Huber threshold of a ``"huber"`` rule.
    """

    hidden_size: int
    num_heads: int
    intermediate_size: int
    head_dim: int | None = None
    window: int | None = None
    n_persistent: int = 0
    memory_depth: int = 2
    memory_expansion: int = 4
    chunk_size: int = 64
    max_lr: float = 0.01
    memory_activation: str = "gelu"
    segment_size: int = 64
    mac_query_conv: int = 0
    mac_read_residual: bool = False
    mac_memory_input: str = "attention"
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    attn_impl: str = "sdpa"
    compiled: bool = False
    recompute_chunks: int = 8
    max_surprise: float | None = None
    check_memory_finite: bool = True
    max_alpha: float = 1.0
    forget_bias_init: float = -5.0
    momentum_bias_init: float = 0.0
    memory_rule: MemoryRule = TITANS
    max_delta: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.memory_rule, MemoryRule):
            raise TypeError(f"memory_rule must be a MemoryRule, got {type(self.memory_rule).__name__}")
        check_real("max_delta", self.max_delta, 0.0, low_open=True)
        for name in ("hidden_size", "num_heads", "intermediate_size", "memory_depth", "memory_expansion",
                     "chunk_size", "segment_size"):
            check_int(name, getattr(self, name), 1)
        check_int("n_persistent", self.n_persistent, 0)
        check_int("mac_query_conv", self.mac_query_conv, 0)
        check_int("recompute_chunks", self.recompute_chunks, 0)
        for name in ("compiled", "mac_read_residual"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__} "
                                f"({getattr(self, name)!r})")
        if self.mac_memory_input not in MAC_MEMORY_INPUTS:
            raise ValueError(f"mac_memory_input must be one of {MAC_MEMORY_INPUTS}, got {self.mac_memory_input!r}")
        if self.window is not None:
            check_int("window", self.window, 1)
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads}) "
                "when head_dim is not given"
            )
        if self.head_dim is not None:
            check_int("head_dim", self.head_dim, 1)

    @property
    def resolved_head_dim(self) -> int:
        """Per-head width: ``head_dim`` when given, else ``hidden_size // num_heads``."""
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads
