"""What every synthetic task shares: examples, splits that never overlap, seeds, lengths.

An :class:`Example` is a ``context`` that ends exactly where its ``answer`` starts, so
``context + answer`` is the text a model should produce. Answers are scored by exact match
(:mod:`titanmem.eval.scoring`).

Splits. Example ``index`` of split ``split`` and seed ``seed`` is drawn from a random generator seeded
with ``sha256(task, split, seed, index, attempt)``; it is kept only if the hash of its full text
(``context + answer``) falls in that split's half of the hash space (otherwise ``attempt`` is
incremented). So a train and a test example are never the same text, whatever the seeds; tasks with
large value spaces (long numbers, words, UUIDs) also give each split its own half of the values
(:func:`value_in_split`), so a test needle is never seen in training.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ...data.tokenizers import Tokenizer, get_tokenizer

__all__ = [
    "Example", "SPLITS", "Task", "check_depth", "check_length", "example_rng", "resolve_tokenizer",
    "split_of", "unit_hash", "value_in_split",
]

SPLITS: tuple[str, ...] = ("train", "test")
_MAX_ATTEMPTS = 1000


@dataclass(frozen=True)
class Example:
    """One task instance: ``context`` (ends where the answer starts), ``answer``, and ``meta``.

    ``meta`` always holds ``task``, ``length`` (requested tokens), ``n_tokens`` (tokens of the
    context), ``depth`` (requested percent, or None where a task has no single needle), ``seed``,
    ``split`` and ``index``, plus what the task adds.
    """

    context: str
    answer: str
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def text(self) -> str:
        """``context + answer``: the full sequence."""
        return self.context + self.answer


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts`` on every machine and Python run (unlike ``hash()``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_split(split: object) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split  # type: ignore[return-value]


def split_of(text: str) -> str:
    """The split a full example text belongs to: the lower half of the hash space is ``train``."""
    return "train" if unit_hash("example", text) < 0.5 else "test"


def value_in_split(value: str, split: str) -> bool:
    """Whether needle value ``value`` belongs to ``split`` (values are halved between splits by hash)."""
    return ("train" if unit_hash("value", value) < 0.5 else "test") == split


def example_rng(task: str, split: str, seed: int, index: int, attempt: int = 0) -> random.Random:
    """The random generator of one example attempt."""
    digest = hashlib.sha256(f"{task}\x1f{split}\x1f{seed}\x1f{index}\x1f{attempt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def check_length(length: object, minimum: int = 1) -> int:
    if isinstance(length, bool) or not isinstance(length, int) or length < minimum:
        raise ValueError(f"length must be an int >= {minimum} (tokens), got {length!r}")
    return length


def check_depth(depth: object) -> float | None:
    if depth is None:
        return None
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not 0 <= depth <= 100:
        raise ValueError(f"depth must be None or a number in [0, 100] (percent), got {depth!r}")
    return float(depth)


def resolve_tokenizer(tokenizer: Tokenizer | str | None) -> Tokenizer:
    """``None`` -> the byte tokenizer; a spec string -> :func:`get_tokenizer`; a tokenizer as is."""
    if tokenizer is None:
        return get_tokenizer("byte")
    if isinstance(tokenizer, str):
        return get_tokenizer(tokenizer)
    if not (hasattr(tokenizer, "encode") and hasattr(tokenizer, "decode")):
        raise TypeError(f"tokenizer must be a Tokenizer, a spec string or None, got {type(tokenizer).__name__}")
    return tokenizer


class Task:
    """Base class of the generators: subclasses set ``name`` and implement :meth:`_build`.

    ``uses_depth`` tells whether the task places one needle at a requested depth.
    """

    name: str = "task"
    uses_depth: bool = False

    def __init__(self, tokenizer: Tokenizer | str | None = None) -> None:
        self.tokenizer = resolve_tokenizer(tokenizer)

    def n_tokens(self, text: str) -> int:
        """Tokens of ``text`` under this task's tokenizer."""
        return len(self.tokenizer.encode(text))

    def params(self) -> dict[str, Any]:
        """The task's settings (recorded in results)."""
        return {"tokenizer": getattr(self.tokenizer, "name", type(self.tokenizer).__name__)}

    def _build(self, rng: random.Random, length: int, depth: float | None, split: str) -> Example:
        raise NotImplementedError

    def example(self, length: int, split: str = "test", seed: int = 0, index: int = 0,
                depth: float | None = None) -> Example:
        """Example ``index`` of ``split`` at about ``length`` context tokens (needle at ``depth`` percent).

        ``depth=None`` draws the depth at random where the task has one; tasks without a needle
        (``uses_depth`` False) ignore it. Deterministic in all arguments.
        """
        check_length(length)
        check_split(split)
        depth = check_depth(depth) if self.uses_depth else None  # tasks without a needle have no depth
        for name, value in (("seed", seed), ("index", index)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        for attempt in range(_MAX_ATTEMPTS):
            ex = self._build(example_rng(self.name, split, seed, index, attempt), length, depth, split)
            if split_of(ex.text) == split:
                meta = {"task": self.name, "length": length, "n_tokens": self.n_tokens(ex.context),
                        "depth": depth, "seed": seed, "split": split, "index": index, **ex.meta}
                return replace(ex, meta=meta)
        raise RuntimeError(f"{self.name}: no example of split {split!r} in {_MAX_ATTEMPTS} attempts "
                           f"(length={length}, depth={depth}); the task has too few distinct examples")

    def examples(self, n: int, length: int, split: str = "test", seed: int = 0, depth: float | None = None,
                 start: int = 0) -> list[Example]:
        """Examples ``start .. start + n - 1`` (see :meth:`example`)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        return [self.example(length, split, seed, start + i, depth) for i in range(n)]
