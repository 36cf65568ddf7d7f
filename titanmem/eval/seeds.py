"""Task runs over seeds: accuracy by length as mean, spread and per-seed values, a table and a plot.

``python -m titanmem.eval.seeds --group LMM=runs/a,runs/b,runs/c --group SWA=runs/d ... [--plot P]``
reads each run folder's ``results.json`` (written by ``titanmem eval train-task``, or by ``titanmem eval
niah`` for one task), pools the depths of each length, and prints one markdown row per group: the
mean accuracy over the group's seeds at every length, with the per-seed accuracies in brackets. A run
may join folders with ``+`` (``runs/a+runs/a/long``: a training run and a later scoring of its model at
other lengths).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["length_accuracy", "seed_rows", "markdown_table", "plot_seed_curves", "main"]


def length_accuracy(results: Mapping[str, Any]) -> dict[int, float]:
    """``{length: accuracy}`` of one run's ``results.json``, every depth of a length pooled.

    ``results`` is a ``train-task`` results file (``accuracy`` rows) or an ``eval niah`` one with a
    single task (``tasks -> name -> accuracy``).

    Raises:
        ValueError: the results have no ``accuracy`` rows, or hold several tasks.
    """
    rows = results.get("accuracy") or []
    tasks = results.get("tasks") or {}
    if not rows and len(tasks) > 1:
        raise ValueError(f"results hold several tasks ({sorted(tasks)}); score one task per run folder")
    if not rows and tasks:
        rows = next(iter(tasks.values())).get("accuracy") or []
    if not rows:
        raise ValueError("results has no 'accuracy' rows (is it a train-task or eval niah results.json?)")
    correct: dict[int, int] = {}
    total: dict[int, int] = {}
    for row in rows:
        length = int(row["length"])
        correct[length] = correct.get(length, 0) + int(row["correct"])
        total[length] = total.get(length, 0) + int(row["n"])
    return {length: correct[length] / total[length] for length in sorted(total)}


def _read(run: str | Path) -> dict[int, float]:
    merged: dict[int, float] = {}
    for folder in str(run).split("+"):
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"no results.json in run folder {folder!r}")
        part = length_accuracy(json.loads(path.read_text()))
        if merged.keys() & part.keys():
            raise ValueError(f"run {str(run)!r} scores length(s) {sorted(merged.keys() & part.keys())} twice")
        merged.update(part)
    return dict(sorted(merged.items()))


def seed_rows(groups: Mapping[str, Sequence[str | Path]]) -> list[dict[str, Any]]:
    """One row per group: ``label``, ``lengths``, ``mean`` and ``seeds`` (per run) accuracy per length.

    Raises:
        ValueError: a group has no runs, or its runs were scored at different lengths.
        FileNotFoundError: a run folder has no ``results.json``.
    """
    out = []
    for label, runs in groups.items():
        if not runs:
            raise ValueError(f"group {label!r} has no runs")
        per_run = [_read(run) for run in runs]
        lengths = list(per_run[0])
        if any(list(r) != lengths for r in per_run):
            raise ValueError(f"the runs of group {label!r} were scored at different lengths: "
                             f"{[list(r) for r in per_run]}")
        seeds = [[r[length] for length in lengths] for r in per_run]
        mean = [statistics.fmean(column) for column in zip(*seeds)]
        out.append({"label": label, "lengths": lengths, "mean": mean, "seeds": seeds})
    return out


def _percent(x: float) -> str:
    return f"{100 * x:.0f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], base_length: int | None = None) -> str:
    """A markdown table: mean % over seeds per length, per-seed % in brackets when there are several.

    Columns are every length any row was scored at (``-`` where a row was not); multiples are of
    ``base_length`` (default: the shortest length).
    """
    lengths = sorted({n for row in rows for n in row["lengths"]})
    base = base_length or lengths[0]
    head = " | ".join(f"{n} ({n / base:g}x)" for n in lengths)
    lines = [f"| variant | seeds | {head} |", "|---|---:|" + "---:|" * len(lengths)]
    for row in rows:
        cells = []
        for n in lengths:
            if n not in row["lengths"]:
                cells.append("-")
                continue
            i = row["lengths"].index(n)
            each = ", ".join(_percent(s[i]) for s in row["seeds"])
            cells.append(f"{_percent(row['mean'][i])}%" + (f" ({each})" if len(row["seeds"]) > 1 else ""))
        lines.append(f"| {row['label']} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_seed_curves(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Accuracy against length (log scale): the mean over seeds as a line, the range as a band."""
    from .scoring import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for row in rows:
        lo = [min(column) for column in zip(*row["seeds"])]
        hi = [max(column) for column in zip(*row["seeds"])]
        line, = ax.plot(row["lengths"], row["mean"], marker="o", label=f"{row['label']} ({len(row['seeds'])})")
        ax.fill_between(row["lengths"], lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    ticks = sorted({n for row in rows for n in row["lengths"]})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("accuracy (mean over seeds; band: min-max)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def _group(text: str) -> tuple[str, list[str]]:
    label, sep, runs = text.partition("=")
    if not sep or not label or not runs:
        raise argparse.ArgumentTypeError(f"a group is LABEL=RUN[,RUN...], got {text!r}")
    return label, runs.split(",")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the markdown table of ``--group`` runs and optionally write ``--plot``."""
    parser = argparse.ArgumentParser(prog="python -m titanmem.eval.seeds", description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=_group, action="append", required=True, help="LABEL=RUN[,RUN...]")
    parser.add_argument("--plot", help="PNG of accuracy against length")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    try:
        rows = seed_rows(dict(args.group))
    except (ValueError, FileNotFoundError) as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(markdown_table(rows))
    if args.plot:
        plot_seed_curves(rows, args.plot, args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
