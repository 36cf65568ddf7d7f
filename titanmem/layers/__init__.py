"""Token mixers (NeuralMemory, Attention). May import ``ops`` and ``modules``."""

from .attention import Attention, AttentionState
from .masked_attention import causal_window_mask, masked_attention
from .neural_memory import NeuralMemory, NeuralMemoryState

__all__ = [
    "Attention", "AttentionState", "NeuralMemory", "NeuralMemoryState", "causal_window_mask", "masked_attention",
]
