"""Fine-tuning runs over seeds: accuracy per task and variant, from scratch and from pretraining.

``titanmem dna report RUN...`` reads each run's ``results.json`` (a run folder written by ``titanmem dna
finetune``, or a results file kept in ``docs/results/dna/``) and prints one markdown row per variant,
task and budget: the mean test accuracy over the seeds from scratch and from pretraining, each seed's
value in brackets, and the change that pretraining makes on the seeds that have both. Runs with
another budget (steps, batch size, learning rate) or another selection (a validation split, the
best step's weights kept) form their own row, so a table never averages unlike runs; two runs of one cell and seed are an error, so none is counted twice.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from ..blocks import VARIANTS

__all__ = ["PAPER_TABLE4", "FinetuneRecord", "markdown_table", "paper_table", "read_record", "summarize"]

# Titans paper (arXiv 2501.00663), Table 4: top-1 accuracy (%) on five Genomic Benchmarks tasks after
# pretraining on the human genome. A different data set from the tasks titanmem builds (docs/genomics.md).
PAPER_TABLE4: dict[str, dict[str, float | None]] = {
    model: dict(zip(("Enhancer Cohn", "Enhancer Ens", "Human Reg.", "Non-TATA Promoters", "Human OCR Ens."), row))
    for model, row in {
        "CNN": (69.5, 68.9, 93.3, 84.6, 68.0),
        "DNABERT": (74.0, 85.7, 88.1, 85.6, 75.1),
        "GPT": (70.5, 83.5, 91.5, 87.7, 73.0),
        "HyenaDNA": (74.2, 89.2, 93.8, 96.6, 80.9),
        "Transformer++": (73.4, 89.5, 89.9, 94.4, 79.5),
        "Mamba": (73.0, None, None, 96.6, None),
        "Based": (74.6, 89.5, 89.5, 96.8, 79.0),
        "Neural Memory Module": (75.2, 89.6, 89.3, 96.6, 79.9),
    }.items()
}
# Row order of the tables: the blocks' order (memory variants, then the attention-only baselines).
_VARIANT_ORDER = VARIANTS
_VARIANT_NAMES = {"lmm": "LMM", "mac": "MAC", "mag": "MAG", "mal": "MAL", "transformer": "Transformer++",
                  "swa": "SWA"}


@dataclass(frozen=True)
class FinetuneRecord:
    """One fine-tuning run's result: what was trained (task, variant, from pretraining or not, seed,
    budget) and its test accuracy (fractions in [0, 1]; ``both_strands`` None for runs scored before
    it was recorded). ``selection``: ``""`` for a run trained on the whole training split, else its
    validation split and the weights it kept, e.g. ``"val 10%, best"``."""

    path: str
    task: str
    variant: str
    pretrained: bool
    seed: int
    steps: int
    batch_size: int
    lr: float
    parameters: int
    accuracy: float
    both_strands: float | None
    selection: str = ""


def read_record(run: str | Path) -> FinetuneRecord:
    """The result of one run: ``run`` is a ``titanmem dna finetune`` folder or its ``results.json``.

    Raises:
        FileNotFoundError: there is no results file at ``run``.
        ValueError: the file is not a fine-tuning results file (a field is missing), naming it.
    """
    path = Path(run)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"run must be a titanmem dna finetune folder or its results.json, got {str(run)!r}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a titanmem dna finetune results file: not JSON ({err})") from err
    try:
        train = data["job"]["train"]
        both = data.get("test_both_strands")
        fraction = float(data["job"].get("task", {}).get("val_fraction", 0.0))  # absent: files before it
        selection = f"val {100 * fraction:g}%, {data['validation']['kept']}" if fraction else ""
        return FinetuneRecord(
            path=str(path), task=str(data["task"]["name"]), variant=str(data["variant"]),
            pretrained=bool(data["pretrained"]), seed=int(train["seed"]), steps=int(train["steps"]),
            batch_size=int(train["batch_size"]), lr=float(train["lr"]), parameters=int(data["parameters"]),
            accuracy=float(data["test"]["accuracy"]),
            both_strands=None if both is None else float(both["accuracy"]), selection=selection,
        )
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a titanmem dna finetune results file: no field {err}") from err


def _variant_key(variant: str) -> tuple[int, str]:
    return (_VARIANT_ORDER.index(variant) if variant in _VARIANT_ORDER else len(_VARIANT_ORDER), variant)


def summarize(records: Iterable[FinetuneRecord], both_strands: bool = False) -> list[dict[str, Any]]:
    """Rows of (variant, task, budget) with each seed's accuracy from scratch and from pretraining.

    Each row: ``variant``, ``task``, ``steps``, ``batch_size``, ``lr``, ``selection``, ``parameters`` (sorted list of
    the counts seen), ``scratch`` and ``pretrained`` (``{seed: accuracy}``, fractions), ``change``
    (``{seed: pretrained - scratch}`` for the seeds with both). ``both_strands`` scores each run by
    the mean of each sequence's and its reverse complement's class probabilities instead.

    Raises:
        ValueError: two runs share variant, task, budget, pretraining and seed (naming both files), or
            ``both_strands`` is asked of a run that did not record it (naming it).
    """
    rows: dict[tuple, dict[str, Any]] = {}
    seen: dict[tuple, str] = {}
    for r in records:
        value = r.accuracy
        if both_strands:
            if r.both_strands is None:
                raise ValueError(f"{r.path} has no both-strands score (test_both_strands); score its model with "
                                 f"'titanmem dna eval <model> <task> --both-strands' or leave out --both-strands")
            value = r.both_strands
        key = (r.variant, r.task, r.steps, r.batch_size, r.lr, r.selection)
        cell = (*key, r.pretrained, r.seed)
        if cell in seen:
            kind = "pretrained" if r.pretrained else "scratch"
            raise ValueError(f"two runs of {r.variant} on {r.task} ({kind}, seed {r.seed}, {r.steps} steps): "
                             f"{seen[cell]} and {r.path}; pass each run once")
        seen[cell] = r.path
        row = rows.setdefault(key, {"variant": r.variant, "task": r.task, "steps": r.steps,
                                    "batch_size": r.batch_size, "lr": r.lr, "selection": r.selection,
                                    "parameters": set(),
                                    "scratch": {}, "pretrained": {}})
        row["parameters"].add(r.parameters)
        row["pretrained" if r.pretrained else "scratch"][r.seed] = value
    out = []
    for key in sorted(rows, key=lambda k: (_variant_key(k[0]), k[1], k[2:])):
        row = rows[key]
        row["parameters"] = sorted(row["parameters"])
        row["scratch"] = dict(sorted(row["scratch"].items()))
        row["pretrained"] = dict(sorted(row["pretrained"].items()))
        row["change"] = {s: row["pretrained"][s] - row["scratch"][s] for s in row["scratch"] if s in row["pretrained"]}
        out.append(row)
    return out


def _one_decimal(x: float, signed: bool = False) -> str:
    """``x`` to one decimal, halves away from zero (92.25 -> 92.3, as a reader rounds; float
    formatting would give 92.2 for the 1,845/2,000 it came from)."""
    d = Decimal(repr(round(x, 9))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    d = d.copy_abs() if d == 0 else d  # no "-0.0"
    return f"{d:+}" if signed else f"{d}"


def _cell(by_seed: Mapping[int, float], signed: bool = False) -> str:
    """``mean (each seed)`` in percent (points when ``signed``); ``-`` for no seed."""
    if not by_seed:
        return "-"
    values = [100 * v for v in by_seed.values()]
    mean = _one_decimal(statistics.fmean(values), signed) + ("" if signed else "%")
    if len(values) == 1:
        return f"{mean} (seed {next(iter(by_seed))})"
    return f"{mean} ({', '.join(_one_decimal(v, signed) for v in values)})"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of :func:`summarize` as a markdown table (accuracy in percent, change in points)."""
    lines = ["| variant | task | steps | parameters | seeds (scratch / pretrained) | from scratch | from pretraining "
             "| change (same seeds) |", "|---|---|---:|---:|---|---:|---:|---:|"]
    for row in rows:
        name = _VARIANT_NAMES.get(row["variant"], row["variant"])
        params = " / ".join(f"{p:,}" for p in row["parameters"])
        seeds = (f"{', '.join(map(str, row['scratch'])) or '-'} / {', '.join(map(str, row['pretrained'])) or '-'}")
        steps = f"{row['steps']} ({row['selection']})" if row.get("selection") else f"{row['steps']}"
        lines.append(f"| {name} | {row['task']} | {steps} | {params} | {seeds} | {_cell(row['scratch'])} | "
                     f"{_cell(row['pretrained'])} | {_cell(row['change'], signed=True)} |")
    return "\n".join(lines) + "\n"


def paper_table() -> str:
    """The Titans paper's Table 4 as markdown, labelled as the other data set it is."""
    tasks = list(next(iter(PAPER_TABLE4.values())))
    lines = ["Titans paper, Table 4 (Genomic Benchmarks, top-1 accuracy %; a different data set from the tasks above):",
             "", "| model | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for model, row in PAPER_TABLE4.items():
        lines.append(f"| {model} | " + " | ".join("-" if row[t] is None else f"{row[t]:.1f}" for t in tasks) + " |")
    return "\n".join(lines) + "\n"
