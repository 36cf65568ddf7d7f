"""Token mixers (NeuralMemory, Attention). May import ``ops`` and ``modules``."""

from .attention import Attention, AttentionState
from .masked_attention import causal_window_mask, masked_attention
from .neural_memory import MemoryDivergedError, NeuralMemory, NeuralMemoryState

__all__ = [
    "Attention", "AttentionState", "MemoryDivergedError", "NeuralMemory", "NeuralMemoryState", "causal_window_mask",
    "masked_attention",
]
