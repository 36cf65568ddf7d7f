"""What a corpus is made of: named documents, and the error raised when a corpus is not installed."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["CorpusNotFoundError", "Document", "normalize_text", "read_text"]


@dataclass(frozen=True)
class Document:
    """One document of a corpus; ``name`` is a stable unique id such as ``"shakespeare/hamlet"``."""

    name: str
    text: str


class CorpusNotFoundError(FileNotFoundError):
    """Data that is not on this machine; the message ends with the exact command that installs it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\nTo install it: {hint}")

    def __str__(self) -> str:
        # FileNotFoundError would format (errno, strerror) pairs; we only ever pass one message.
        return str(self.args[0]) if self.args else ""


def normalize_text(text: str) -> str:
    """Text with \\n line endings and no byte-order mark."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: str | os.PathLike) -> str:
    """The file as UTF-8 (undecodable bytes replaced, so one bad byte does not lose a corpus), \\n endings."""
    with open(path, "rb") as f:
        return normalize_text(f.read().decode("utf-8", errors="replace"))
