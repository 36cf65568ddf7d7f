"""Export a training checkpoint as a Hugging Face folder that ``AutoModelForCausalLM`` loads."""

from __future__ import annotations

import json
from pathlib import Path

from ..models import TitansConfig, TitansForCausalLM
from .checkpoint import load_checkpoint

__all__ = ["export_pretrained"]


def export_pretrained(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write checkpoint ``checkpoint``'s model to ``out_dir`` with ``save_pretrained``.

    The folder loads with ``AutoModelForCausalLM.from_pretrained(out_dir)`` once ``titanmem.models`` is
    imported; ``training_job.json`` beside it records the job (tokenizer and corpus included).
    """
    loaded = load_checkpoint(checkpoint)
    config = TitansConfig.from_dict(loaded["model_config"])
    model = TitansForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded["weights"], strict=False)
    allowed = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - allowed or unexpected:
        raise ValueError(f"checkpoint {str(checkpoint)!r} does not fit its own config: missing "
                         f"{sorted(set(missing) - allowed)}, unexpected {sorted(unexpected)}")
    if config.tie_word_embeddings:
        model.tie_weights()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    (out_dir / "training_job.json").write_text(json.dumps(loaded["job"], indent=2) + "\n")
    return out_dir
