"""Tokenizers named by a spec string that recreates them: ``byte``, ``hf:<tokenizer.json>``, ``tiktoken:<encoding>``.

The spec is stored with the token shards, so a model's data can always be decoded with the tokenizer
it was made with. Only local files are read: nothing is fetched from a model hub at run time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from .documents import CorpusNotFoundError

__all__ = ["ByteTokenizer", "HFTokenizer", "TiktokenTokenizer", "Tokenizer", "get_tokenizer"]

TIKTOKEN_CACHE_DEFAULT = "~/.cache/titanmem/tiktoken"


@runtime_checkable
class Tokenizer(Protocol):
    """What the data pipeline needs from a tokenizer; ``name`` is the spec that recreates it."""

    name: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens (vocabulary 256): needs no files and never sees an unknown token."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text``."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the bytes ``ids``; a sequence cut inside a character decodes to U+FFFD, not an error."""
        return bytes(ids).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer saved as a local ``tokenizer.json``."""

    def __init__(self, path: str | os.PathLike) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise CorpusNotFoundError(
                f"tokenizer file {file} not found",
                "save one with tokenizers.Tokenizer.save('tokenizer.json') and pass its path as hf:<path>",
            )
        try:
            from tokenizers import Tokenizer as _HF  # lazy: only this tokenizer needs the library
        except ImportError as e:
            raise ImportError("HFTokenizer needs the tokenizers library: pip install tokenizers") from e
        self._tok = _HF.from_file(str(file))
        self.path = file
        self.name = f"hf:{file}"
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens (documents are joined by plain text separators)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens included."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)


class TiktokenTokenizer:
    """A ``tiktoken`` encoding (e.g. ``gpt2``, ``cl100k_base``) read from a local cache folder.

    tiktoken downloads an encoding's files on first use; offline they must already be in the cache
    folder, named by the SHA-1 hex digest of their download URL. ``cache_dir`` (default: the
    ``TIKTOKEN_CACHE_DIR`` environment variable, else ``~/.cache/titanmem/tiktoken``) is exported as
    ``TIKTOKEN_CACHE_DIR`` before the encoding is loaded, because that is the only way to tell tiktoken.
    """

    def __init__(self, encoding: str, cache_dir: str | None = None) -> None:
        if not isinstance(encoding, str) or not encoding:
            raise ValueError(f"encoding must be a non-empty tiktoken encoding name, got {encoding!r}")
        try:
            import tiktoken  # lazy and optional: only this tokenizer needs it
        except ImportError as e:
            raise ImportError(f"tokenizer 'tiktoken:{encoding}' needs tiktoken: pip install tiktoken") from e
        if cache_dir is None:
            cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or TIKTOKEN_CACHE_DEFAULT
        folder = Path(cache_dir).expanduser()
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        known = tiktoken.list_encoding_names() if hasattr(tiktoken, "list_encoding_names") else None
        if known is not None and encoding not in known:
            raise ValueError(f"encoding must be one of tiktoken's encodings {sorted(known)}, got {encoding!r}")
        try:
            self._enc = tiktoken.get_encoding(encoding)
        except Exception as e:  # offline, tiktoken fails with whatever its HTTP client raises
            raise CorpusNotFoundError(
                f"tiktoken encoding {encoding!r} is not in the cache folder {folder} and could not be "
                f"downloaded ({type(e).__name__}: {e}). tiktoken looks for each file of the encoding as "
                f"{folder}/<sha1 hex digest of its download URL>",
                f"on a machine with network access run TIKTOKEN_CACHE_DIR={folder} python -c "
                f"\"import tiktoken; tiktoken.get_encoding('{encoding}')\" and copy {folder} here",
            ) from e
        self.encoding = encoding
        self.cache_dir = folder
        self.name = f"tiktoken:{encoding}"
        self.vocab_size = int(self._enc.n_vocab)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token text is encoded as ordinary text."""
        return list(self._enc.encode_ordinary(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (invalid UTF-8 replaced)."""
        return self._enc.decode([int(i) for i in ids])


_FORMS = "'byte', 'hf:<path to tokenizer.json>' (or any path ending in .json), 'tiktoken:<encoding>'"


def get_tokenizer(spec: str, cache_dir: str | None = None) -> Tokenizer:
    """The tokenizer named by ``spec``; ``cache_dir`` is tiktoken's cache folder (see TiktokenTokenizer)."""
    if not isinstance(spec, str):
        raise TypeError(f"tokenizer must be a str spec ({_FORMS}), got {type(spec).__name__} ({spec!r})")
    if spec == "byte":
        return ByteTokenizer()
    if spec.startswith("hf:") and spec[3:]:
        return HFTokenizer(spec[3:])
    if spec.startswith("tiktoken:") and spec[9:]:
        return TiktokenTokenizer(spec[9:], cache_dir=cache_dir)
    if spec.endswith(".json") and not spec.startswith(("hf:", "tiktoken:")):
        return HFTokenizer(spec)
    raise ValueError(f"tokenizer must be one of {_FORMS}, got {spec!r}")
