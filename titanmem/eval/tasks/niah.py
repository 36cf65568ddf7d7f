"""Single-needle retrieval in the RULER flavours: ``passkey``, ``niah_number``, ``niah_word``, ``niah_uuid``.

- ``passkey``: RULER's repeated-sentence haystack ("The grass is green. ..."), needle "The pass key is
  71432. Remember it. 71432 is the pass key.", question "What is the pass key? The pass key is".
- ``niah_number`` / ``niah_word`` / ``niah_uuid``: the Paul Graham essays, needle "One of the special
  magic numbers for {key} is: {value}." (words, uuids), question "What is the special magic number for
  {key} mentioned in the provided text? The special magic number for {key} mentioned in the provided
  text is". Keys are ``adjective-noun`` pairs.

Layout: ``haystack[:p] + needle + " " + haystack[p:] + "\\n" + question``; ``p`` is the sentence start
nearest ``depth`` percent of the haystack's tokens; the answer is ``" " + value``. With the byte
tokenizer the context has exactly ``length`` tokens.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from ...data.tokenizers import Tokenizer
from ..haystack import get_haystack, insertion_point
from .base import Example, Task, value_in_split
from .words import ADJECTIVES, NOUNS, VALUE_WORDS

__all__ = ["NIAH_KINDS", "NiahTask", "PasskeyTask"]

NIAH_KINDS: tuple[str, ...] = ("number", "word", "uuid")
# Value spaces at least this large (3+ digit numbers, words, UUIDs) are halved between the splits, so a
# test value is never trained on; smaller ones (1-2 digit keys) only keep whole examples apart.
_PARTITION_MIN = 100


def _check_digits(digits: object) -> int:
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 32:
        raise ValueError(f"digits must be an int in [1, 32], got {digits!r}")
    return digits


def _random_number(rng: random.Random, digits: int) -> str:
    return str(rng.randint(0, 9) if digits == 1 else rng.randint(10 ** (digits - 1), 10**digits - 1))


def _numbers(digits: int) -> int:
    """How many ``digits``-digit numbers :func:`_random_number` draws from (no leading zero past one digit)."""
    return 10 if digits == 1 else 9 * 10 ** (digits - 1)


class _NeedleTask(Task):
    """A haystack with one needle sentence at a requested depth and a question at the end."""

    uses_depth = True
    haystack_name = "noise"

    def __init__(self, haystack: str | None = None, tokenizer: Tokenizer | str | None = None) -> None:
        super().__init__(tokenizer)
        self.haystack = get_haystack(self.haystack_name if haystack is None else haystack)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "haystack": self.haystack.name}

    def _value(self, rng: random.Random) -> str:
        raise NotImplementedError

    def _value_space(self) -> int:
        raise NotImplementedError

    def _texts(self, rng: random.Random, value: str) -> tuple[str, str, dict[str, Any]]:
        """``(needle, question, meta)`` for ``value``."""
        raise NotImplementedError

    def _build(self, rng: random.Random, length: int, depth: float | None, split: str) -> Example:
        value = self._value(rng)
        if self._value_space() >= _PARTITION_MIN:
            while not value_in_split(value, split):
                value = self._value(rng)
        needle, question, extra = self._texts(rng, value)
        needle, question = needle + " ", "\n" + question
        budget = length - self.n_tokens(needle) - self.n_tokens(question)
        if budget < 0:
            raise ValueError(f"length must be >= {length - budget} tokens for task {self.name!r} "
                             f"(needle and question alone), got {length}")
        depth = rng.uniform(0.0, 100.0) if depth is None else depth
        hay = self.haystack.excerpt(budget, self.tokenizer, rng)
        pos = insertion_point(hay, depth, self.tokenizer) if hay else 0
        context = hay[:pos] + needle + hay[pos:] + question
        before = self.n_tokens(hay[:pos])
        meta = {"depth": depth, "value": value, "needle": needle.strip(), "needle_token": before,
                "depth_actual": 100.0 * before / max(1, self.n_tokens(hay)), "haystack": self.haystack.name, **extra}
        return Example(context, " " + value, meta)


class PasskeyTask(_NeedleTask):
    """RULER's pass-key retrieval (``niah_single_1``): a ``digits``-digit key in repeated sentences."""

    name = "passkey"
    haystack_name = "noise"

    def __init__(self, digits: int = 5, haystack: str | None = None, tokenizer: Tokenizer | str | None = None) -> None:
        self.digits = _check_digits(digits)
        super().__init__(haystack, tokenizer)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "digits": self.digits}

    def _value(self, rng: random.Random) -> str:
        return _random_number(rng, self.digits)

    def _value_space(self) -> int:
        return _numbers(self.digits)

    def _texts(self, rng: random.Random, value: str) -> tuple[str, str, dict[str, Any]]:
        return (f"The pass key is {value}. Remember it. {value} is the pass key.",
                "What is the pass key? The pass key is", {})


class NiahTask(_NeedleTask):
    """RULER S-NIAH over essays: a magic ``kind`` (number, word or uuid) for an ``adjective-noun`` key."""

    haystack_name = "essays"

    def __init__(self, kind: str = "number", digits: int = 7, haystack: str | None = None,
                 tokenizer: Tokenizer | str | None = None) -> None:
        if kind not in NIAH_KINDS:
            raise ValueError(f"kind must be one of {NIAH_KINDS}, got {kind!r}")
        self.kind = kind
        self.digits = _check_digits(digits)
        self.name = f"niah_{kind}"
        super().__init__(haystack, tokenizer)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "kind": self.kind, **({"digits": self.digits} if self.kind == "number" else {})}

    def _value(self, rng: random.Random) -> str:
        if self.kind == "number":
            return _random_number(rng, self.digits)
        if self.kind == "word":
            return rng.choice(VALUE_WORDS)
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def _value_space(self) -> int:
        return {"number": _numbers(self.digits), "word": len(VALUE_WORDS), "uuid": 2**122}[self.kind]

    def _texts(self, rng: random.Random, value: str) -> tuple[str, str, dict[str, Any]]:
        key = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
        what = self.kind
        needle = f"One of the special magic {what}s for {key} is: {value}."
        question = (f"What is the special magic {what} for {key} mentioned in the provided text? "
                    f"The special magic {what} for {key} mentioned in the provided text is")
        return needle, question, {"key": key}
