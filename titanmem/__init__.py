"""titanmem: Titans' neural long-term memory (arXiv 2501.00663) and the architectures built on it.

Importing the package registers the Titans classes with transformers' Auto classes, so
``AutoModelForCausalLM.from_pretrained(folder)`` loads a saved Titans model after ``import titanmem``.
"""

from .models import TitansCache, TitansConfig, TitansForCausalLM, TitansModel
from .ops import MemoryState, neural_memory_chunk, neural_memory_naive

__version__ = "0.1.0"

__all__ = [
    "MemoryState", "TitansCache", "TitansConfig", "TitansForCausalLM", "TitansModel", "__version__",
    "neural_memory_chunk", "neural_memory_naive",
]
