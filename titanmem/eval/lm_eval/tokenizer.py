"""Tokenizers that ``AutoTokenizer`` loads, written into a model folder for lm-eval's ``hf`` model.

The byte tokenizer (:class:`titanmem.data.ByteTokenizer`, ids = UTF-8 byte values) is rebuilt with the
``tokenizers`` library: a byte-level pre-tokenizer (no regex split, no prefix space) maps each byte to
one printable character, and a merge-free BPE over the 256 characters gives each byte its own value as
id. Its decoder turns them back into bytes (invalid UTF-8 becomes U+FFFD, as ``ByteTokenizer`` does).

Byte 0 (NUL, never seen in text) doubles as end-of-text and padding token, so ``eos_token_id`` and
``pad_token_id`` exist without a 257th id the model has no row for. ``split_special_tokens`` keeps a
literal NUL in a text encoding as byte 0 like any other byte.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["BYTE_EOS_ID", "byte_level_tokenizer", "save_byte_tokenizer", "save_tokenizer_for_hf"]

BYTE_EOS_ID = 0


def _byte_chars() -> list[str]:
    """The printable character standing for each byte (GPT-2's byte-to-unicode table), indexed by byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def byte_level_tokenizer() -> Any:
    """A ``tokenizers.Tokenizer`` with 256 tokens whose ids are the UTF-8 byte values."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    chars = _byte_chars()
    tok = Tokenizer(models.BPE(vocab={c: b for b, c in enumerate(chars)}, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def save_byte_tokenizer(folder: str | os.PathLike, model_max_length: int | None = None) -> Path:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` of the byte tokenizer into ``folder``.

    ``AutoTokenizer.from_pretrained(folder)`` then encodes exactly as ``get_tokenizer("byte")``;
    ``model_max_length`` (e.g. the training length) is what lm-eval's ``hf`` model windows by.
    """
    from transformers import PreTrainedTokenizerFast

    if model_max_length is not None and (isinstance(model_max_length, bool) or not isinstance(model_max_length, int)
                                         or model_max_length < 1):
        raise ValueError(f"model_max_length must be None or an int >= 1, got {model_max_length!r}")
    nul = _byte_chars()[BYTE_EOS_ID]
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    fast = PreTrainedTokenizerFast(tokenizer_object=byte_level_tokenizer(), eos_token=nul, pad_token=nul,
                                   split_special_tokens=True, clean_up_tokenization_spaces=False, **extra)
    if fast.eos_token_id != BYTE_EOS_ID or len(fast) != 256:
        raise RuntimeError(f"byte tokenizer came out with eos id {fast.eos_token_id} and {len(fast)} tokens; "
                           f"expected {BYTE_EOS_ID} and 256")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


def save_tokenizer_for_hf(spec: str, folder: str | os.PathLike, model_max_length: int | None = None) -> Path:
    """Write the tokenizer named by ``spec`` (``byte`` or ``hf:<tokenizer.json>``) for ``AutoTokenizer``.

    A ``hf:`` tokenizer keeps its own special tokens; ``</s>`` or ``<|endoftext|>`` becomes the
    end-of-text token when present. tiktoken encodings have no ``AutoTokenizer`` form: ``ValueError``.
    """
    if spec == "byte":
        return save_byte_tokenizer(folder, model_max_length)
    path = spec[3:] if spec.startswith("hf:") else spec if spec.endswith(".json") else None
    if path is None:
        raise ValueError(f"spec must be 'byte' or 'hf:<tokenizer.json>' to be saved for AutoTokenizer, got {spec!r} "
                         "(use lm-eval's 'titanmem' model for other tokenizers)")
    from transformers import PreTrainedTokenizerFast

    vocab = json.loads(Path(path).expanduser().read_text(encoding="utf-8")).get("model", {}).get("vocab", {})
    eos = next((t for t in ("</s>", "<|endoftext|>") if t in vocab), None)
    extra: dict[str, Any] = {} if model_max_length is None else {"model_max_length": model_max_length}
    if eos is not None:
        extra["eos_token"] = eos
    fast = PreTrainedTokenizerFast(tokenizer_file=str(Path(path).expanduser()), **extra)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder
