"""titanmem: Titans' neural long-term memory (arXiv 2501.00663) and the architectures built on it."""

from .ops import MemoryState, neural_memory_chunk, neural_memory_naive

__version__ = "0.1.0"

__all__ = ["MemoryState", "__version__", "neural_memory_chunk", "neural_memory_naive"]
