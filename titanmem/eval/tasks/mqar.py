"""Multi-query associative recall (Zoology, Arora et al. 2023) as text: ``mqar``.

A context lists ``num_pairs`` key-value pairs with distinct keys, then (after optional filler) asks
``num_queries`` of the keys again in a random order; each query is answered with its key's value::

    k12:v07 k40:v93 k03:v07 ... k27:v55
    <filler: RULER's repeated sentences, up to the requested length>
    k40:v93 k27:v55 ... k12:

Every query but the last is answered inside the context; the example's ``answer`` is the last one's
value (``"v07"``), so exact match scores one recall per example, far from its pair when there is
filler. ``meta["answer_spans"]`` gives the ``(start, end)`` character span of every query's value in
``context + answer`` (the last span is the answer): training may put its loss on all of them, as
Zoology does.

Length: with ``num_pairs=None`` the pairs fill the context (as many as fit, at most ``num_keys``)
and the filler only takes up the last few tokens; with a fixed ``num_pairs`` the filler takes the
rest, so longer contexts put the queries further from the pairs.
"""

from __future__ import annotations

import random
from typing import Any

from ...data.tokenizers import Tokenizer
from ..haystack import get_haystack
from .base import Example, Task

__all__ = ["MQARTask"]


def _check(name: str, value: object, minimum: int, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{' or None' if allow_none else ''}, got {value!r}")


class MQARTask(Task):
    """Key-value pairs ``k<i>:v<j>``, then queries ``k<i>:`` answered by ``v<j>`` (see the module docstring).

    Args:
        num_pairs: pairs per context (None: as many as fit the length, capped at ``num_keys``).
        num_queries: queries per context (at most the number of pairs).
        num_keys, num_values: sizes of the key and value vocabularies (``k00``.., ``v00``..).
        filler: haystack between the pairs and the queries (``noise`` by default).
    """

    name = "mqar"

    def __init__(self, num_pairs: int | None = None, num_queries: int = 8, num_keys: int = 100,
                 num_values: int = 100, filler: str = "noise", tokenizer: Tokenizer | str | None = None) -> None:
        super().__init__(tokenizer)
        _check("num_pairs", num_pairs, 1, allow_none=True)
        _check("num_queries", num_queries, 1)
        _check("num_keys", num_keys, 1)
        _check("num_values", num_values, 1)
        if num_pairs is not None and num_pairs > num_keys:
            raise ValueError(f"num_pairs must be <= num_keys ({num_keys}): keys are distinct, got {num_pairs}")
        if num_pairs is not None and num_queries > num_pairs:
            raise ValueError(f"num_queries must be <= num_pairs ({num_pairs}), got {num_queries}")
        self.num_pairs, self.num_queries = num_pairs, num_queries
        self.num_keys, self.num_values = num_keys, num_values
        self.filler = get_haystack(filler)
        self._kw, self._vw = len(str(num_keys - 1)), len(str(num_values - 1))

    def params(self) -> dict[str, Any]:
        return {**super().params(), "num_pairs": self.num_pairs, "num_queries": self.num_queries,
                "num_keys": self.num_keys, "num_values": self.num_values, "filler": self.filler.name}

    def key(self, i: int) -> str:
        return f"k{i:0{self._kw}d}"

    def value(self, j: int) -> str:
        return f"v{j:0{self._vw}d}"

    def _pairs_that_fit(self, length: int) -> int:
        pair = self.n_tokens(f"{self.key(0)}:{self.value(0)} ")
        query = self.n_tokens(f"{self.key(0)}:{self.value(0)} ")
        fixed = 2 * self.n_tokens("\n")
        most = (length - fixed - self.num_queries * query) // pair
        return min(self.num_keys, most)

    def _build(self, rng: random.Random, length: int, depth: float | None, split: str) -> Example:
        n_pairs = self._pairs_that_fit(length) if self.num_pairs is None else self.num_pairs
        if n_pairs < self.num_queries:
            raise ValueError(f"length must fit at least num_queries={self.num_queries} pairs and queries for "
                             f"task 'mqar', got {length}")
        keys = rng.sample(range(self.num_keys), n_pairs)
        values = [rng.randrange(self.num_values) for _ in keys]
        table = dict(zip(keys, values))
        pairs = " ".join(f"{self.key(k)}:{self.value(v)}" for k, v in zip(keys, values)) + "\n"
        asked = rng.sample(keys, self.num_queries)
        queries = [f"{self.key(k)}:{self.value(table[k])}" for k in asked[:-1]] + [f"{self.key(asked[-1])}:"]
        tail = "\n" + " ".join(queries)
        budget = length - self.n_tokens(pairs) - self.n_tokens(tail)
        if budget < 0:
            raise ValueError(f"length must be >= {length - budget} tokens for task 'mqar' with "
                             f"num_pairs={n_pairs}, num_queries={self.num_queries}, got {length}")
        filler = self.filler.excerpt(budget, self.tokenizer, rng)
        context = pairs + filler + tail
        answer = self.value(table[asked[-1]])
        spans, cursor = [], len(pairs) + len(filler) + 1
        for q in queries[:-1]:
            start = cursor + q.index(":") + 1
            spans.append((start, cursor + len(q)))
            cursor += len(q) + 1
        spans.append((len(context), len(context) + len(answer)))
        meta = {"num_pairs": n_pairs, "num_queries": self.num_queries, "filler_tokens": self.n_tokens(filler),
                "answer_spans": spans, "query_key": self.key(asked[-1])}
        return Example(context, answer, meta)
