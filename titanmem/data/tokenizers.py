"""Tokenizers named by a spec string that recreates them: ``byte``, ``hf:<tokenizer.json>``, ``tiktoken:<encoding>``,
``dna`` (one token per nucleotide) and ``dna-kmer:<k>`` (non-overlapping k-mers).

The spec is stored with the token shards, so a model's data can always be decoded with the tokenizer
it was made with. Only local files are read: nothing is fetched from a model hub at run time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import product
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .documents import CorpusNotFoundError

__all__ = ["ByteTokenizer", "HFTokenizer", "KmerTokenizer", "NucleotideTokenizer", "TiktokenTokenizer", "Tokenizer",
           "get_tokenizer"]

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


# DNA: the four bases and N, then the special tokens. "\n" (between records and documents) is the
# separator; "<bos>" starts a sequence given to a classifier and "<pad>" is never produced by encode.
_BASES = "ACGTN"
_DNA_SPECIALS = ("\n", "<bos>", "<pad>")


def _dna_bytes(text: str) -> np.ndarray:
    """``text`` as upper-case ASCII codes; a character outside ASCII becomes ``?`` (read as N)."""
    return np.frombuffer(text.upper().encode("ascii", errors="replace"), dtype=np.uint8)


class NucleotideTokenizer:
    """One token per nucleotide: ``A C G T N`` are ids 0-4, then ``"\n"`` (separator), ``<bos>``, ``<pad>``.

    Every character other than A, C, G, T (either case) and ``"\n"`` encodes as ``N`` (IUPAC codes,
    soft-masked lower case is upper-cased first), so any text encodes and a cleaned sequence
    (:func:`titanmem.data.genomes.clean_sequence`) round-trips exactly. One token is one base, so bits
    per byte of the token shards are bits per base.
    """

    name = "dna"
    vocab_size = len(_BASES) + len(_DNA_SPECIALS)
    sep_id = len(_BASES)
    bos_id = len(_BASES) + 1
    pad_id = len(_BASES) + 2

    def __init__(self) -> None:
        table = np.full(256, _BASES.index("N"), dtype=np.int64)
        for i, base in enumerate("ACGT"):
            table[ord(base)] = i
        table[ord("\n")] = self.sep_id
        self._table = table

    def encode_array(self, text: str) -> np.ndarray:
        """Token ids of ``text`` as an int64 array (the fast path the token shards use)."""
        return self._table[_dna_bytes(text)]

    def complement_table(self) -> np.ndarray:
        """``table[i]``: the id of the base pairing with id ``i`` (A<->T, C<->G; N and the specials map to
        themselves). Reversing a row of ids and mapping it through the table reads the other strand."""
        table = np.arange(self.vocab_size, dtype=np.int64)
        table[:4] = [3, 2, 1, 0]
        return table

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (see the class docstring for unknown characters)."""
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int]) -> str:
        """The bases of ``ids``; ``<bos>`` and ``<pad>`` are left out, the separator is ``"\n"``.

        Raises ``ValueError`` for an id outside ``[0, vocab_size)``.
        """
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids must be in [0, {self.vocab_size}), got {i}")
            out.append(_BASES[i] if i < len(_BASES) else ("\n" if i == self.sep_id else ""))
        return "".join(out)


class KmerTokenizer:
    """Non-overlapping k-mers of A, C, G, T, read left to right (the Nucleotide Transformer's rule).

    Ids ``0 .. 4**k - 1`` are the k-mers in lexicographic order; then the five single nucleotides
    ``A C G T N``, then ``"\n"``, ``<bos>``, ``<pad>``. Within each run of A/C/G/T the k-mers are read
    from the run's start and the last ``len % k`` bases become single-nucleotide tokens, as does every
    N (any other character reads as N, as in :class:`NucleotideTokenizer`), so decoding gives the
    cleaned text back exactly.
    """

    def __init__(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 8:
            raise ValueError(f"k must be an int in [1, 8] (4**k k-mers), got {k!r}")
        self.k = k
        self.name = f"dna-kmer:{k}"
        self._kmers = ["".join(p) for p in product("ACGT", repeat=k)]
        self._single = 4**k
        self.sep_id = self._single + len(_BASES)
        self.bos_id, self.pad_id = self.sep_id + 1, self.sep_id + 2
        self.vocab_size = self.sep_id + len(_DNA_SPECIALS)
        self._codes = NucleotideTokenizer()._table  # byte -> 0-3 for ACGT, 4 for N, 5 for "\n"

    def encode_array(self, text: str) -> np.ndarray:
        """Token ids of ``text`` as an int64 array."""
        codes = self._codes[_dna_bytes(text)]
        out: list[np.ndarray] = []
        is_base = codes < 4
        # Boundaries of the runs of A/C/G/T; everything between runs is one token per character.
        edges = np.flatnonzero(np.diff(np.concatenate(([False], is_base, [False])).astype(np.int8)))
        cursor = 0
        for start, end in zip(edges[0::2], edges[1::2]):
            out.append(self._others(codes[cursor:start]))
            run = codes[start:end]
            whole = (len(run) // self.k) * self.k
            if whole:
                # A k-mer's id is its bases read as a number in base 4, the first base most significant.
                digits = run[:whole].reshape(-1, self.k)
                out.append(digits @ (4 ** np.arange(self.k - 1, -1, -1, dtype=np.int64)))
            out.append(self._single + run[whole:])
            cursor = end
        out.append(self._others(codes[cursor:]))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _others(self, codes: np.ndarray) -> np.ndarray:
        # N -> the single-nucleotide N token, "\n" -> the separator (codes 4 and 5 map in order).
        return self._single + codes

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int]) -> str:
        """The bases of ``ids``; ``<bos>`` and ``<pad>`` are left out. ``ValueError`` for an id out of range."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids must be in [0, {self.vocab_size}), got {i}")
            if i < self._single:
                out.append(self._kmers[i])
            elif i < self.sep_id:
                out.append(_BASES[i - self._single])
            elif i == self.sep_id:
                out.append("\n")
        return "".join(out)


_FORMS = ("'byte', 'hf:<path to tokenizer.json>' (or any path ending in .json), 'tiktoken:<encoding>', 'dna', "
          "'dna-kmer:<k>'")


def get_tokenizer(spec: str, cache_dir: str | None = None) -> Tokenizer:
    """The tokenizer named by ``spec``; ``cache_dir`` is tiktoken's cache folder (see TiktokenTokenizer)."""
    if not isinstance(spec, str):
        raise TypeError(f"tokenizer must be a str spec ({_FORMS}), got {type(spec).__name__} ({spec!r})")
    if spec == "byte":
        return ByteTokenizer()
    if spec == "dna":
        return NucleotideTokenizer()
    if spec.startswith("dna-kmer:"):
        k = spec[len("dna-kmer:"):]
        if not k.isdigit():
            raise ValueError(f"tokenizer must be one of {_FORMS}, got {spec!r} (k must be an integer)")
        return KmerTokenizer(int(k))
    if spec.startswith("hf:") and spec[3:]:
        return HFTokenizer(spec[3:])
    if spec.startswith("tiktoken:") and spec[9:]:
        return TiktokenTokenizer(spec[9:], cache_dir=cache_dir)
    if spec.endswith(".json") and not spec.startswith(("hf:", "tiktoken:")):
        return HFTokenizer(spec)
    raise ValueError(f"tokenizer must be one of {_FORMS}, got {spec!r}")
