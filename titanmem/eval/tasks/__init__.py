"""Synthetic long-context tasks: deterministic generators with disjoint train/test splits.

==============  ===========================================================  =====================
name            what is asked                                                haystack (default)
==============  ===========================================================  =====================
``passkey``     the pass key in RULER's repeated sentences                   ``noise``
``niah_number`` RULER S-NIAH: the magic number for an ``adjective-noun`` key  ``essays``
``niah_word``   the same with a word value                                   ``essays``
``niah_uuid``   the same with a UUID value                                   ``essays``
``mqar``        multi-query associative recall ``k12:v07 ... k12:`` -> v07    ``noise`` filler
``babilong``    bAbI-like qa1-qa5 facts scattered in book text               ``shakespeare``
==============  ===========================================================  =====================

``make_task(name, **params)`` builds one; ``task.example(length, split, seed, index, depth)`` and
``task.examples(n, length, ...)`` generate :class:`Example` s whose ``context`` ends where the
``answer`` starts. Lengths are in tokens of the task's tokenizer (bytes by default).
"""

from __future__ import annotations

from typing import Any

from .babilong import BABILONG_QA, BabilongTask
from .base import SPLITS, Example, Task, split_of, unit_hash, value_in_split
from .mqar import MQARTask
from .niah import NIAH_KINDS, NiahTask, PasskeyTask

__all__ = [
    "BABILONG_QA", "BabilongTask", "Example", "MQARTask", "NIAH_TASKS", "NiahTask", "PasskeyTask", "SPLITS",
    "TASK_NAMES", "Task", "make_task", "split_of", "unit_hash", "value_in_split",
]

NIAH_TASKS: tuple[str, ...] = ("passkey",) + tuple(f"niah_{k}" for k in NIAH_KINDS)
TASK_NAMES: tuple[str, ...] = NIAH_TASKS + ("mqar", "babilong") + tuple(f"babilong_{q}" for q in BABILONG_QA)


def make_task(name: str, **params: Any) -> Task:
    """The task called ``name`` (one of :data:`TASK_NAMES`) built with ``params``.

    ``babilong_qa2`` is ``babilong`` with ``qa="qa2"``. Unknown parameters raise ``TypeError``.
    """
    if name == "passkey":
        return PasskeyTask(**params)
    if name in NIAH_TASKS:
        return NiahTask(kind=name[len("niah_"):], **params)
    if name == "mqar":
        return MQARTask(**params)
    if name == "babilong":
        return BabilongTask(**params)
    if name.startswith("babilong_") and name[len("babilong_"):] in BABILONG_QA:
        if "qa" in params:
            raise ValueError(f"task {name!r} fixes qa; pass qa only with task 'babilong', got qa={params['qa']!r}")
        return BabilongTask(qa=name[len("babilong_"):], **params)
    raise ValueError(f"task must be one of {TASK_NAMES}, got {name!r}")
