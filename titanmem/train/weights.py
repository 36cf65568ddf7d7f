"""Model weights in and out of checkpoints: tied copies stored once, checked on the way back."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..models import TitansConfig, TitansForCausalLM
from .distributed import full_model_state

__all__ = ["load_weights", "weights_to_save"]


def weights_to_save(model: nn.Module, config: TitansConfig) -> dict[str, torch.Tensor]:
    """Full (unsharded) weights of a plain, DDP or FSDP2 model, the tied LM head left out.

    Every process must call it (FSDP gathers shards collectively); ranks > 0 of FSDP get an empty dict.
    """
    weights = full_model_state(model)
    if config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)  # the embedding, stored once
    return weights


def load_weights(model: TitansForCausalLM, weights: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Load :func:`weights_to_save` output into ``model``; ``ValueError`` naming ``source`` if it does not fit."""
    missing, unexpected = model.load_state_dict(dict(weights), strict=False)
    allowed = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    if set(missing) - allowed or unexpected:
        raise ValueError(f"checkpoint {str(source)!r} does not fit this model: missing "
                         f"{sorted(set(missing) - allowed)}, unexpected {sorted(unexpected)}")
    if model.config.tie_word_embeddings:
        model.tie_weights()
