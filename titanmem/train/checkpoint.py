"""Checkpoints that a crash cannot corrupt, and finding the newest good one to resume from.

A checkpoint is a folder ``step_00000100/`` holding

- ``model.safetensors``: the model weights (tied copies stored once);
- ``trainer.pt``: optimizer, scheduler, data-loader position, RNG states and (with ``run.tbptt``) the
  blocks' carried states;
- ``config.json``: the model's :class:`~titanmem.models.TitansConfig`;
- ``manifest.json``: the step, the job config and the size and SHA-256 of every file above.

It is written into a hidden temporary folder, every file and the folder fsynced, then renamed into
place in one ``os.replace``; the manifest is the last file written. A kill at any moment leaves
either the previous checkpoints untouched or a temporary folder that is ignored and removed later. On
load every file is checked against the manifest, so a truncated or altered file is reported as
such instead of being half-loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..data.files import fsync_path, sha256_file

__all__ = [
    "CheckpointError", "find_resumable", "list_checkpoints", "load_checkpoint", "prune_checkpoints",
    "save_checkpoint", "verify_checkpoint",
]

_PREFIX = "step_"
_FILES = ("model.safetensors", "trainer.pt", "config.json")


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, incomplete, truncated or corrupted."""


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_checkpoint(
    directory: str | Path, step: int, weights: Mapping[str, torch.Tensor], trainer_state: Mapping[str, Any],
    model_config: Mapping[str, Any], job_config: Mapping[str, Any],
) -> Path:
    """Write checkpoint ``step`` under ``directory`` atomically and return its folder.

    ``weights`` is a full (unsharded) state dict; tensors sharing storage (tied embeddings) must have
    been removed by the caller. An existing checkpoint of the same step is replaced.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{_PREFIX}{step:08d}"
    tmp = directory / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "model.safetensors"))
    torch.save(dict(trainer_state), tmp / "trainer.pt")
    _write_json(tmp / "config.json", dict(model_config))
    files = {}
    for name in _FILES:
        fsync_path(tmp / name)
        files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
    _write_json(tmp / "manifest.json", {"format": 1, "step": step, "files": files, "job": dict(job_config)})
    fsync_path(tmp / "manifest.json")
    fsync_path(tmp)
    if final.exists():
        # Move the old one aside first: os.replace cannot replace a non-empty folder.
        stale = directory / f".{final.name}.old-{os.getpid()}"
        os.replace(final, stale)
        os.replace(tmp, final)
        shutil.rmtree(stale)
    else:
        os.replace(tmp, final)
    fsync_path(directory)
    return final


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """The manifest of checkpoint folder ``path`` after checking every file's size and SHA-256.

    Raises :class:`CheckpointError` saying which file is missing, truncated or corrupted.
    """
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is incomplete: manifest.json is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        int(manifest["step"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted: manifest.json is unreadable ({err})") from err
    for name in _FILES:
        file = path / name
        if name not in files:
            raise CheckpointError(f"checkpoint {str(path)!r} is corrupted: manifest.json does not list {name}")
        if not file.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} is incomplete: {name} is missing")
        size, expected = file.stat().st_size, files[name]["bytes"]
        if size != expected:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is truncated or corrupted: {name} has {size} bytes, the manifest says {expected}"
            )
        if sha256_file(file) != files[name]["sha256"]:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupted: the SHA-256 of {name} does not match the manifest"
            )
    return manifest


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Verify and load checkpoint ``path``: ``{"step", "weights", "trainer", "model_config", "job"}``.

    ``trainer.pt`` holds Python objects (RNG states, carried block states), so it is unpickled with
    ``weights_only=False``: load only checkpoints you wrote. Its hash is checked first.
    """
    path = Path(path)
    manifest = verify_checkpoint(path)
    return {
        "step": int(manifest["step"]),
        "weights": load_file(str(path / "model.safetensors")),
        "trainer": torch.load(path / "trainer.pt", map_location="cpu", weights_only=False),
        "model_config": json.loads((path / "config.json").read_text(encoding="utf-8")),
        "job": manifest.get("job", {}),
        "path": path,
    }


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint folders under ``directory``, newest step first (temporary folders excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        if child.is_dir() and child.name.startswith(_PREFIX) and child.name[len(_PREFIX):].isdigit():
            found.append((int(child.name[len(_PREFIX):]), child))
    return [p for _, p in sorted(found, reverse=True)]


def find_resumable(directory: str | Path) -> Path | None:
    """The newest checkpoint under ``directory`` that verifies, or None when there is none at all.

    A corrupt newer checkpoint is skipped with a warning naming it and the reason; if checkpoints
    exist but none verifies, :class:`CheckpointError` lists them all.
    """
    candidates = list_checkpoints(directory)
    problems = []
    for path in candidates:
        try:
            verify_checkpoint(path)
        except CheckpointError as err:
            problems.append(str(err))
            warnings.warn(f"skipping {err}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
            continue
        return path
    if problems:
        raise CheckpointError("no usable checkpoint to resume from:\n  " + "\n  ".join(problems))
    return None


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints, and temporary folders a killed writer left.

    One job writes to a checkpoint folder at a time (only rank 0 writes), so any temporary folder
    seen here is debris.
    """
    directory = Path(directory)
    for path in list_checkpoints(directory)[keep:]:
        shutil.rmtree(path, ignore_errors=True)
    for pattern in (f".{_PREFIX}*.tmp-*", f".{_PREFIX}*.old-*"):
        for child in directory.glob(pattern):
            shutil.rmtree(child, ignore_errors=True)
