"""Compare several models on the same tasks: one markdown report, one JSON file, plots.

A task is a runner ``run(model, tokenizer, **kwargs) -> dict`` registered in :data:`TASKS`. In the
dict it returns, numbers are metrics (a table column each); a value shaped ``{"x": [...], "y": [...]}``
(optional ``xlabel``, ``ylabel``, ``xscale``) is a curve, drawn with every model's on one figure;
anything else is kept in the JSON only. Adding a task is one entry, the runner named by
``"module:function"`` so that it is imported only when used::

    TASKS["mine"] = TaskSpec("mypackage.tasks:run_mine", primary="accuracy", higher_is_better=True)
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TASKS", "TaskSpec", "add_compare_arguments", "compare_models", "parse_task_args", "register_task",
           "run_compare", "write_report"]

Runner = Callable[..., Mapping[str, Any]]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its runner (or ``"module:function"``), the metric drawn as bars, its direction."""

    run: Runner | str
    primary: str | None = None
    higher_is_better: bool | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self) -> Runner:
        """The runner, imported now if it was given by name."""
        if callable(self.run):
            return self.run
        module, _, name = self.run.partition(":")
        return getattr(importlib.import_module(module), name)


TASKS: dict[str, TaskSpec] = {
    "ppl": TaskSpec("titanmem.eval.perplexity:ppl_task", primary="bpb", higher_is_better=False),
    "lm_eval": TaskSpec("titanmem.eval.lm_eval.cli:lm_eval_task"),
    "niah": TaskSpec("titanmem.eval.task_cli:niah_task", primary="accuracy", higher_is_better=True),
    "mqar": TaskSpec("titanmem.eval.task_cli:mqar_task", primary="accuracy", higher_is_better=True),
    "babilong": TaskSpec("titanmem.eval.task_cli:babilong_task", primary="accuracy", higher_is_better=True),
}


def register_task(name: str, run: Runner | str, primary: str | None = None,
                  higher_is_better: bool | None = None, **defaults: Any) -> None:
    """Add (or replace) task ``name``; ``defaults`` are keyword arguments its runner always gets."""
    if not isinstance(name, str) or not name or "," in name:
        raise ValueError(f"name must be a non-empty str without commas, got {name!r}")
    if not (callable(run) or (isinstance(run, str) and ":" in run)):
        raise TypeError(f"run must be a callable or a 'module:function' str, got {run!r}")
    TASKS[name] = TaskSpec(run, primary, higher_is_better, dict(defaults))


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_task_args(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["ppl.max_docs=4", "ppl.corpus=shakespeare"]`` -> ``{"ppl": {"max_docs": 4, "corpus": "shakespeare"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        task, dot, arg = key.partition(".")
        if not sep or not dot or not task or not arg:
            raise ValueError(f"task arguments look like TASK.KEY=VALUE (e.g. ppl.max_docs=4), got {item!r}")
        out.setdefault(task, {})[arg.replace("-", "_")] = _parse_value(value)
    return out


def _is_curve(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("x"), (list, tuple)) and "y" in value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_models(
    paths: Sequence[str], tasks: Sequence[str], task_args: Mapping[str, Mapping[str, Any]] | None = None,
    device: str = "auto", log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Load each model in turn and run every task on it.

    Returns ``{"models": {label: path}, "tasks": [...], "results": {label: {task: metrics}}}``; a task
    that raises ``ValueError``, ``TypeError``, ``RuntimeError`` or ``OSError`` gets ``{"error": message}``.
    """
    from .loading import load_model, model_label

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"tasks must be registered tasks {sorted(TASKS)}, got unknown {unknown}")
    task_args = dict(task_args or {})
    stray = sorted(set(task_args) - set(tasks))
    if stray:
        raise ValueError(f"task arguments given for tasks {stray} that are not run (tasks: {list(tasks)})")
    labels: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    for path in paths:
        label = model_label(path)
        while label in labels:
            label += "'"
        labels[label] = str(path)
        model, tokenizer = load_model(path, device=device)
        results[label] = {}
        for name in tasks:
            spec = TASKS[name]
            began = time.perf_counter()
            try:
                metrics = dict(spec.resolve()(model, tokenizer, **{**spec.defaults, **task_args.get(name, {})}))
            except (ValueError, TypeError, RuntimeError, OSError) as err:
                metrics = {"error": f"{type(err).__name__}: {err}"}
                log(f"{label} / {name}: {metrics['error']}")
            metrics.setdefault("seconds", time.perf_counter() - began)
            results[label][name] = metrics
            shown = {k: v for k, v in metrics.items() if _is_number(v)}
            log(f"{label} / {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()))
        del model
    return {"models": labels, "tasks": list(tasks), "results": results}


def _fmt(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"
    return "" if value is None else str(value)


def _bar_plot(report: Mapping[str, Any], path: Path) -> Path | None:
    from matplotlib.figure import Figure

    panels = [t for t in report["tasks"] if TASKS[t].primary]
    if not panels:
        return None
    labels = list(report["results"])
    fig = Figure(figsize=(max(4.0, 3.5 * len(panels)), 3.8))
    for i, task in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        metric = TASKS[task].primary
        values = [report["results"][m][task].get(metric, float("nan")) for m in labels]
        values = [v if _is_number(v) else float("nan") for v in values]
        ax.bar(range(len(labels)), values, color=[f"C{j}" for j in range(len(labels))])
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
        arrow = {True: " (higher is better)", False: " (lower is better)"}.get(TASKS[task].higher_is_better, "")
        ax.set_title(f"{task}: {metric}{arrow}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _curve_plots(report: Mapping[str, Any], out: Path) -> list[Path]:
    from matplotlib.figure import Figure

    written = []
    for task in report["tasks"]:
        keys = []
        for metrics in report["results"].values():
            keys += [k for k, v in metrics.get(task, {}).items() if _is_curve(v) and k not in keys]
        for key in keys:
            fig = Figure(figsize=(7, 4.5))
            ax = fig.add_subplot()
            meta: Mapping[str, Any] = {}
            for label, metrics in report["results"].items():
                curve = metrics.get(task, {}).get(key)
                if _is_curve(curve):
                    ax.plot(curve["x"], curve["y"], marker="o", markersize=3, label=label)
                    meta = curve
            ax.set_xscale(meta.get("xscale", "linear"))
            ax.set_xlabel(meta.get("xlabel", "x"))
            ax.set_ylabel(meta.get("ylabel", key))
            ax.set_title(f"{task}: {key}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
            fig.tight_layout()
            path = out / f"compare_{task}_{key}.png"
            fig.savefig(path, dpi=120)
            written.append(path)
    return written


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``compare.json``, ``report.md`` (a table per task, best primary value in bold) and the plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    lines = ["# Model comparison", "", "| model | path |", "|---|---|"]
    lines += [f"| {label} | `{path}` |" for label, path in report["models"].items()]
    for task in report["tasks"]:
        spec = TASKS[task]
        rows = {label: r.get(task, {}) for label, r in report["results"].items()}
        columns = []
        for metrics in rows.values():
            columns += [k for k, v in metrics.items() if (_is_number(v) or k == "error") and k not in columns]
        if spec.primary in columns:
            columns.remove(spec.primary)
            columns.insert(0, spec.primary)
        best = None
        if spec.primary and spec.higher_is_better is not None:
            scores = [m.get(spec.primary) for m in rows.values() if _is_number(m.get(spec.primary))]
            scores = [s for s in scores if not math.isnan(s)]
            best = (max if spec.higher_is_better else min)(scores) if scores else None
        lines += ["", f"## {task}", "", "| model | " + " | ".join(columns) + " |",
                  "|---|" + "---:|" * len(columns)]
        for label, metrics in rows.items():
            cells = []
            for col in columns:
                text = _fmt(metrics.get(col))
                cells.append(f"**{text}**" if col == spec.primary and best is not None
                             and metrics.get(col) == best and len(rows) > 1 else text)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    figures = [p for p in [_bar_plot(report, out / "compare_primary.png"), *_curve_plots(report, out)] if p]
    if figures:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def add_compare_arguments(parser: Any) -> None:
    """Options of ``titanmem eval compare`` on an ``argparse`` parser."""
    parser.add_argument("models", nargs="+", metavar="PATH",
                        help="model folders, checkpoints or run folders (at least one)")
    parser.add_argument("--tasks", default="ppl", help=f"comma-separated tasks of {sorted(TASKS)} (default ppl)")
    parser.add_argument("--set", dest="task_args", action="append", default=[], metavar="TASK.KEY=VALUE",
                        help="an argument of one task's runner, e.g. ppl.corpus=shakespeare ppl.max_docs=4 "
                             "(repeat for several; default: the runners' defaults)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto: CUDA if available)")
    parser.add_argument("--out", default="runs/eval/compare",
                        help="folder for report.md, compare.json, plots (default runs/eval/compare)")


def run_compare(args: Any) -> int:
    """``titanmem eval compare``: 0 when every task ran on every model, 1 if some failed, 2 on bad arguments."""
    from ..cli_args import report_error
    from ..train.checkpoint import CheckpointError

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    try:
        report = compare_models(args.models, tasks, parse_task_args(args.task_args), device=args.device)
    except (ValueError, TypeError, CheckpointError) as err:
        return report_error("eval compare", err)
    path = write_report(report, args.out)
    print(f"wrote {path}")
    failed = any("error" in m for r in report["results"].values() for m in r.values())
    return 1 if failed else 0
