"""The titanmem lm-eval tasks: where their YAML files live, and the JSONL data they read, made here.

- ``titanmem_heldout_ppl`` (``loglikelihood_rolling``): 24 passages of 1-4 KB from the validation
  split of the Shakespeare corpus as training splits it (``val_fraction=0.05``, seed 0: *Henry VI,
  part 2*), so held out for models trained on the default data; word/byte perplexity, bits per byte.
- ``titanmem_passkey`` (``generate_until``, exact match) and ``titanmem_passkey_ll`` (``loglikelihood``,
  ``acc`` = the key is the greedy continuation): a 5-digit key stated once at a depth of 10-90 % of a
  filler text of 256-2048 characters, asked for at the end.

The data files are generated deterministically by :func:`write_task_data` (``python -m
titanmem.eval.lm_eval.tasks`` rewrites them) and shipped; the tasks read them through
:func:`heldout_dataset` / :func:`passkey_dataset`, so nothing is downloaded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...data.corpora import Document, load_corpus, split_documents

__all__ = ["TASKS", "heldout_dataset", "heldout_rows", "passkey_dataset", "passkey_rows", "tasks_dir",
           "write_task_data"]

TASKS = ("titanmem_heldout_ppl", "titanmem_passkey", "titanmem_passkey_ll")
HELDOUT_FILE, PASSKEY_FILE = "heldout.jsonl", "passkey.jsonl"
# Our own filler: plain sentences repeated in a fixed order, so a model can predict them and has to
# remember only the key.
FILLER = (
    "The river runs past the old mill. ", "Birds sing on the roof in the morning. ",
    "A cart rolls slowly down the lane. ", "The bells ring twice at noon. ",
    "Smoke rises from the baker's chimney. ", "Children play by the stone bridge. ",
    "The wind turns the leaves over. ", "Evening comes and the lamps are lit. ",
)
QUESTION = "What is the pass key? The pass key is"


def tasks_dir() -> Path:
    """The folder of the task YAML and JSONL files: pass it to ``lm_eval --include_path``."""
    return Path(__file__).resolve().parent.parent / "lm_eval_tasks"


def heldout_rows(docs: Sequence[Document] | None = None, n: int = 24) -> list[dict[str, Any]]:
    """``n`` passages cut at line ends from ``docs`` (default: Shakespeare's validation split).

    Passage i starts at the first paragraph after ``5 % + 90 % * i / n`` of its document and runs to
    the end of the line where it passes ``1024 * (1 + i % 4)`` characters.
    """
    if docs is None:
        docs = split_documents(load_corpus("shakespeare"), 0.05, 0)[1]
    rows = []
    for i in range(n):
        doc = docs[i % len(docs)]
        text = doc.text
        start = text.find("\n\n", int(len(text) * (0.05 + 0.9 * i / n)))
        start = 0 if start < 0 else start + 2
        end = text.find("\n", start + 1024 * (1 + i % 4))
        passage = text[start : len(text) if end < 0 else end].strip()
        rows.append({"text": passage, "source": doc.name, "offset": start})
    return rows


def passkey_rows(lengths: Sequence[int] = (256, 512, 1024, 2048), per_length: int = 8,
                 seed: int = 0) -> list[dict[str, Any]]:
    """``per_length`` prompts per filler length, keys and depths drawn from ``random.Random(seed)``."""
    rng = random.Random(seed)
    rows = []
    for length in lengths:
        for j in range(per_length):
            key = f"{rng.randrange(10000, 100000)}"
            depth = 0.1 + 0.8 * j / max(per_length - 1, 1)
            sentences, size = [], 0
            while size < length:
                sentences.append(FILLER[len(sentences) % len(FILLER)])
                size += len(sentences[-1])
            cut = round(depth * len(sentences))
            needle = f"The pass key is {key}. Remember it. {key} is the pass key. "
            context = "".join(sentences[:cut]) + needle + "".join(sentences[cut:]) + QUESTION
            rows.append({"context": context, "answer": key, "length": length, "depth": round(depth, 4)})
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_task_data(folder: str | Path | None = None) -> list[Path]:
    """(Re)write ``heldout.jsonl`` and ``passkey.jsonl`` into ``folder`` (default :func:`tasks_dir`)."""
    folder = tasks_dir() if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [_write_jsonl(folder / HELDOUT_FILE, heldout_rows()), _write_jsonl(folder / PASSKEY_FILE, passkey_rows())]


def _dataset(name: str) -> dict[str, Any]:
    import datasets  # lm-eval's dependency: only these loaders need it

    path = tasks_dir() / name
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {"test": datasets.Dataset.from_list(rows)}


def heldout_dataset(**_: Any) -> dict[str, Any]:
    """``custom_dataset`` of ``titanmem_heldout_ppl`` (keyword arguments from lm-eval's metadata are ignored)."""
    return _dataset(HELDOUT_FILE)


def passkey_dataset(**_: Any) -> dict[str, Any]:
    """``custom_dataset`` of ``titanmem_passkey`` and ``titanmem_passkey_ll``."""
    return _dataset(PASSKEY_FILE)


if __name__ == "__main__":
    for written in write_task_data():
        print(f"wrote {written}")
