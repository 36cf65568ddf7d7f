"""Hugging Face-compatible models; the only stratum that imports ``transformers``."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from .cache import TitansCache
from .configuration_titans import TitansConfig
from .hf_compat import CACHE_KWARG, output_cache
from .modeling_titans import TitansForCausalLM, TitansForSequenceClassification, TitansModel, TitansPreTrainedModel
from .presets import PRESETS

# Importing titanmem.models is enough for the Auto classes to load a saved "titans" folder, with no
# trust_remote_code.
AutoConfig.register(TitansConfig.model_type, TitansConfig, exist_ok=True)
AutoModel.register(TitansConfig, TitansModel, exist_ok=True)
AutoModelForCausalLM.register(TitansConfig, TitansForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(TitansConfig, TitansForSequenceClassification, exist_ok=True)

__all__ = [
    "CACHE_KWARG", "PRESETS", "TitansCache", "TitansConfig", "TitansForCausalLM", "TitansForSequenceClassification",
    "TitansModel", "TitansPreTrainedModel",
    "output_cache",
]
