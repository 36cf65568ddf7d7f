"""``TitansCache``: the per-sequence state of every block, as a ``transformers.Cache`` for ``generate``."""

from __future__ import annotations

from typing import Any

import torch
from transformers import Cache

__all__ = ["TitansCache"]

_NOT_REORDERABLE = (
    "TitansCache cannot {op}: the blocks' states (memory weights, momentum, unfinished chunks, segment "
    "keys) are opaque per-sequence objects. Use greedy decoding or sampling with num_beams=1, and start a "
    "new cache per sequence."
)


class TitansCache(Cache):
    """What a :class:`TitansForCausalLM` needs to continue a batch of sequences.

    Attributes:
        states: the state each block returned, keyed by layer index (opaque: memory weights and
            momentum ``[B, H, d_in, d_out]``, pending tokens of a chunk, attention keys ``[B, L, H, D]``).
        seen_tokens: tokens of each sequence consumed so far.

    The model updates a cache in place (as Hugging Face caches are), so a cache follows one sequence
    batch: to branch, build a new one by re-reading the prefix. It subclasses ``transformers.Cache``
    only for ``generate``'s type checks; it holds no ``CacheLayer``. States are not batch-reorderable,
    so beam search, cropping (assisted decoding) and batch re-indexing raise ``NotImplementedError``.
    """

    def __init__(self) -> None:
        super().__init__(layers=[])
        self.states: dict[int, Any] = {}
        self.seen_tokens = 0

    def __repr__(self) -> str:
        return f"TitansCache(layers={sorted(self.states)}, seen_tokens={self.seen_tokens})"

    def __len__(self) -> int:
        return len(self.states)

    def get_state(self, layer_idx: int) -> Any | None:
        """State of block ``layer_idx`` (None before its first token)."""
        return self.states.get(layer_idx)

    def set_state(self, layer_idx: int, state: Any) -> None:
        """Store the state block ``layer_idx`` returned."""
        self.states[layer_idx] = state

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens seen so far (the same for every layer)."""
        return self.seen_tokens

    def get_max_length(self, layer_idx: int | None = None) -> int:
        """-1: no maximum (attention caches are bounded by the window, the memory is fixed-size)."""
        return -1

    @property
    def is_compileable(self) -> bool:
        """False: the states change shape as segments and chunks fill up."""
        return False

    @property
    def is_initialized(self) -> bool:
        return bool(self.states)

    @property
    def is_croppable(self) -> bool:
        return False

    def reset(self) -> None:
        """Forget everything: the next forward starts a new sequence."""
        self.states.clear()
        self.seen_tokens = 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError(_NOT_REORDERABLE.format(op="reorder its batch (beam search)"))

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError(_NOT_REORDERABLE.format(op="crop tokens (assisted decoding)"))

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError(_NOT_REORDERABLE.format(op="repeat its batch"))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError(_NOT_REORDERABLE.format(op="select batch rows"))
