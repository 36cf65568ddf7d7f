"""Token streams written once as raw shards, and read back memory-mapped.

``prepare_dataset`` tokenizes a corpus into ``<split>_NNN.bin`` files (little-endian ``uint16``, or
``uint32`` for vocabularies over 65536) plus ``meta.json``, which records the settings, each shard's
token count and SHA-256, and each split's documents. The folder is built under a temporary name
and renamed into place, so it either exists complete or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import check_fraction, check_int
from .corpora import CorpusNotFoundError, Document, corpus_revision, load_corpus, split_documents
from .files import fsync_path
from .tokenizers import ByteTokenizer, Tokenizer, get_tokenizer

__all__ = ["FORMAT", "TokenDataset", "prepare_dataset"]

FORMAT = 1
SEPARATOR = "\n\n"  # between documents, so a model sees where one ends
SPLITS = ("train", "val")
_SETTINGS = ("corpus", "corpus_revision", "corpus_path", "tokenizer", "val_fraction", "seed")


def _dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def _encode(tok: Tokenizer, text: str) -> np.ndarray:
    if isinstance(tok, ByteTokenizer):  # a Python list of 1M small ints per MB is slow; bytes are the ids
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    if hasattr(tok, "encode_array"):  # the nucleotide tokenizers: a genome is tens of millions of tokens
        return np.asarray(tok.encode_array(text), dtype=np.int64).reshape(-1)
    return np.asarray(tok.encode(text), dtype=np.int64).reshape(-1)


class _ShardWriter:
    """Appends tokens to ``<split>_000.bin``, ``<split>_001.bin``, ... of at most ``shard_tokens`` each."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._file = None
        self._hash = None

    def write(self, ids: np.ndarray) -> None:
        data = ids.astype(self.dtype)
        while data.size:
            if self._file is None or self.shards[-1]["tokens"] == self.shard_tokens:
                self._close()
                name = f"{self.split}_{len(self.shards):03d}.bin"
                self._file, self._hash = open(self.folder / name, "wb"), hashlib.sha256()
                self.shards.append({"file": name, "tokens": 0, "sha256": ""})
            take = min(data.size, self.shard_tokens - self.shards[-1]["tokens"])
            chunk = data[:take].tobytes()
            self._file.write(chunk)
            self._hash.update(chunk)
            self.shards[-1]["tokens"] += take
            data = data[take:]

    def _close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())  # the rename below must not publish half-written shards
            self._file.close()
            self.shards[-1]["sha256"] = self._hash.hexdigest()
            self._file = None

    def close(self) -> list[dict[str, Any]]:
        self._close()
        return self.shards


def _settings(meta: dict[str, Any]) -> dict[str, Any]:
    # Datasets prepared before revisions were recorded hold revision 1 of their corpus.
    return {k: meta.get(k, 1 if k == "corpus_revision" else None) for k in _SETTINGS}


def _existing(out_dir: Path, wanted: dict[str, Any]) -> bool:
    """True if ``out_dir`` already holds this dataset; ValueError if it holds another one."""
    meta_file = out_dir / "meta.json"
    if not meta_file.is_file():
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise ValueError(
                f"out_dir {out_dir} exists and is not a prepared dataset (no meta.json); use another folder")
        return False
    have = _settings(json.loads(meta_file.read_text(encoding="utf-8")))
    for key in _SETTINGS:
        if have[key] != wanted[key]:
            raise ValueError(
                f"out_dir {out_dir} was prepared with {key}={have[key]!r}, not {key}={wanted[key]!r}; "
                "use another folder (or delete this one) to prepare a different dataset"
            )
    return True


def _write_split(folder: Path, name: str, docs: list[Document], tok: Tokenizer, sep: np.ndarray,
                 dtype: np.dtype, shard_tokens: int, bar: Any) -> dict[str, Any]:
    writer, nbytes = _ShardWriter(folder, name, dtype, shard_tokens), 0
    for i, doc in enumerate(docs):
        ids = _encode(tok, doc.text)
        if ids.size and (ids.min() < 0 or ids.max() >= tok.vocab_size):
            raise ValueError(f"tokenizer {tok.name!r} produced ids outside [0, {tok.vocab_size}) for {doc.name!r}")
        if i:
            writer.write(sep)
            nbytes += len(SEPARATOR.encode("utf-8"))
        writer.write(ids)
        nbytes += len(doc.text.encode("utf-8"))
        if bar is not None:
            bar.update(1)
    shards = writer.close()
    return {"shards": shards, "tokens": sum(s["tokens"] for s in shards), "bytes": nbytes,
            "documents": [d.name for d in docs]}


def prepare_dataset(out_dir: str | os.PathLike, corpus: str = "shakespeare", tokenizer: str = "byte", *,
                    corpus_path: str | os.PathLike | None = None, val_fraction: float = 0.05, seed: int = 0,
                    shard_tokens: int = 1 << 26, progress: bool = False) -> Path:
    """Tokenize ``corpus`` into ``out_dir`` (train/val shards and ``meta.json``) once; return ``out_dir``.

    Documents are split by :func:`split_documents`; each split is its documents in name order joined
    by the tokens of ``"\\n\\n"``. If ``out_dir`` already holds a dataset with the same corpus (and
    :func:`~titanmem.data.corpora.corpus_revision`), corpus_path, tokenizer, val_fraction and seed, it
    is returned untouched; different settings raise ValueError. Shard files are fsynced and the folder
    appears in one rename.
    """
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a str or os.PathLike, got {type(out_dir).__name__} ({out_dir!r})")
    val_fraction = check_fraction("val_fraction", val_fraction)
    check_int("seed", seed, minimum=-(2**63))
    check_int("shard_tokens", shard_tokens, minimum=1)
    out_dir = Path(out_dir).expanduser().absolute()
    tok = get_tokenizer(tokenizer)
    # corpus_path is stored absolute so that re-running from another working directory still matches.
    where = None if corpus_path is None else str(Path(corpus_path).expanduser().absolute())
    wanted = {"corpus": corpus, "corpus_revision": corpus_revision(corpus), "corpus_path": where, "tokenizer": tok.name,
              "val_fraction": val_fraction, "seed": seed}
    if _existing(out_dir, wanted):
        return out_dir

    docs = load_corpus(corpus, corpus_path)
    if not docs:
        raise CorpusNotFoundError(f"corpus {corpus!r} at {corpus_path} has no non-empty documents")
    train, val = split_documents(docs, val_fraction, seed)
    dtype = _dtype(tok.vocab_size)
    sep = _encode(tok, SEPARATOR)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed run that had our pid
    tmp.mkdir()
    bar = None
    try:
        if progress:
            from tqdm import tqdm  # lazy: only needed for the bar

            bar = tqdm(total=len(docs), desc=f"tokenizing {corpus}", unit="doc")
        splits = {name: _write_split(tmp, name, part, tok, sep, dtype, shard_tokens, bar)
                  for name, part in zip(SPLITS, (train, val))}
        meta = {"format": FORMAT, **wanted, "vocab_size": tok.vocab_size, "dtype": dtype.name, "splits": splits}
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        fsync_path(tmp)
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # an empty folder made beforehand (e.g. by a launcher) is not a dataset
        try:
            os.replace(tmp, out_dir)
        except OSError:
            # Another process (e.g. another rank) published the same dataset first: theirs is as good.
            if _existing(out_dir, wanted):
                return out_dir
            raise
        fsync_path(out_dir.parent)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


class TokenDataset:
    """A folder written by :func:`prepare_dataset`, checked against its ``meta.json`` on open.

    ``split(name)`` memory-maps the shards read-only. A split of several shards is concatenated into
    one in-memory array (a copy: fine for corpora of a few hundred million tokens, which is all this
    library prepares); a single shard stays memory-mapped.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
        self.path = Path(path).expanduser()
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise CorpusNotFoundError(
                f"no prepared dataset at {self.path} (missing meta.json)",
                "run `titanmem prepare` first (or titanmem.data.prepare_dataset)",
            )
        self.meta: dict[str, Any] = json.loads(meta_file.read_text(encoding="utf-8"))
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_file} has format {self.meta.get('format')!r}, expected {FORMAT}; prepare it again")
        self.vocab_size: int = int(self.meta["vocab_size"])
        self.tokenizer: str = str(self.meta["tokenizer"])
        self.dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        for split in self.meta["splits"].values():
            for shard in split["shards"]:
                file = self.path / shard["file"]
                if not file.is_file():
                    raise FileNotFoundError(f"shard {file} listed in {meta_file} is missing; prepare the dataset again")
                want, seen = shard["tokens"] * self.dtype.itemsize, file.stat().st_size
                if seen != want:
                    raise ValueError(f"shard {file} has {seen} bytes, expected {want} ({shard['tokens']} tokens of "
                                     f"{self.dtype.name}): it is truncated or altered; prepare the dataset again")
        self._cache: dict[str, np.ndarray] = {}

    def _shards(self, name: str) -> list[dict[str, Any]]:
        if name not in self.meta["splits"]:
            raise ValueError(f"name must be one of the splits {sorted(self.meta['splits'])}, got {name!r}")
        return self.meta["splits"][name]["shards"]

    def split(self, name: str) -> np.ndarray:
        """The whole split ``name`` as a read-only 1-D array of token ids (dtype of ``meta["dtype"]``)."""
        if name not in self._cache:
            parts = [np.memmap(self.path / s["file"], dtype=self.dtype, mode="r", shape=(s["tokens"],))
                     for s in self._shards(name) if s["tokens"]]
            if len(parts) == 1:
                arr = parts[0]
            else:
                arr = np.concatenate(parts) if parts else np.zeros(0, dtype=self.dtype)
                arr.flags.writeable = False
            self._cache[name] = arr
        return self._cache[name]

    def bytes_per_token(self, name: str) -> float:
        """UTF-8 bytes of text per token in split ``name`` (converts loss per token into bits per byte)."""
        self._shards(name)
        info = self.meta["splits"][name]
        if not info["tokens"]:
            raise ValueError(f"split {name!r} of {self.path} has no tokens")
        return info["bytes"] / info["tokens"]
