"""titanmem: Titans' neural long-term memory (arXiv 2501.00663) and the architectures built on it.

Importing the package registers the Titans classes with transformers' Auto classes, so
``AutoModelForCausalLM.from_pretrained(folder)`` loads a saved Titans model after ``import titanmem``.

The names below are the ones a user reaches for first, one per stratum (``docs/design.md``): the op
and its state, the two token mixers, the block spec and builder, the config, model and cache. Every
other public name lives in its subpackage (``titanmem.data``, ``titanmem.train``, ``titanmem.eval``, the domains
``titanmem.timeseries`` and ``titanmem.fewshot``, ...).
"""

# .models comes first: importing it is what registers the Auto classes, and it pulls in the strata
# below it, so the imports after it cost nothing more.
from .models import TitansCache, TitansConfig, TitansForCausalLM, TitansModel
from .blocks import VARIANTS, BlockSpec, build_block
from .layers import Attention, NeuralMemory
from .ops import MemoryState, neural_memory_chunk, neural_memory_naive

__version__ = "0.1.0"

__all__ = [
    "VARIANTS", "Attention", "BlockSpec", "MemoryState", "NeuralMemory", "TitansCache", "TitansConfig",
    "TitansForCausalLM", "TitansModel", "__version__", "build_block", "neural_memory_chunk", "neural_memory_naive",
]
