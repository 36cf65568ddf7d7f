"""Task runs over seeds: accuracy by length as mean, spread and per-seed values, a table and a plot.

``python -m titanmem.eval.seeds --group LMM=runs/a,runs/b,runs/c --group SWA=runs/d ... [--plot P]``
reads each run folder's ``results.json`` (written by ``titanmem eval train-task``, or by ``titanmem eval
niah`` for one task), pools the depths of each length, and prints one markdown row per group: the
mean accuracy over the group's seeds at every length, with the per-seed accuracies in brackets. A run
may join folders with ``+`` (``runs/a+runs/a/long``: a training run and a later scoring of its model at
other lengths). A run may also be a results file itself (``docs/results/tasks/mixed/lmmmix_s0.json``, the
copies kept in the repository), so the tables and figures of docs/results.md rebuild from a clone.

``--by pairs`` reads MQAR runs instead: each run's ``query_accuracy`` (every query, teacher-forced) at
its training length, against its ``task.num_pairs`` (Zoology's capacity plot). A seed of a group then
joins one run per number of pairs with ``+`` (``runs/mqar16_d1+runs/mqar32_d1``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BY", "length_accuracy", "main", "markdown_table", "pairs_accuracy", "plot_seed_curves", "seed_rows"]

# What the columns of a table (the x axis of a plot) are: context length, or MQAR key-value pairs.
BY = ("length", "pairs")
_PLURAL = {"length": "lengths", "pairs": "numbers of pairs"}


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


def pairs_accuracy(results: Mapping[str, Any]) -> dict[int, float]:
    """``{num_pairs: accuracy}`` of one MQAR ``train-task`` results file: every query at the training length.

    Raises:
        ValueError: the results have no ``query_accuracy`` (not an MQAR run, or one scored before it
            was recorded) or no ``task.num_pairs``.
    """
    rows = results.get("query_accuracy") or []
    pairs = (results.get("task") or {}).get("num_pairs")
    length = ((results.get("job") or {}).get("train") or {}).get("length")
    row = next((r for r in rows if r["length"] == length), None)
    if row is None or not isinstance(pairs, int):
        raise ValueError("results has no 'query_accuracy' at its training length or no 'task.num_pairs' "
                         "(is it an MQAR train-task results.json?)")
    return {pairs: row["correct"] / row["n"]}


def _read(run: str | Path, by: str = "length") -> dict[int, float]:
    merged: dict[int, float] = {}
    for folder in str(run).split("+"):
        path = Path(folder) if folder.endswith(".json") else Path(folder) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"no results file {folder!r}" if folder.endswith(".json")
                                    else f"no results.json in run folder {folder!r}")
        results = json.loads(path.read_text())
        part = pairs_accuracy(results) if by == "pairs" else length_accuracy(results)
        if merged.keys() & part.keys():
            raise ValueError(f"run {str(run)!r} scores {_PLURAL[by]} {sorted(merged.keys() & part.keys())} twice")
        merged.update(part)
    return dict(sorted(merged.items()))


def seed_rows(groups: Mapping[str, Sequence[str | Path]], by: str = "length") -> list[dict[str, Any]]:
    """One row per group: ``label``, ``lengths``, ``mean`` and ``seeds`` (per run) accuracy per length.

    With ``by="pairs"`` the ``lengths`` entries are MQAR's numbers of key-value pairs (:func:`pairs_accuracy`).

    Raises:
        ValueError: ``by`` is not in :data:`BY`, a group has no runs, or its runs were scored at
            different lengths (numbers of pairs).
        FileNotFoundError: a run folder has no ``results.json``, or a run's ``.json`` file does not exist.
    """
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, got {by!r}")
    out = []
    for label, runs in groups.items():
        if not runs:
            raise ValueError(f"group {label!r} has no runs")
        per_run = [_read(run, by) for run in runs]
        lengths = list(per_run[0])
        if any(list(r) != lengths for r in per_run):
            raise ValueError(f"the runs of group {label!r} were scored at different {_PLURAL[by]}: "
                             f"{[list(r) for r in per_run]}")
        seeds = [[r[length] for length in lengths] for r in per_run]
        mean = [statistics.fmean(column) for column in zip(*seeds)]
        out.append({"label": label, "lengths": lengths, "mean": mean, "seeds": seeds})
    return out


def _percent(x: float) -> str:
    return f"{100 * x:.0f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], base_length: int | None = None, by: str = "length") -> str:
    """A markdown table: mean % over seeds per length, per-seed % in brackets when there are several.

    Columns are every length any row was scored at (``-`` where a row was not); multiples are of
    ``base_length`` (default: the shortest length). ``by="pairs"``: columns are numbers of pairs.
    """
    lengths = sorted({n for row in rows for n in row["lengths"]})
    base = base_length or lengths[0]
    head = " | ".join(f"{n} pairs" if by == "pairs" else f"{n} ({n / base:g}x)" for n in lengths)
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


def _distinct_ticks(values: Iterable[int], gap: float = 1.05) -> list[int]:
    """The sorted values, leaving out any within ``gap`` times the previous tick: on a log axis 255 and 256
    (a variant trained at a segment multiple beside one trained just before it) would print on top of
    each other."""
    ticks: list[int] = []
    for n in sorted(set(values)):
        if not ticks or n > ticks[-1] * gap:
            ticks.append(n)
    return ticks


def plot_seed_curves(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "", by: str = "length"
                     ) -> Path:
    """Accuracy against length (or MQAR pairs; log scale): the mean over seeds as a line, the range as a band."""
    from .scoring import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for row in rows:
        lo = [min(column) for column in zip(*row["seeds"])]
        hi = [max(column) for column in zip(*row["seeds"])]
        line, = ax.plot(row["lengths"], row["mean"], marker="o", label=f"{row['label']} ({len(row['seeds'])})")
        ax.fill_between(row["lengths"], lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    ticks = _distinct_ticks(n for row in rows for n in row["lengths"])
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.set_xlabel("key-value pairs in context" if by == "pairs" else "context length (tokens)")
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
    parser.add_argument("--by", choices=BY, default="length",
                        help="columns: context length (default), or MQAR key-value pairs (every query's accuracy)")
    args = parser.parse_args(argv)
    try:
        rows = seed_rows(dict(args.group), args.by)
    except (ValueError, FileNotFoundError) as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(markdown_table(rows, by=args.by))
    if args.plot:
        plot_seed_curves(rows, args.plot, args.title, args.by)
    return 0


if __name__ == "__main__":
    sys.exit(main())
