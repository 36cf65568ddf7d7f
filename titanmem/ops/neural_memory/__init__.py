"""Titans' neural long-term memory as pure tensor functions (arXiv 2501.00663v1, §3)."""

from .chunk import neural_memory_chunk
from .naive import neural_memory_naive
from .state import MemoryState

__all__ = ["MemoryState", "neural_memory_chunk", "neural_memory_naive"]
