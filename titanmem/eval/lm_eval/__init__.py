"""lm-evaluation-harness (``pip install 'titanmem[eval]'``): the ``titanmem`` model, local tasks, and
folders that lm-eval's ``hf`` model loads.

Names are imported on first use, so that ``titanmem eval`` builds its parser without torch or lm-eval;
only :mod:`.model` and running :mod:`.cli` need ``lm_eval``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TASKS", "TitansLM", "byte_level_tokenizer", "prepare_lm_eval_folder", "save_byte_tokenizer",
           "save_tokenizer_for_hf", "tasks_dir", "write_task_data"]

_WHERE = {"TASKS": "tasks", "tasks_dir": "tasks", "write_task_data": "tasks", "TitansLM": "model",
          "prepare_lm_eval_folder": "folder", "byte_level_tokenizer": "tokenizer", "save_byte_tokenizer": "tokenizer",
          "save_tokenizer_for_hf": "tokenizer"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
