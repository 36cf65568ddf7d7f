"""Pure tensor functions: no nn.Module, no configuration, nothing from the strata below."""

from .neural_memory import MemoryState, neural_memory_chunk, neural_memory_naive

__all__ = ["MemoryState", "neural_memory_chunk", "neural_memory_naive"]
