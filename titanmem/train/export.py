"""Export a training checkpoint as a Hugging Face folder that ``AutoModelForCausalLM`` loads."""

from __future__ import annotations

import json
from pathlib import Path

from ..models import TitansConfig, TitansForCausalLM
from .checkpoint import list_checkpoints, load_checkpoint
from .weights import load_weights

__all__ = ["export_pretrained", "resolve_checkpoint"]


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder ``path`` names: ``path`` itself, or a run folder's newest checkpoint that verifies.

    Raises ``FileNotFoundError`` when ``path`` does not exist, ``ValueError`` when it is a Hugging Face
    folder (nothing to export) or neither a checkpoint nor a run folder with checkpoints, and
    :class:`~titanmem.train.checkpoint.CheckpointError` when a run folder has checkpoints but none verifies.
    """
    from ..eval.loading import resolve_source  # the same classification that `titanmem eval` applies

    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"checkpoint {str(folder)!r} does not exist: expected a checkpoint folder "
                                "(<out_dir>/checkpoints/step_XXXXXXXX) or a run folder (<out_dir>)")
    run_folder = (folder / "checkpoints").is_dir() and not any((folder / f).is_file()
                                                               for f in ("manifest.json", "config.json"))
    if run_folder and not list_checkpoints(folder / "checkpoints"):
        raise ValueError(f"run folder {str(folder)!r} has no checkpoints yet (none under "
                         f"{str(folder / 'checkpoints')!r})")
    source = resolve_source(folder)
    if source.kind != "checkpoint":
        raise ValueError(f"{str(folder)!r} is already a Hugging Face folder (config.json, no manifest.json): it loads "
                         "with from_pretrained as it is; export takes a checkpoint or a run folder")
    return source.path


def export_pretrained(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write the model of ``checkpoint`` (a checkpoint or a run folder, see :func:`resolve_checkpoint`) to
    ``out_dir`` with ``save_pretrained``.

    The folder loads with ``AutoModelForCausalLM.from_pretrained(out_dir)`` after ``import titanmem``;
    ``training_job.json`` beside it records the job (tokenizer and corpus included).
    """
    checkpoint = resolve_checkpoint(checkpoint)
    loaded = load_checkpoint(checkpoint)
    config = TitansConfig.from_dict(loaded["model_config"])
    model = TitansForCausalLM(config)
    load_weights(model, loaded["weights"], checkpoint)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    (out_dir / "training_job.json").write_text(json.dumps(loaded["job"], indent=2) + "\n")
    return out_dir
