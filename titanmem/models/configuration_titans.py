"""``TitansConfig``: one Hugging Face config for every variant (LMM, MAC, MAG, MAL and the baselines)."""

from __future__ import annotations

import dataclasses
from typing import Any

from transformers import PreTrainedConfig

from ..blocks import VARIANTS, BlockSpec
from ..blocks.spec import MAC_MEMORY_INPUTS
from ..checks import check_int, check_real
from ..layers.masked_attention import ATTENTION_IMPLS
from ..ops import MemoryRule
from ..ops.neural_memory.mlp import ACTIVATIONS
from ..ops.neural_memory.surprise import check_max_surprise
from .presets import PRESETS

__all__ = ["CLASSIFIER_POOLINGS", "TitansConfig"]

CLASSIFIER_POOLINGS = ("last", "mean")

# Block hyperparameters default to BlockSpec's values, so each default is written in one place.
_SPEC = {f.name: f.default for f in dataclasses.fields(BlockSpec) if f.default is not dataclasses.MISSING}

# The memory rule's fields, each under the name ``memory_<field>`` (defaults: MemoryRule's, Titans).
_RULE = {f.name: f.default for f in dataclasses.fields(MemoryRule)}

# Variants whose attention is a sliding window: they cannot run without one.
_WINDOWED = ("swa", "mag", "mal")


def _as_value_error(check: Any, *args: Any, **kwargs: Any) -> None:
    # A config holds values read from JSON and TOML: every bad one is a ValueError, as transformers'
    # own config validation raises, with the shared check's message.
    try:
        check(*args, **kwargs)
    except TypeError as err:
        raise ValueError(str(err)) from err


def _check_int(name: str, value: object, minimum: int) -> None:
    _as_value_error(check_int, name, value, minimum)


def _check_positive(name: str, value: object, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a number {'>=' if allow_zero else '>'} 0, got {value!r}")


class TitansConfig(PreTrainedConfig):
    """Configuration of :class:`~titanmem.models.TitansForCausalLM`.

    Hugging Face names where one exists (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
    ``intermediate_size``, ``rms_norm_eps``, ...); the rest are :class:`~titanmem.blocks.BlockSpec`'s.

    Attributes:
        variant: block architecture, one of ``("lmm", "mac", "mag", "mal", "transformer", "swa")``.
        vocab_size: vocabulary (default 256: bytes).
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: model shape; the heads
            are shared by attention and memory; ``intermediate_size`` is the SwiGLU width.
        head_dim: per-head width (None = ``hidden_size // num_attention_heads``); even where attention
            (RoPE) is used.
        window: sliding-window length; required by ``swa``, ``mag``, ``mal``; unused by the others.
        n_persistent: learnable persistent tokens (Titans eq. 19) of every attention.
        memory_depth, memory_expansion, chunk_size, max_lr, memory_activation: the neural memory
            (MAC uses ``segment_size`` as its memory chunk).
        segment_size: MAC's segment length.
        mac_query_conv: kernel of a causal depthwise convolution on MAC's retrieval query (0: none,
            the per-token query of eq. 21). With 0, the first token of a segment queries the memory
            with itself alone; with K it also sees the K - 1 tokens before it, across the segment
            boundary (the memory's own q, k, v get the same kind of convolution, Titans §4.4).
        mac_read_residual: MAC also adds its retrieved tokens h_t (eq. 21) to the residual stream, a
            direct path from the memory's read to the output beside attention over them (False: the
            paper's eqs. 22-25; docs/results.md, "MAC: why it does not learn here").
        mac_memory_input: what MAC's memory is written with and read at (eqs. 24-25): ``"attention"``
            (the attention output y, the paper's block) or ``"input"`` (the normalised block input, as
            MAG's and MAL's memories are; an experiment, docs/architectures.md).
        rope_theta, rms_norm_eps, attn_impl (``"sdpa"`` or ``"eager"``): attention and norms.
        compiled, recompute_chunks: how the memory op runs, like ``attn_impl`` an execution choice
            that leaves the numbers as they are (up to float rounding): ``compiled`` runs its full
            chunks through ``torch.compile`` (needs a C++ compiler on the CPU; the first call of each
            shape compiles), ``recompute_chunks`` is the number of chunks per recomputed group in
            training (0 keeps every intermediate: faster backward, more memory).
        max_surprise: bound on the norm of each token's memory gradient (None: the paper's unbounded
            rule): the defence against an inner update that diverges when the gates saturate.
        check_memory_finite: every memory layer checks its state after each call and raises
            ``MemoryDivergedError`` naming the layer and the position instead of returning NaN (one
            device sync per layer and call; False turns it off).
        max_alpha, forget_bias_init: the forgetting gate is ``alpha = max_alpha * sigmoid(.)``
            (``max_alpha`` in (0, 1]; 1 is the paper's gate) and its logit's bias starts at
            ``forget_bias_init``: a small ``max_alpha`` guarantees that an association survives
            ``(1 - max_alpha)^T`` of itself over T tokens, whatever the gate learns.
        momentum_bias_init: the momentum gate eta = sigmoid(.) starts at ``sigmoid(momentum_bias_init)``
            (0: 0.5). Larger values carry each chunk's surprise further (a step of about
            ``chunk_size * theta / (1 - eta)`` gradients per chunk); docs/results.md measures -2 and 2.
        memory_objective, memory_p, memory_sign_sharpness, memory_abs_eps, memory_retention, memory_q,
            memory_optimizer, memory_ns_steps, memory_window, memory_feature_map, memory_feature_degree:
            the memory rule, each the :class:`~titanmem.ops.MemoryRule` field of the name without
            ``memory_`` (MIRAS objective and retention, ATLAS Omega window, Muon step and feature map;
            the defaults are Titans'); it applies to every memory layer (LMM, MAC, MAG, MAL).
        max_delta: upper bound of the Huber threshold (``memory_objective="huber"``).
        classifier_pooling: what :class:`~titanmem.models.TitansForSequenceClassification` classifies:
            ``"last"`` (default), the final hidden state of the last token, the one position of a
            causal model that has read the whole sequence; or ``"mean"``, the mean over the tokens
            of the call. ``num_labels`` and ``problem_type`` are transformers' own fields.
        tie_word_embeddings: the LM head shares the embedding matrix.
        initializer_range: std of the normal init of linear and embedding weights.
        use_cache: whether ``forward`` returns a :class:`TitansCache` by default.

    Every invalid value raises ``ValueError`` naming the field and the value seen.
    """

    model_type = "titans"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    variant: str = "mac"
    vocab_size: int = 256
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 384
    head_dim: int | None = _SPEC["head_dim"]
    window: int | None = _SPEC["window"]
    n_persistent: int = _SPEC["n_persistent"]
    memory_depth: int = _SPEC["memory_depth"]
    memory_expansion: int = _SPEC["memory_expansion"]
    chunk_size: int = _SPEC["chunk_size"]
    segment_size: int = _SPEC["segment_size"]
    mac_query_conv: int = _SPEC["mac_query_conv"]
    mac_read_residual: bool = _SPEC["mac_read_residual"]
    mac_memory_input: str = _SPEC["mac_memory_input"]
    max_lr: float = _SPEC["max_lr"]
    memory_activation: str = _SPEC["memory_activation"]
    rope_theta: float = _SPEC["rope_theta"]
    rms_norm_eps: float = _SPEC["norm_eps"]
    attn_impl: str = _SPEC["attn_impl"]
    compiled: bool = _SPEC["compiled"]
    recompute_chunks: int = _SPEC["recompute_chunks"]
    max_surprise: float | None = _SPEC["max_surprise"]
    check_memory_finite: bool = _SPEC["check_memory_finite"]
    max_alpha: float = _SPEC["max_alpha"]
    forget_bias_init: float = _SPEC["forget_bias_init"]
    momentum_bias_init: float = _SPEC["momentum_bias_init"]
    memory_objective: str = _RULE["objective"]
    memory_p: float = _RULE["p"]
    memory_sign_sharpness: float = _RULE["sign_sharpness"]
    memory_abs_eps: float = _RULE["abs_eps"]
    memory_retention: str = _RULE["retention"]
    memory_q: float = _RULE["q"]
    memory_optimizer: str = _RULE["optimizer"]
    memory_ns_steps: int = _RULE["ns_steps"]
    memory_window: int = _RULE["window"]
    memory_feature_map: str = _RULE["feature_map"]
    memory_feature_degree: int = _RULE["feature_degree"]
    max_delta: float = _SPEC["max_delta"]
    classifier_pooling: str = "last"
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    use_cache: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "memory_depth", "memory_expansion", "chunk_size", "segment_size"):
            _check_int(name, getattr(self, name), 1)
        _check_int("n_persistent", self.n_persistent, 0)
        _check_int("mac_query_conv", self.mac_query_conv, 0)
        _check_int("recompute_chunks", self.recompute_chunks, 0)
        for name in ("compiled", "mac_read_residual"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.check_memory_finite, bool):
            raise ValueError(f"check_memory_finite must be a bool, got {self.check_memory_finite!r}")
        _as_value_error(check_real, "max_alpha", self.max_alpha, 0.0, 1.0, low_open=True)
        _as_value_error(check_real, "forget_bias_init", self.forget_bias_init)
        _as_value_error(check_real, "momentum_bias_init", self.momentum_bias_init)
        _as_value_error(check_max_surprise, self.max_surprise)
        self.memory_rule()
        _as_value_error(check_real, "max_delta", self.max_delta, 0.0, low_open=True)
        if self.compiled and not self.memory_rule().is_titans:
            raise ValueError("compiled=True runs the Titans op only; set compiled=False with a memory rule "
                             f"other than Titans' ({self.memory_rule()})")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size must be divisible by num_attention_heads when head_dim is None, got "
                    f"hidden_size={self.hidden_size}, num_attention_heads={self.num_attention_heads}"
                )
        else:
            _check_int("head_dim", self.head_dim, 1)
        resolved_head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        if self.variant != "lmm" and resolved_head_dim % 2:
            raise ValueError(f"head_dim must be even for variant {self.variant!r} (RoPE), got {resolved_head_dim}")
        if self.window is not None:
            _check_int("window", self.window, 1)
        elif self.variant in _WINDOWED:
            raise ValueError(f"window must be set for variant {self.variant!r}, got window=None")
        for name in ("max_lr", "rope_theta", "rms_norm_eps"):
            _check_positive(name, getattr(self, name))
        _check_positive("initializer_range", self.initializer_range, allow_zero=True)
        if self.memory_activation not in ACTIVATIONS:
            raise ValueError(f"memory_activation must be one of {tuple(ACTIVATIONS)}, got {self.memory_activation!r}")
        if self.classifier_pooling not in CLASSIFIER_POOLINGS:
            raise ValueError(f"classifier_pooling must be one of {CLASSIFIER_POOLINGS}, got {self.classifier_pooling!r}")
        if self.attn_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTENTION_IMPLS}, got {self.attn_impl!r}")
        if self.mac_memory_input not in MAC_MEMORY_INPUTS:
            raise ValueError(f"mac_memory_input must be one of {MAC_MEMORY_INPUTS}, got {self.mac_memory_input!r}")

    def block_spec(self) -> BlockSpec:
        """The :class:`BlockSpec` every layer of the model is built from."""
        self._validate()  # fields may have been assigned since __init__
        return BlockSpec(
            hidden_size=self.hidden_size, num_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
            head_dim=self.head_dim, window=self.window, n_persistent=self.n_persistent,
            memory_depth=self.memory_depth, memory_expansion=self.memory_expansion, chunk_size=self.chunk_size,
            max_lr=float(self.max_lr), memory_activation=self.memory_activation, segment_size=self.segment_size,
            mac_query_conv=self.mac_query_conv, mac_read_residual=self.mac_read_residual,
            mac_memory_input=self.mac_memory_input,
            rope_theta=float(self.rope_theta), norm_eps=float(self.rms_norm_eps), attn_impl=self.attn_impl,
            compiled=self.compiled, recompute_chunks=self.recompute_chunks,
            max_surprise=None if self.max_surprise is None else float(self.max_surprise),
            check_memory_finite=self.check_memory_finite, max_alpha=float(self.max_alpha),
            forget_bias_init=float(self.forget_bias_init), momentum_bias_init=float(self.momentum_bias_init),
            memory_rule=self.memory_rule(),
            max_delta=float(self.max_delta),
        )

    def memory_rule(self) -> MemoryRule:
        """The :class:`~titanmem.ops.MemoryRule` of the ``memory_*`` fields.

        Raises:
            ValueError: a field out of range or of the wrong type, named as the config names it.
        """
        try:
            return MemoryRule(**{name: getattr(self, f"memory_{name}") for name in _RULE})
        except (TypeError, ValueError) as err:
            raise ValueError(f"memory_{err}") from err

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TitansConfig:
        """The config of preset ``name`` (see :mod:`titanmem.models.presets`), with ``overrides`` applied."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
        return cls(**{**PRESETS[name], **overrides})
