"""Titans' neural long-term memory as pure tensor functions (arXiv 2501.00663v1, §3), and the family of
memory rules around it (MIRAS, arXiv 2504.13173; ATLAS, arXiv 2505.23735)."""

from .chunk import neural_memory_chunk
from .family_chunk import neural_memory_family_chunk
from .family_inputs import WindowContext
from .family_naive import neural_memory_family_naive
from .naive import neural_memory_naive
from .rule import NAMED_RULES, TITANS, MemoryRule
from .state import MemoryState

__all__ = [
    "NAMED_RULES",
    "TITANS",
    "MemoryRule",
    "MemoryState",
    "WindowContext",
    "neural_memory_chunk",
    "neural_memory_family_chunk",
    "neural_memory_family_naive",
    "neural_memory_naive",
]
