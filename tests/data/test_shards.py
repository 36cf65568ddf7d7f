"""Token shards: exact contents, written once and atomically, checked on open."""

from __future__ import annotations

import json

import numpy as np
import pytest

from titanmem.data import (CorpusNotFoundError, TokenDataset, get_tokenizer, load_corpus, prepare_dataset,
                           split_documents)
from titanmem.data.shards import _dtype

TEXTS = {
    "a.txt": "First document.\nWith two lines.",
    "b.txt": "Zweites Dokument: café ✓",
    "c/d.txt": "third " * 50,
    "e.txt": "fourth one",
    "f.txt": "fifth, the last",
}


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    for name, text in TEXTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def _expected(tokenizer, names: list[str]) -> tuple[np.ndarray, str]:
    """Tokens and text of ``names`` joined by the separator, computed independently of the shards."""
    sep = tokenizer.encode("\n\n")
    ids: list[int] = []
    for i, name in enumerate(names):
        ids += (sep if i else []) + tokenizer.encode(TEXTS[name])
    return np.array(ids), "\n\n".join(TEXTS[n] for n in names)


def test_shards_hold_the_split_documents_joined_by_the_separator(tmp_path, corpus):
    out = prepare_dataset(tmp_path / "ds", "text", "byte", corpus_path=corpus, val_fraction=0.3, seed=1)
    ds = TokenDataset(out)
    meta = json.loads((out / "meta.json").read_text())
    train, val = split_documents(load_corpus("text", corpus), 0.3, seed=1)
    assert meta["splits"]["train"]["documents"] == [d.name for d in train]
    assert meta["splits"]["val"]["documents"] == [d.name for d in val] and val
    tok = get_tokenizer("byte")
    for split in ("train", "val"):
        ids, text = _expected(tok, meta["splits"][split]["documents"])
        arr = ds.split(split)
        assert arr.dtype == np.uint16 and not arr.flags.writeable
        np.testing.assert_array_equal(arr, ids)
        assert meta["splits"][split]["tokens"] == len(ids)
        assert meta["splits"][split]["bytes"] == len(text.encode("utf-8"))
        assert ds.bytes_per_token(split) == 1.0
    assert (meta["format"], meta["corpus"], meta["tokenizer"], meta["dtype"]) == (1, "text", "byte", "uint16")
    assert (meta["vocab_size"], meta["val_fraction"], meta["seed"]) == (256, 0.3, 1)
    assert meta["corpus_path"] == str(corpus) and ds.vocab_size == 256 and ds.tokenizer == "byte"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "ds"]  # no temporary folder left


def test_hf_tokenizer_shards_hold_its_exact_ids(tmp_path, corpus):
    from tests.data.test_tokenizers import _train_hf

    _train_hf(tmp_path / "tokenizer.json")
    out = prepare_dataset(tmp_path / "ds", "text", str(tmp_path / "tokenizer.json"), corpus_path=corpus,
                          val_fraction=0.0)
    ds = TokenDataset(out)
    tok = get_tokenizer(ds.tokenizer)
    ids, text = _expected(tok, sorted(TEXTS))
    np.testing.assert_array_equal(ds.split("train"), ids)
    assert ds.split("val").size == 0 and tok.decode(ds.split("train").tolist()) == text
    assert ds.bytes_per_token("train") == len(text.encode()) / len(ids) > 1


def test_small_shards_are_concatenated_in_order(tmp_path, corpus):
    out = prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.0, shard_tokens=64)
    meta = json.loads((out / "meta.json").read_text())
    shards = meta["splits"]["train"]["shards"]
    assert len(shards) > 3 and [s["file"] for s in shards] == [f"train_{i:03d}.bin" for i in range(len(shards))]
    assert all(s["tokens"] == 64 for s in shards[:-1]) and 0 < shards[-1]["tokens"] <= 64
    assert all((out / s["file"]).stat().st_size == 2 * s["tokens"] for s in shards)
    ids, _ = _expected(get_tokenizer("byte"), sorted(TEXTS))
    np.testing.assert_array_equal(TokenDataset(out).split("train"), ids)
    assert np.frombuffer((out / "train_001.bin").read_bytes(), "<u2").tolist() == ids[64:128].tolist()


def test_rerun_returns_without_rewriting_and_other_settings_are_refused(tmp_path, corpus):
    out = prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.3)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.3) == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    with pytest.raises(ValueError, match="seed=0, not seed=3.*another folder"):
        prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.3, seed=3)
    with pytest.raises(ValueError, match="val_fraction"):
        prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.1)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(ValueError, match="not a prepared dataset"):
        prepare_dataset(tmp_path / "junk", "text", corpus_path=corpus)


def test_a_dataset_of_an_older_corpus_revision_is_refused_not_reused(tmp_path, corpus, monkeypatch):
    from titanmem.data import corpora

    out = prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.3)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["corpus_revision"] == 1
    # A dataset written before revisions were recorded counts as revision 1 and is still reused ...
    del meta["corpus_revision"]
    (out / "meta.json").write_text(json.dumps(meta))
    assert prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.3) == out
    # ... until the corpus's builder changes (as the genomes' did when assembly gaps were dropped).
    monkeypatch.setitem(corpora.CORPUS_REVISIONS, "text", 2)
    with pytest.raises(ValueError, match="corpus_revision=1, not corpus_revision=2.*another folder"):
        prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.3)
    assert corpora.corpus_revision("dna-human") == 2 and corpora.corpus_revision("shakespeare") == 1


def test_truncated_or_missing_data_is_reported_on_open(tmp_path, corpus):
    with pytest.raises(CorpusNotFoundError, match="titanmem prepare"):
        TokenDataset(tmp_path / "nothing")
    out = prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.0, shard_tokens=64)
    shard = out / "train_002.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(ValueError, match="train_002.bin.*truncated"):
        TokenDataset(out)


def test_failures_leave_no_folder_behind(tmp_path):
    with pytest.raises(CorpusNotFoundError):
        prepare_dataset(tmp_path / "ds", "text", corpus_path=tmp_path / "missing")
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        prepare_dataset(tmp_path / "ds", "text", "words", corpus_path=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_and_dtype_choice(tmp_path, corpus, capsys):
    prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.0, progress=True)
    assert "5/5" in capsys.readouterr().err
    assert (_dtype(65536).name, _dtype(65537).name) == ("uint16", "uint32")


def test_a_crash_while_writing_publishes_nothing(tmp_path, corpus, monkeypatch):
    import titanmem.data.shards as shards

    calls = []

    def failing(tok, text):
        calls.append(text)
        if len(calls) > 3:  # after a shard or two was written into the temporary folder
            raise RuntimeError("killed")
        return real(tok, text)

    real = shards._encode
    monkeypatch.setattr(shards, "_encode", failing)
    with pytest.raises(RuntimeError, match="killed"):
        prepare_dataset(tmp_path / "ds", "text", corpus_path=corpus, val_fraction=0.0, shard_tokens=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
