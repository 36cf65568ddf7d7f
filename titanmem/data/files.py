"""Durable-write helpers shared by token shards and training checkpoints."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["fsync_path", "sha256_file"]


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's entry to disk (a rename is only durable once its folder is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
