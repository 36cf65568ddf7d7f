"""Tokenizers: exact round trips, spec parsing, and clear failures without network or packages."""

from __future__ import annotations

import os
import sys
import types

import pytest

from titanmem.data import (ByteTokenizer, CorpusNotFoundError, HFTokenizer, TiktokenTokenizer, Tokenizer,
                           get_tokenizer)

TEXT = "To be, or not to be: café, naïve, 世界 🎉\nline two\ttab"


def _train_hf(path) -> None:
    """A tiny byte-level BPE with a <bos> post-processor and an added special token, saved to ``path``."""
    from tokenizers import Tokenizer as HF
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = HF(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<bos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["to be or not to be", "that is the question", "café naïve"] * 20, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    tok.add_special_tokens(["<extra>"])
    tok.save(str(path))


@pytest.fixture
def hf_json(tmp_path):
    path = tmp_path / "tok" / "tokenizer.json"
    path.parent.mkdir()
    _train_hf(path)
    return path


def test_byte_tokenizer_is_utf8_and_round_trips_non_ascii():
    tok = ByteTokenizer()
    ids = tok.encode(TEXT)
    assert ids == list(TEXT.encode("utf-8")) and len(ids) > len(TEXT)
    assert tok.decode(ids) == TEXT
    assert (tok.name, tok.vocab_size) == ("byte", 256) and isinstance(tok, Tokenizer)
    assert tok.decode(list("é".encode())[:1]) == "\ufffd"  # a window cut inside a character


def test_hf_tokenizer_round_trips_without_special_tokens(hf_json):
    from tokenizers import Tokenizer as HF

    tok = HFTokenizer(hf_json)
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    assert 0 not in ids  # the <bos> the post-processor would add
    assert len(tok.encode("to be or not to be")) < len("to be or not to be")  # merges were learned
    assert tok.name == f"hf:{hf_json.resolve()}" and get_tokenizer(tok.name).encode(TEXT) == ids
    assert tok.vocab_size == HF.from_file(str(hf_json)).get_vocab_size(with_added_tokens=True)
    assert tok.encode("<extra>") == [tok.vocab_size - 1]


def test_get_tokenizer_parses_the_three_forms(hf_json, monkeypatch):
    assert isinstance(get_tokenizer("byte"), ByteTokenizer)
    assert get_tokenizer(f"hf:{hf_json}").name == f"hf:{hf_json.resolve()}"
    monkeypatch.chdir(hf_json.parent)
    assert get_tokenizer("tokenizer.json").name == f"hf:{hf_json.resolve()}"  # bare .json path, made absolute


@pytest.mark.parametrize("spec", ["bpe", "hf:", "tiktoken:", "BYTE", ""])
def test_get_tokenizer_rejects_unknown_specs_listing_the_forms(spec):
    with pytest.raises(ValueError, match=r"tokenizer must be one of 'byte', 'hf:<path.*'tiktoken:<encoding>'"):
        get_tokenizer(spec)


def test_get_tokenizer_errors_for_wrong_types_and_missing_files(tmp_path):
    with pytest.raises(TypeError, match="tokenizer must be a str"):
        get_tokenizer(256)
    with pytest.raises(CorpusNotFoundError, match="missing.json"):
        get_tokenizer(str(tmp_path / "missing.json"))


def test_tiktoken_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` fail
    with pytest.raises(ImportError, match="pip install tiktoken"):
        get_tokenizer("tiktoken:gpt2")


def _fake_tiktoken(monkeypatch, get_encoding) -> None:
    fake = types.ModuleType("tiktoken")
    fake.list_encoding_names = lambda: ["gpt2", "cl100k_base"]
    fake.get_encoding = get_encoding
    monkeypatch.setitem(sys.modules, "tiktoken", fake)


def test_tiktoken_offline_failure_names_the_cache_folder(tmp_path, monkeypatch):
    seen = {}

    def get_encoding(name):
        seen["cache"] = os.environ["TIKTOKEN_CACHE_DIR"]
        raise ConnectionError("no network")

    _fake_tiktoken(monkeypatch, get_encoding)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="sha1") as info:
        get_tokenizer("tiktoken:gpt2", cache_dir=str(tmp_path / "tk"))
    assert seen["cache"] == str(tmp_path / "tk") and str(tmp_path / "tk") in str(info.value)
    with pytest.raises(ValueError, match="encoding must be one of"):
        TiktokenTokenizer("gpt5")


def test_tiktoken_uses_encode_ordinary(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # restored after the test; the tokenizer sets it
    class Enc:
        n_vocab = 50257

        def encode_ordinary(self, text):
            return [ord(c) for c in text]

        def encode(self, text):  # would treat "<|endoftext|>" as special: must not be used
            raise AssertionError("encode_ordinary must be used")

        def decode(self, ids):
            return "".join(map(chr, ids))

    _fake_tiktoken(monkeypatch, lambda name: Enc())
    tok = get_tokenizer("tiktoken:gpt2")
    assert (tok.name, tok.vocab_size) == ("tiktoken:gpt2", 50257) and tok.cache_dir == tmp_path
    assert tok.decode(tok.encode("<|endoftext|>")) == "<|endoftext|>"
