"""Export a training checkpoint as a Hugging Face folder that ``AutoModelForCausalLM`` loads."""

from __future__ import annotations

import json
from pathlib import Path

from ..models import TitansConfig, TitansForCausalLM
from .checkpoint import load_checkpoint
from .weights import load_weights

__all__ = ["export_pretrained"]


def export_pretrained(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write checkpoint ``checkpoint``'s model to ``out_dir`` with ``save_pretrained``.

    The folder loads with ``AutoModelForCausalLM.from_pretrained(out_dir)`` once ``titanmem.models`` is
    imported; ``training_job.json`` beside it records the job (tokenizer and corpus included).
    """
    loaded = load_checkpoint(checkpoint)
    config = TitansConfig.from_dict(loaded["model_config"])
    model = TitansForCausalLM(config)
    load_weights(model, loaded["weights"], checkpoint)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    (out_dir / "training_job.json").write_text(json.dumps(loaded["job"], indent=2) + "\n")
    return out_dir
