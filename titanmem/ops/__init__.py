"""Pure tensor functions: no nn.Module, no configuration, nothing from the strata below."""

from .neural_memory import (
    NAMED_RULES,
    TITANS,
    MemoryRule,
    MemoryState,
    WindowContext,
    neural_memory_chunk,
    neural_memory_family_chunk,
    neural_memory_family_naive,
    neural_memory_naive,
)

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
