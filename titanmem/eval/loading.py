"""Load a model for evaluation from a Hugging Face folder, a training checkpoint or a run folder.

Three kinds of path are accepted:

- a folder written by ``save_pretrained`` / ``titanmem export`` (``config.json`` + weights);
- a training checkpoint ``<out_dir>/checkpoints/step_XXXXXXXX`` (``manifest.json``, verified first);
- a run folder ``<out_dir>``: its newest checkpoint that verifies.

The tokenizer is the one the model was trained with: the ``data.tokenizer`` spec of the job saved with
the checkpoint (``manifest.json``) or beside an export (``training_job.json``); failing that a
``tokenizer.json`` in the folder; failing that bytes when the vocabulary has 256 entries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.tokenizers import Tokenizer, get_tokenizer
from ..devices import resolve_device

__all__ = ["ModelSource", "load_model", "model_label", "resolve_source", "tokenizer_for"]


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` is ``"hf"`` or ``"checkpoint"``; ``job`` the training job (or None)."""

    kind: str
    path: Path
    job: dict[str, Any] | None


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def resolve_source(path: str | os.PathLike) -> ModelSource:
    """Classify ``path`` (see the module docstring); ``ValueError`` naming it when it is none of them."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"model path must be a model folder, a checkpoint or a run folder; {str(folder)!r} "
                         "is not a folder")
    if (folder / "manifest.json").is_file():
        manifest = _read_json(folder / "manifest.json")
        return ModelSource("checkpoint", folder, manifest.get("job") or None)
    if (folder / "config.json").is_file():
        job_file = folder / "training_job.json"
        return ModelSource("hf", folder, _read_json(job_file) if job_file.is_file() else None)
    if (folder / "checkpoints").is_dir():
        from ..train.checkpoint import find_resumable

        newest = find_resumable(folder / "checkpoints")
        if newest is not None:
            return resolve_source(newest)
    raise ValueError(f"model path {str(folder)!r} holds neither config.json (a Hugging Face folder), "
                     "manifest.json (a training checkpoint) nor checkpoints/ (a run folder)")


def tokenizer_for(source: ModelSource, vocab_size: int) -> Tokenizer:
    """The tokenizer of ``source`` (module docstring); ``ValueError`` when none can be found."""
    data = (source.job or {}).get("data") or {}
    spec, cache = data.get("tokenizer"), data.get("tokenizer_cache")
    if isinstance(spec, str):
        # A relative hf: path was relative to where training ran; fall back to a copy in the folder.
        local = source.path / "tokenizer.json"
        path = spec[3:] if spec.startswith("hf:") else spec if spec.endswith(".json") else None
        if path is not None and not Path(path).expanduser().is_file() and local.is_file():
            spec = f"hf:{local}"
        tok = get_tokenizer(spec, cache_dir=cache)
    elif (source.path / "tokenizer.json").is_file():
        tok = get_tokenizer(f"hf:{source.path / 'tokenizer.json'}")
    elif vocab_size == 256:
        tok = get_tokenizer("byte")
    else:
        raise ValueError(f"model {str(source.path)!r}: no tokenizer spec (no training job, no tokenizer.json) and "
                         f"vocab_size {vocab_size} is not the byte tokenizer's 256")
    if tok.vocab_size > vocab_size:
        raise ValueError(f"model {str(source.path)!r}: tokenizer {tok.name!r} has {tok.vocab_size} tokens, more "
                         f"than the model's vocab_size {vocab_size}")
    return tok


def load_model(
    path: str | os.PathLike, device: str | torch.device | None = "cpu", dtype: torch.dtype | None = None,
) -> tuple[Any, Tokenizer]:
    """``(model, tokenizer)`` of ``path``: a :class:`~titanmem.models.TitansForCausalLM` in eval mode.

    Args:
        path: a Hugging Face folder, a training checkpoint or a run folder (module docstring).
        device: where to put the model (``"auto"``: CUDA when available).
        dtype: parameter dtype (None keeps float32).
    """
    from ..models import TitansConfig, TitansForCausalLM

    source = resolve_source(path)
    if source.kind == "checkpoint":
        from safetensors.torch import load_file

        from ..train.checkpoint import verify_checkpoint
        from ..train.weights import load_weights

        verify_checkpoint(source.path)  # sizes and hashes, so a damaged file is named rather than half-read
        config = TitansConfig.from_dict(_read_json(source.path / "config.json"))
        model = TitansForCausalLM(config)
        load_weights(model, load_file(str(source.path / "model.safetensors")), source.path)
    else:
        model_type = _read_json(source.path / "config.json").get("model_type")
        if model_type != TitansConfig.model_type:
            raise ValueError(f"model path {str(source.path)!r} holds a model of type {model_type!r}, expected "
                             f"{TitansConfig.model_type!r} (a TitansForCausalLM)")
        model = TitansForCausalLM.from_pretrained(str(source.path))
    model = model.to(device=resolve_device(device), dtype=dtype).eval()
    return model, tokenizer_for(source, model.config.vocab_size)


def model_label(path: str | os.PathLike) -> str:
    """A short name for reports: the folder name, ``<run>/step_N`` for a checkpoint."""
    folder = Path(path).expanduser().resolve()
    if folder.name.startswith("step_") and folder.parent.name == "checkpoints":
        return f"{folder.parent.parent.name}/{folder.name}"
    return folder.name or str(folder)
