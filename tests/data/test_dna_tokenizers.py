"""Nucleotide and k-mer tokenizers: round trips, unknown bases, ids written by hand, the shard fast path."""

from __future__ import annotations

import gzip
import random

import numpy as np
import pytest

from titanmem.data import KmerTokenizer, NucleotideTokenizer, TokenDataset, get_tokenizer, prepare_dataset
from titanmem.data.genomes import GENOME_PACKAGES


def _random_dna(n: int, seed: int, alphabet: str = "ACGTN\n") -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


def test_specs_name_the_tokenizers():
    assert isinstance(get_tokenizer("dna"), NucleotideTokenizer)
    tok = get_tokenizer("dna-kmer:3")
    assert isinstance(tok, KmerTokenizer) and tok.name == "dna-kmer:3" and tok.k == 3
    for bad in ("dna-kmer:", "dna-kmer:x", "dna-kmer:0", "dna-kmer:9"):
        with pytest.raises(ValueError, match="k must be"):
            get_tokenizer(bad)


def test_nucleotide_ids_written_by_hand():
    tok = NucleotideTokenizer()
    assert tok.vocab_size == 8 and (tok.sep_id, tok.bos_id, tok.pad_id) == (5, 6, 7)
    assert tok.encode("ACGTN\nacgtRy") == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 4]


@pytest.mark.parametrize("spec", ["dna", "dna-kmer:1", "dna-kmer:3", "dna-kmer:6"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_of_clean_text(spec, seed):
    tok = get_tokenizer(spec)
    text = _random_dna(301, seed, "ACGT" * 8 + "N\n")
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)
    np.testing.assert_array_equal(tok.encode_array(text), ids)


@pytest.mark.parametrize("spec", ["dna", "dna-kmer:4"])
def test_unknown_and_lower_case_bases_decode_cleaned(spec):
    tok = get_tokenizer(spec)
    assert tok.decode(tok.encode("acgtRYKMacgt\né")) == "ACGTNNNNACGT\nN"


def test_kmer_ids_written_by_hand():
    tok = KmerTokenizer(2)
    # 16 2-mers (AA=0 ... TT=15), then A C G T N = 16..20, "\n" = 21, <bos> = 22, <pad> = 23.
    assert tok.vocab_size == 24
    # ACGTA: AC=1, GT=11, then A alone; N alone; GG=10; "\n"; T alone.
    assert tok.encode("ACGTANGG\nT") == [1, 11, 16, 20, 10, 21, 19]
    assert tok.encode("") == []


def test_specials_do_not_decode_to_bases():
    for tok in (NucleotideTokenizer(), KmerTokenizer(3)):
        assert tok.decode([tok.bos_id, *tok.encode("ACGTTT"), tok.pad_id]) == "ACGTTT"
        with pytest.raises(ValueError, match="ids must be in"):
            tok.decode([tok.vocab_size])


def test_shards_of_a_genome_count_one_token_per_base(tmp_path):
    member = GENOME_PACKAGES["r-bioc-bsgenome"][1][0]
    fasta = tmp_path / "genomes" / "r-bioc-bsgenome" / member
    fasta.parent.mkdir(parents=True)
    sequence = _random_dna(5000, 3, "ACGT")
    with gzip.open(fasta, "wt") as f:
        f.write(">chrX\n" + "\n".join(sequence[i:i + 60] for i in range(0, len(sequence), 60)) + "\n")
    out = prepare_dataset(tmp_path / "shards", "dna-worm", "dna", corpus_path=tmp_path / "genomes", val_fraction=0.5)
    data = TokenDataset(out)
    # One region (5000 bases < REGION_BASES) -> one document, all in training.
    tokens = np.asarray(data.split("train"))
    assert tokens.size == 5000 and NucleotideTokenizer().decode(tokens.tolist()) == sequence
    assert data.bytes_per_token("train") == 1.0  # so bits per byte are bits per base


def _kmer_reference(text: str, k: int) -> list[int]:
    """The slow twin of KmerTokenizer.encode_array: one character at a time, the rule as written."""
    tok = KmerTokenizer(k)
    kmers = {km: i for i, km in enumerate(tok._kmers)}
    text = text.upper()
    out, i = [], 0
    while i < len(text):
        chunk = text[i : i + k]
        if len(chunk) == k and all(c in "ACGT" for c in chunk):
            out.append(kmers[chunk])
            i += k
        else:
            c = text[i]
            out.append(tok.sep_id if c == "\n" else 4**k + "ACGTN".index(c if c in "ACGT" else "N"))
            i += 1
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_kmer_fast_path_equals_the_reference(k, seed):
    text = _random_dna(257, seed, "ACGT" * 6 + "Nn\nRa")
    assert KmerTokenizer(k).encode_array(text).tolist() == _kmer_reference(text, k)
