"""The name under which ``transformers`` passes and returns a model's cache, whichever release is installed.

transformers 5.24 renamed the cache argument and output field from ``past_key_values`` to ``cache``:
``generate`` then hands the cache to ``prepare_inputs_for_generation`` and to ``forward`` as ``cache``,
reads it back from ``outputs["cache"]``, and warns whenever the old name is used. Earlier 5.x releases
do the same under ``past_key_values``. The Titans models accept both names on every release and return
the cache under the installed release's name, so ``generate`` finds it and no deprecation warning is
printed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from transformers.modeling_outputs import CausalLMOutputWithPast

__all__ = ["CACHE_NAMES", "CACHE_KWARG", "output_cache"]

CACHE_NAMES: tuple[str, str] = ("cache", "past_key_values")
# The output dataclasses declare the field under the installed release's name.
CACHE_KWARG: str = ("cache" if any(f.name == "cache" for f in dataclasses.fields(CausalLMOutputWithPast))
                    else "past_key_values")


def output_cache(output: Any) -> Any:
    """The cache a model returned in ``output`` (a ``ModelOutput``), read under the installed name, or None."""
    return output.get(CACHE_KWARG)
