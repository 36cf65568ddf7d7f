"""Sequence-classification tasks built from real genomes, written and read in the Genomic Benchmarks layout.

The layout (Grešová et al. 2023, the benchmark of Titans' Table 4) is one folder per task with
``train/<class>/<n>.txt`` and ``test/<class>/<n>.txt``, one sequence per file. :func:`load_benchmark`
reads any folder of that layout, so a user who has the Genomic Benchmarks data can run it; the
builders below make three tasks whose labels come from real annotations (none of them is a Table 4
task):

- ``human-vs-worm``: 200 bp windows of human chrX vs *C. elegans* chrX (the benchmark's own demo
  protocol, ``demo_human_or_worm``). Test windows come from the last ``test_fraction`` of each
  chromosome, training windows from the rest.
- ``coding-vs-intergenic``: 200 bp windows of *E. coli* K-12 (NC_000913) lying wholly inside CDS
  features vs wholly outside every gene, RNA or repeat feature, read from the GenBank annotation.
  Test windows come from the last ``test_fraction`` of the genome. The genome's forward strand is
  used for both classes, so strand is not a cue.
- ``oct4-vs-mafk``: the 200 bp Oct4 and MafK binding regions shipped in PyPI janggu; regions on
  chr8 and chr9 are the test split (the chromosomes DeepSEA held out).

Every task is balanced (each class gets the same number of sequences in each split), windows never
overlap one another (so no training window overlaps a test one), windows with N are left out, and
the same seed gives the same files.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import check_fraction, check_int
from ..data.genomes import clean_sequence, package_files, janggu_files, read_fasta, read_genbank

__all__ = [
    "SPLITS", "TASKS", "SequenceTask", "build_task", "coding_vs_intergenic", "human_vs_worm", "load_benchmark",
    "oct4_vs_mafk", "window_starts", "write_benchmark",
]

SPLITS = ("train", "test")
# Features of a GenBank record that make a base "genic" for the intergenic class.
_GENIC = ("gene", "CDS", "rRNA", "tRNA", "ncRNA", "misc_RNA", "tmRNA", "repeat_region", "mobile_element")


@dataclass(frozen=True)
class SequenceTask:
    """A classification task: ``classes`` (label ``i`` is ``classes[i]``), ``(sequence, label)`` pairs per split.

    The builders name classes in sorted order, the order :func:`load_benchmark` gives their folders.

    ``info`` records how the task was made (sources, seed, window, counts); it is written beside the
    sequences as ``metadata.json``.
    """

    name: str
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> tuple[tuple[str, int], ...]:
        """The pairs of split ``name`` (``"train"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.train if name == "train" else self.test

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: sequences}}``."""
        return {s: {c: sum(1 for _, y in self.split(s) if y == i) for i, c in enumerate(self.classes)}
                for s in SPLITS}


def window_starts(allowed: np.ndarray, length: int) -> np.ndarray:
    """Starts of non-overlapping windows of ``length`` bases lying wholly where ``allowed`` (one bool per base) holds.

    Within each run of allowed bases the windows are packed from the run's start (``p, p + length,
    ...``), which is what taking every fitting start left to right whenever it begins after the
    last window taken gives (tests compare the two); computed per run, not per base.
    """
    check_int("length", length, 1)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], allowed.astype(np.int8), [0]))))
    runs = [np.arange(p, q - length + 1, length) for p, q in zip(edges[0::2].tolist(), edges[1::2].tolist())
            if q - p >= length]
    return np.concatenate(runs).astype(np.int64) if runs else np.zeros(0, dtype=np.int64)


def _windows(sequence: str, allowed: np.ndarray, length: int, lo: int, hi: int) -> list[int]:
    """Non-overlapping window starts lying wholly inside ``[lo, hi)`` where ``allowed`` holds and no base is N."""
    ok = allowed[lo:hi] & (np.frombuffer(sequence[lo:hi].encode("ascii"), dtype=np.uint8) != ord("N"))
    return (window_starts(ok, length) + lo).tolist()


def _pick(rng: random.Random, items: Sequence[Any], count: int) -> list[Any]:
    """``count`` of ``items`` drawn by ``rng``, kept in their order (the genome's order for windows)."""
    return [items[i] for i in sorted(rng.sample(range(len(items)), count))]


def _balanced(rng: random.Random, per_class: Sequence[Sequence[Any]], limit: int | None) -> list[list[Any]]:
    """The same number from each class: the smallest class's size, or ``limit`` if that is smaller."""
    count = min(len(c) for c in per_class)
    count = count if limit is None else min(count, limit)
    return [_pick(rng, c, count) for c in per_class]


def _check_common(length: int, seed: int, test_fraction: float) -> None:
    check_int("length", length, 1)
    check_int("seed", seed, 0)
    if not 0 < check_fraction("test_fraction", test_fraction) < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")


def _pairs(rows: Sequence[Sequence[str]]) -> tuple[tuple[str, int], ...]:
    return tuple((s, label) for label, seqs in enumerate(rows) for s in seqs)


def human_vs_worm(path: str | os.PathLike | None = None, *, length: int = 200, train_per_class: int = 5000,
                  test_per_class: int = 1000, seed: int = 0, test_fraction: float = 0.2) -> SequenceTask:
    """Windows of human chrX (``smalt-examples``) vs *C. elegans* chrX (``r-bioc-bsgenome``).

    Args:
        path: the folder of unpacked packages (default :func:`titanmem.data.genomes.genome_dir`).
        length: bases per window; train_per_class, test_per_class: windows per class and split.
        seed: picks the windows among all non-overlapping N-free ones.
        test_fraction: the last part of each chromosome that test windows come from.

    Raises:
        CorpusNotFoundError: a genome is not fetched (the message ends with the fetch command).
        ValueError: a chromosome is too short for the counts asked.
    """
    _check_common(length, seed, test_fraction)
    check_int("train_per_class", train_per_class, 1)
    check_int("test_per_class", test_per_class, 1)
    rng = random.Random(seed)
    genomes = {"human": package_files("smalt-examples", "dna-human", path)[0],
               "worm": package_files("r-bioc-bsgenome", "dna-worm", path)[0]}
    rows: dict[str, list[list[str]]] = {"train": [], "test": []}
    for cls, file in genomes.items():
        sequence = "".join(r.sequence for r in read_fasta(file))
        boundary = int(len(sequence) * (1 - test_fraction))
        allowed = np.ones(len(sequence), dtype=bool)
        for split, (lo, hi), count in (("train", (0, boundary), train_per_class),
                                       ("test", (boundary, len(sequence)), test_per_class)):
            starts = _windows(sequence, allowed, length, lo, hi)
            if len(starts) < count:
                raise ValueError(f"{split}_per_class must be <= {len(starts)} (the {cls} {split} windows), got {count}")
            rows[split].append([sequence[s : s + length] for s in _pick(rng, starts, count)])
    info = {"sources": {k: str(v) for k, v in genomes.items()}, "length": length, "seed": seed,
            "test_fraction": test_fraction, "split": "test windows from the last test_fraction of each chromosome"}
    return SequenceTask("human-vs-worm", ("human", "worm"), _pairs(rows["train"]), _pairs(rows["test"]), info)


def _feature_mask(record: Any, types: Sequence[str]) -> np.ndarray:
    mask = np.zeros(len(record.seq), dtype=bool)
    for feature in record.features:
        if feature.type in types:
            for part in feature.location.parts:
                mask[int(part.start) : int(part.end)] = True
    return mask


def coding_vs_intergenic(path: str | os.PathLike | None = None, *, length: int = 200, seed: int = 0,
                         test_fraction: float = 0.2, max_per_class: int | None = None,
                         genbank: str | os.PathLike | None = None) -> SequenceTask:
    """Windows of *E. coli* K-12 wholly in CDS features (``coding``) vs wholly between genes (``intergenic``).

    Every non-overlapping intergenic window is used (they are the scarce class: about 1,250 of 200 bp
    in the 4.6 Mbp genome), and as many coding windows are drawn by ``seed``; ``max_per_class``
    caps both. ``genbank``: another annotated GenBank file instead of ``cct-examples``' NC_000913
    (its first record is used).

    Raises:
        CorpusNotFoundError: ``cct-examples`` is not fetched.
        ValueError: a split has no window of some class.
    """
    _check_common(length, seed, test_fraction)
    if max_per_class is not None:
        check_int("max_per_class", max_per_class, 1)
    rng = random.Random(seed)
    file = Path(genbank) if genbank is not None else package_files("cct-examples", "dna-ecoli", path)[0]
    record = read_genbank(file)[0]
    sequence = clean_sequence(str(record.seq))
    coding, genic = _feature_mask(record, ("CDS",)), _feature_mask(record, _GENIC)
    boundary = int(len(sequence) * (1 - test_fraction))
    splits = {}
    for split, (lo, hi) in (("train", (0, boundary)), ("test", (boundary, len(sequence)))):
        per_class = [_windows(sequence, coding, length, lo, hi), _windows(sequence, ~genic, length, lo, hi)]
        if not all(per_class):
            raise ValueError(f"the {split} split of {file} has no {length} bp window of some class "
                             f"({[len(c) for c in per_class]} coding/intergenic); use a shorter length")
        splits[split] = [[sequence[s : s + length] for s in c] for c in _balanced(rng, per_class, max_per_class)]
    info = {"source": str(file), "record": record.id, "length": length, "seed": seed, "test_fraction": test_fraction,
            "split": "test windows from the last test_fraction of the genome",
            "coding": "wholly inside CDS features", "intergenic": f"wholly outside {', '.join(_GENIC)} features"}
    return SequenceTask("coding-vs-intergenic", ("coding", "intergenic"), _pairs(splits["train"]),
                        _pairs(splits["test"]), info)


def oct4_vs_mafk(path: str | os.PathLike | None = None, *, seed: int = 0,
                 test_chromosomes: Sequence[str] = ("chr8", "chr9")) -> SequenceTask:
    """Oct4 (janggu ``sample.fa``) vs MafK (``sample2.fa``) binding regions, split by chromosome.

    Records are named ``chrN:start-end``; those on ``test_chromosomes`` form the test split. Each
    split is balanced by drawing (``seed``) as many regions of the larger class as the smaller has.

    Raises:
        CorpusNotFoundError: the janggu files are not fetched (``titanmem data dna-janggu``).
    """
    check_int("seed", seed, 0)
    rng = random.Random(seed)
    held = set(test_chromosomes)
    oct4, mafk = janggu_files(path)
    splits: dict[str, list[list[str]]] = {"train": [], "test": []}
    for file in (mafk, oct4):  # labels follow the class names' order, as load_benchmark reads them
        records = [r for r in read_fasta(file) if "N" not in r.sequence]
        splits["train"].append([r.sequence for r in records if r.id.split(":")[0] not in held])
        splits["test"].append([r.sequence for r in records if r.id.split(":")[0] in held])
    train, test = (_balanced(rng, splits[s], None) for s in SPLITS)
    info = {"sources": {"mafk": str(mafk), "oct4": str(oct4)}, "seed": seed, "test_chromosomes": sorted(held),
            "split": "regions on the test chromosomes form the test split"}
    return SequenceTask("oct4-vs-mafk", ("mafk", "oct4"), _pairs(train), _pairs(test), info)


TASKS: dict[str, Callable[..., SequenceTask]] = {
    "human-vs-worm": human_vs_worm, "coding-vs-intergenic": coding_vs_intergenic, "oct4-vs-mafk": oct4_vs_mafk,
}


def build_task(name: str, path: str | os.PathLike | None = None, seed: int = 0) -> SequenceTask:
    """Task ``name`` of :data:`TASKS` with its defaults and ``seed``, from the genomes under ``path``."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {name!r}")
    return TASKS[name](path, seed=seed)


def write_benchmark(task: SequenceTask, root: str | os.PathLike) -> Path:
    """Write ``task`` as ``root/<task.name>/{train,test}/<class>/<n>.txt`` plus ``metadata.json``; the folder.

    The folder is written beside its final place and renamed into it (replacing an older one), so it
    is never half written.
    """
    target = Path(root).expanduser() / task.name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{task.name}-", dir=target.parent))
    try:
        for split in SPLITS:
            numbers = {c: 0 for c in task.classes}
            for c in task.classes:
                (staging / split / c).mkdir(parents=True)
            for sequence, label in task.split(split):
                cls = task.classes[label]
                (staging / split / cls / f"{numbers[cls]}.txt").write_text(sequence)
                numbers[cls] += 1
        meta = {"name": task.name, "classes": list(task.classes), "counts": task.counts(), **task.info}
        (staging / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _number(path: Path) -> tuple[int, str]:
    return (int(path.stem), "") if path.stem.isdigit() else (-1, path.stem)


def load_benchmark(path: str | os.PathLike) -> SequenceTask:
    """The task in folder ``path`` of the Genomic Benchmarks layout (``{train,test}/<class>/*.txt``).

    Classes are the class folders in name order (label ``i`` is the ``i``-th); files are read in
    numeric order of their names where they are numbers. Each file is one sequence (whitespace
    removed, cleaned as :func:`~titanmem.data.genomes.clean_sequence`).

    Raises:
        FileNotFoundError: ``path`` is not a folder.
        ValueError: a split folder is missing, the splits have different classes, or a class is empty.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"path must be a Genomic Benchmarks task folder (train/<class>/*.txt, "
                                f"test/<class>/*.txt), got {str(root)!r}: not a folder")
    classes: dict[str, list[str]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise ValueError(f"path {str(root)!r} must hold {split}/<class>/*.txt (Genomic Benchmarks layout); "
                             f"no {split}/ folder")
        classes[split] = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if classes["train"] != classes["test"] or len(classes["train"]) < 2:
        raise ValueError(f"train and test of {str(root)!r} must have the same two or more class folders, got "
                         f"{classes['train']} and {classes['test']}")
    names = tuple(classes["train"])
    pairs = {}
    for split in SPLITS:
        rows = []
        for label, cls in enumerate(names):
            files = sorted((root / split / cls).glob("*.txt"), key=_number)
            if not files:
                raise ValueError(f"class folder {str(root / split / cls)!r} holds no .txt sequences")
            rows += [(clean_sequence("".join(f.read_text().split())), label) for f in files]
        pairs[split] = tuple(rows)
    meta = root / "metadata.json"
    info = json.loads(meta.read_text()) if meta.is_file() else {}
    return SequenceTask(root.name, names, pairs["train"], pairs["test"], info)
