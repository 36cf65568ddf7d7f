"""Classification tasks on fixture genomes: balanced, reproducible by seed, test windows never overlap
training ones, labels from the annotation; the Genomic Benchmarks layout written and read back."""

from __future__ import annotations

import gzip
import random

import numpy as np
import pytest

from titanmem.data import CorpusNotFoundError
from titanmem.data.genomes import GENOME_PACKAGES
from titanmem.genomics.tasks import (
    coding_vs_intergenic, human_vs_worm, load_benchmark, oct4_vs_mafk, window_starts, write_benchmark,
)


def _dna(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(n))


def _write(root, package, text):
    path = root / package / GENOME_PACKAGES[package][1][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write(text)


@pytest.fixture
def genomes(tmp_path):
    """A human chrX of 6,000 bases with an N stretch, a worm chrX of 5,000, and an annotated 'E. coli'."""
    human = _dna(3000, 1) + "N" * 50 + _dna(2950, 2)
    worm = _dna(5000, 3)
    _write(tmp_path, "smalt-examples", f">X\n{human}\n")
    _write(tmp_path, "r-bioc-bsgenome", f">chrX\n{worm}\n")
    return tmp_path, human, worm


def _spans(windows, genome):
    """Where each window lies in ``genome`` (the random fixture makes every 20-base window unique)."""
    out = []
    for w in windows:
        start = genome.find(w)
        assert start >= 0 and genome.find(w, start + 1) < 0
        out.append((start, start + len(w)))
    return sorted(out)


def _first_fit(allowed: np.ndarray, length: int) -> list[int]:
    """The slow twin of window_starts: every fitting start, left to right, taken if after the last window."""
    taken, end = [], -1
    for s in range(len(allowed) - length + 1):
        if allowed[s : s + length].all() and s >= end:
            taken.append(s)
            end = s + length
    return taken


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("length", [1, 3, 7])
def test_window_starts_equal_the_first_fit_reference(seed, length):
    allowed = np.random.default_rng(seed).random(200) < 0.8
    assert window_starts(allowed, length).tolist() == _first_fit(allowed, length)


def test_human_vs_worm_is_balanced_reproducible_and_split_without_overlap(genomes):
    root, human, worm = genomes
    task = human_vs_worm(root, length=20, train_per_class=40, test_per_class=10, seed=0)
    assert task.classes == ("human", "worm")
    assert task.counts() == {"train": {"human": 40, "worm": 40}, "test": {"human": 10, "worm": 10}}
    assert all(len(s) == 20 and "N" not in s for s, _ in task.train + task.test)
    for label, genome in enumerate((human, worm)):
        train = _spans([s for s, y in task.train if y == label], genome)
        test = _spans([s for s, y in task.test if y == label], genome)
        spans = sorted(train + test)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "two windows overlap"
        boundary = int(len(genome) * 0.8)
        assert max(e for _, e in train) <= boundary <= min(s for s, _ in test)
    assert human_vs_worm(root, length=20, train_per_class=40, test_per_class=10, seed=0) == task
    assert human_vs_worm(root, length=20, train_per_class=40, test_per_class=10, seed=1).train != task.train


def test_asking_for_more_windows_than_exist_names_the_limit(genomes):
    root, _, _ = genomes
    with pytest.raises(ValueError, match="train_per_class must be <="):
        human_vs_worm(root, length=200, train_per_class=1000, test_per_class=1)


def _genbank(path, sequence, cds, genes):
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    record = SeqRecord(Seq(sequence), id="NC_TEST.1", name="NC_TEST", annotations={"molecule_type": "DNA"})
    record.features = ([SeqFeature(FeatureLocation(s, e, strand=st), type="CDS") for s, e, st in cds]
                       + [SeqFeature(FeatureLocation(s, e, strand=1), type="tRNA") for s, e in genes])
    with gzip.open(path, "wt") as f:
        SeqIO.write(record, f, "genbank")


def test_coding_and_intergenic_windows_follow_the_annotation(tmp_path):
    genome = _dna(4000, 7)
    cds = [(100, 700, 1), (900, 1500, -1), (2000, 2600, 1), (3300, 3900, -1)]
    trna = [(1600, 1700)]
    coding = np.zeros(len(genome), bool)
    genic = np.zeros(len(genome), bool)
    for s, e, _ in cds:
        coding[s:e] = genic[s:e] = True
    for s, e in trna:
        genic[s:e] = True
    path = tmp_path / "x.gbk.gz"
    _genbank(path, genome, cds, trna)
    task = coding_vs_intergenic(genbank=path, length=50, seed=0)
    counts = task.counts()
    assert counts["train"]["coding"] == counts["train"]["intergenic"] > 0
    assert counts["test"]["coding"] == counts["test"]["intergenic"] > 0
    boundary = int(len(genome) * 0.8)
    for split, pairs in (("train", task.train), ("test", task.test)):
        for seq, label in pairs:
            (start, end), = _spans([seq], genome)
            assert (end <= boundary) if split == "train" else (start >= boundary)
            if label == task.classes.index("coding"):
                assert coding[start:end].all()
            else:
                assert not genic[start:end].any()
    assert coding_vs_intergenic(genbank=path, length=50, seed=0) == task


def test_oct4_vs_mafk_splits_by_chromosome_and_balances(tmp_path):
    folder = tmp_path / "janggu"
    folder.mkdir()
    for name, seed, n in (("sample.fa", 100, 12), ("sample2.fa", 200, 9)):
        chroms = ["chr1", "chr8", "chr9", "chr2"]
        records = "".join(f">{chroms[i % 4]}:{i * 100}-{i * 100 + 30}\n{_dna(30, seed + i)}\n" for i in range(n))
        (folder / name).write_text(records)
    task = oct4_vs_mafk(tmp_path, seed=0)
    assert task.classes == ("mafk", "oct4")
    # MafK: 9 records, chr8/chr9 at i = 1, 2, 5, 6 -> 4 test, 5 train; Oct4: 6 test, 6 train -> balanced down.
    assert task.counts() == {"train": {"mafk": 5, "oct4": 5}, "test": {"mafk": 4, "oct4": 4}}
    assert not {s for s, _ in task.train} & {s for s, _ in task.test}
    assert oct4_vs_mafk(tmp_path, seed=0) == task


def test_missing_genomes_say_how_to_fetch_them(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="titanmem data dna-human"):
        human_vs_worm(tmp_path)
    with pytest.raises(CorpusNotFoundError, match="titanmem data dna-ecoli"):
        coding_vs_intergenic(tmp_path)
    with pytest.raises(CorpusNotFoundError, match="titanmem data dna-janggu"):
        oct4_vs_mafk(tmp_path)


def test_benchmark_layout_round_trip(genomes, tmp_path):
    root, _, _ = genomes
    task = human_vs_worm(root, length=20, train_per_class=6, test_per_class=3, seed=2)
    folder = write_benchmark(task, tmp_path / "benchmarks")
    assert sorted(p.name for p in (folder / "train").iterdir()) == ["human", "worm"]
    assert len(list((folder / "test" / "worm").glob("*.txt"))) == 3
    back = load_benchmark(folder)
    assert (back.name, back.classes, back.train, back.test) == (task.name, task.classes, task.train, task.test)
    assert back.info["counts"] == task.counts()
    # Writing again replaces the folder whole.
    write_benchmark(human_vs_worm(root, length=20, train_per_class=2, test_per_class=1, seed=2), tmp_path / "benchmarks")
    assert load_benchmark(folder).counts()["train"] == {"human": 2, "worm": 2}


def test_loader_reads_any_folder_of_the_layout_and_refuses_others(tmp_path):
    for split, cls, n, seq in (("train", "neg", 0, "acgt\n"), ("train", "pos", 0, "TTGA"), ("train", "pos", 10, "GG"),
                               ("train", "pos", 2, "CC"), ("test", "neg", 0, "AANA"), ("test", "pos", 0, "CCCC")):
        (tmp_path / "t" / split / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / "t" / split / cls / f"{n}.txt").write_text(seq)
    task = load_benchmark(tmp_path / "t")
    assert task.classes == ("neg", "pos")
    assert task.train == (("ACGT", 0), ("TTGA", 1), ("CC", 1), ("GG", 1))  # numeric file order
    assert task.test == (("AANA", 0), ("CCCC", 1))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_benchmark(tmp_path / "none")
    (tmp_path / "u" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no test/ folder"):
        load_benchmark(tmp_path / "u")
    (tmp_path / "u" / "test" / "b").mkdir(parents=True)
    with pytest.raises(ValueError, match="same two or more class folders"):
        load_benchmark(tmp_path / "u")
