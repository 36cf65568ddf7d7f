"""Command-line pieces of ``titanmem eval niah|mqar|babilong|train-task``, and runners for ``eval compare``.

Each command has ``add_<name>_arguments(parser)`` and ``run_<name>(args) -> int`` (0 on success, 2 on a
bad argument); ``titanmem/cli.py`` registers them. ``--model`` is anything
:func:`titanmem.eval.loading.load_model` reads: a Hugging Face folder (``titanmem export``, or
``<out_dir>/model`` of ``train-task``), a training checkpoint or a run folder; the tokenizer is the
one recorded with the model unless ``--tokenizer`` names one.

``niah_task``, ``mqar_task`` and ``babilong_task`` are :mod:`titanmem.eval.compare` runners
(``run(model, tokenizer, **kwargs) -> dict``): overall ``accuracy`` and an ``accuracy_by_length`` curve.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli_args import int_at_least, nonneg_int, positive_int, report_error

__all__ = [
    "add_babilong_arguments", "add_mqar_arguments", "add_niah_arguments", "add_train_task_arguments", "babilong_task",
    "mqar_task", "niah_task", "run_babilong", "run_mqar", "run_niah", "run_train_task",
]


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(0 <= v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated depths in [0, 100], got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _add_common(parser: argparse.ArgumentParser, out: str, lengths: str) -> None:
    parser.add_argument("--model", required=True,
                        help="Hugging Face model folder, training checkpoint or run folder (required)")
    parser.add_argument("--lengths", type=_ints, default=_ints(lengths),
                        help=f"context lengths in tokens (default {lengths})")
    parser.add_argument("--samples", type=positive_int, default=10, help="examples per length (and depth); default 10")
    parser.add_argument("--out", default=out, help=f"folder for results.json and plots (default {out})")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the test examples (default 0)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer spec (default: the one recorded with the model)")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="examples decoded together (equal lengths; default 8)")
    parser.add_argument("--prefill-chunk", type=positive_int, default=2048,
                        help="tokens per prefill call, bounds memory (default 2048)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto: CUDA if available)")


def add_niah_arguments(parser: argparse.ArgumentParser) -> None:
    """RULER needle tasks: ``passkey``, ``niah_number``, ``niah_word``, ``niah_uuid``."""
    _add_common(parser, "runs/eval/niah", "1024,2048,4096")
    parser.add_argument("--tasks", type=_names, default=["passkey", "niah_number", "niah_word", "niah_uuid"],
                        help="comma-separated (default passkey,niah_number,niah_word,niah_uuid)")
    parser.add_argument("--depths", type=_floats, default=[0.0, 25.0, 50.0, 75.0, 100.0],
                        help="needle depths in percent (default 0,25,50,75,100)")
    parser.add_argument("--digits", type=positive_int, default=None,
                        help="digits of pass keys / magic numbers (default 5 / 7)")
    parser.add_argument("--haystack", default=None,
                        help="haystack of every task (default: noise for passkey, essays for the others)")


def add_mqar_arguments(parser: argparse.ArgumentParser) -> None:
    """Multi-query associative recall."""
    _add_common(parser, "runs/eval/mqar", "256,512,1024,2048")
    parser.add_argument("--num-pairs", type=positive_int, default=None,
                        help="key-value pairs per context (default: as many as fit)")
    parser.add_argument("--num-queries", type=positive_int, default=8,
                        help="keys asked about per context (default 8)")
    parser.add_argument("--num-keys", type=positive_int, default=100,
                        help="size of the vocabulary keys are drawn from (default 100)")
    parser.add_argument("--num-values", type=positive_int, default=100,
                        help="size of the vocabulary values are drawn from (default 100)")


def add_babilong_arguments(parser: argparse.ArgumentParser) -> None:
    """BABILong-style qa1-qa5 in book text."""
    _add_common(parser, "runs/eval/babilong", "512,1024,2048,4096")
    parser.add_argument("--qa", type=_names, default=["qa1", "qa2", "qa3"],
                        help="comma-separated, of qa1-qa5 (default qa1,qa2,qa3)")
    parser.add_argument("--num-facts", type=int_at_least(2), default=6,
                        help="facts of each story hidden in the context, at least 2 (default 6)")
    parser.add_argument("--haystack", default="shakespeare", help="book corpus or 'generated' (default shakespeare)")


def add_train_task_arguments(parser: argparse.ArgumentParser) -> None:
    """Train a tiny model on a task and score it at 1x-16x the training length."""
    parser.epilog = "Any --section.key=value after the options overrides the config file, like --set."
    parser.add_argument("--config", default=None,
                        help="TOML task job, e.g. configs/tasks/mac.toml (default: the built-in job's defaults)")
    parser.add_argument("--set", dest="set_overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one value of the config, e.g. --set train.steps=200 (repeat for several)")


def _evaluate(args: argparse.Namespace, tasks: list[tuple[str, dict[str, Any]]], depths: list[float] | None,
              kind: str) -> int:
    from ..data.tokenizers import get_tokenizer
    from ..train.checkpoint import CheckpointError
    from .loading import load_model
    from .scoring import ModelAnswerer, evaluate_task, plot_accuracy_vs_length, plot_heatmap, write_json
    from .tasks import make_task

    try:
        model, tokenizer = load_model(args.model, args.device)
    except (ValueError, TypeError, FileNotFoundError, CheckpointError) as err:
        return report_error(f"eval {kind}", f"--model: {err}")
    try:
        if args.tokenizer is not None:
            tokenizer = get_tokenizer(args.tokenizer)
        built = [make_task(name, tokenizer=tokenizer, **params) for name, params in tasks]
    except (ValueError, TypeError, FileNotFoundError) as err:
        return report_error(f"eval {kind}", err)
    out = Path(args.out)
    answerer = ModelAnswerer(model, tokenizer, args.prefill_chunk)
    all_rows, payload = [], {"model": str(args.model), "tokenizer": tokenizer.name, "seed": args.seed,
                             "samples": args.samples, "lengths": args.lengths, "tasks": {}}
    for task in built:
        label = task.name
        print(f"{label}: lengths {args.lengths}" + (f", depths {depths}" if task.uses_depth else ""))
        rows, records = evaluate_task(task, answerer, args.lengths, depths, args.samples, args.seed, "test",
                                      args.batch_size)
        for r in rows:
            print(f"  length {r['length']:>7}  depth {r['depth'] if r['depth'] is not None else '-':>5}  "
                  f"accuracy {r['accuracy']:.2f} ({r['correct']}/{r['n']})")
        payload["tasks"][label] = {"params": task.params(), "accuracy": rows, "records": records}
        all_rows += rows
        if task.uses_depth:
            plot_heatmap(rows, out / f"{label}_heatmap.png", f"{label}: {Path(args.model).name}")
    plot_accuracy_vs_length(all_rows, out / "accuracy_vs_length.png", f"{kind}: {Path(args.model).name}")
    print(f"wrote {write_json(out / 'results.json', payload)}")
    return 0


def run_niah(args: argparse.Namespace) -> int:
    """Score RULER needle tasks at every length and depth; writes results.json and one heatmap per task."""
    tasks = []
    for name in args.tasks:
        params: dict[str, Any] = {}
        if args.digits is not None and name in ("passkey", "niah_number"):
            params["digits"] = args.digits
        if args.haystack is not None:
            params["haystack"] = args.haystack
        tasks.append((name, params))
    unknown = [n for n, _ in tasks if n not in ("passkey", "niah_number", "niah_word", "niah_uuid")]
    if unknown:
        return report_error("eval niah",
                            f"--tasks must be among passkey,niah_number,niah_word,niah_uuid, got {unknown}")
    return _evaluate(args, tasks, args.depths, "niah")


def run_mqar(args: argparse.Namespace) -> int:
    """Score multi-query associative recall at every length."""
    params = {"num_pairs": args.num_pairs, "num_queries": args.num_queries, "num_keys": args.num_keys,
              "num_values": args.num_values}
    return _evaluate(args, [("mqar", params)], None, "mqar")


def run_babilong(args: argparse.Namespace) -> int:
    """Score BABILong-style question types at every length."""
    tasks = [("babilong", {"qa": qa, "num_facts": args.num_facts, "haystack": args.haystack}) for qa in args.qa]
    return _evaluate(args, tasks, None, "babilong")


def run_train_task(args: argparse.Namespace) -> int:
    """Train on a task from ``--config`` (+ overrides), then score at 1x-16x the training length."""
    from .task_train import load_task_job, run_task_job

    overrides = [o if o.startswith("--") else f"--{o}" for o in
                 list(getattr(args, "overrides", None) or []) + list(getattr(args, "set_overrides", None) or [])]
    try:
        job = load_task_job(args.config, overrides)
    except ValueError as err:
        return report_error("eval train-task", err)
    results = run_task_job(job)
    print(f"wrote {Path(job.out_dir) / 'results.json'} ({results['train_seconds']:.0f}s training)")
    return 0


def _as_list(name: str, value: Any, cast: type) -> list:
    """``1024``, ``"1024,2048"`` or ``[1024, 2048]`` -> a list (compare passes ``TASK.KEY=VALUE`` strings)."""
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        return [cast(v) for v in items if str(v).strip()]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a {cast.__name__} or a comma-separated list of them, got {value!r}") from None


def _compare_metrics(model: Any, tokenizer: Any, tasks: list[tuple[str, dict[str, Any]]], lengths: Any,
                     depths: Any, samples: int, seed: int, batch_size: int, prefill_chunk: int) -> dict[str, Any]:
    from .scoring import ModelAnswerer, evaluate_task
    from .tasks import make_task

    lengths = _as_list("lengths", lengths, int)
    depths = _as_list("depths", depths, float) if depths is not None else None
    answerer = ModelAnswerer(model, tokenizer, prefill_chunk)
    out: dict[str, Any] = {}
    by_length: dict[int, list[int]] = {n: [0, 0] for n in lengths}
    for name, params in tasks:
        task = make_task(name, tokenizer=tokenizer, **params)
        rows, _ = evaluate_task(task, answerer, lengths, depths, samples, seed, "test", batch_size)
        out[f"accuracy_{task.name}"] = sum(r["correct"] for r in rows) / sum(r["n"] for r in rows)
        for r in rows:
            by_length[r["length"]][0] += r["correct"]
            by_length[r["length"]][1] += r["n"]
    total = [sum(v[i] for v in by_length.values()) for i in (0, 1)]
    return {"accuracy": total[0] / total[1], "examples": total[1], **out,
            "accuracy_by_length": {"x": lengths, "y": [by_length[n][0] / by_length[n][1] for n in lengths],
                                   "xlabel": "context length (tokens)", "ylabel": "exact-match accuracy",
                                   "xscale": "log"}}


def niah_task(model: Any, tokenizer: Any, *, tasks: Any = "passkey", lengths: Any = "1024,2048,4096",
              depths: Any = "0,25,50,75,100", samples: int = 5, seed: int = 0, digits: int | None = None,
              batch_size: int = 8, prefill_chunk: int = 2048) -> dict[str, Any]:
    """:mod:`~titanmem.eval.compare` runner of the RULER needle tasks (``tasks``: comma-separated names)."""
    specs = [(n, {"digits": digits} if digits is not None and n in ("passkey", "niah_number") else {})
             for n in _as_list("tasks", tasks, str)]
    return _compare_metrics(model, tokenizer, specs, lengths, depths, samples, seed, batch_size, prefill_chunk)


def mqar_task(model: Any, tokenizer: Any, *, lengths: Any = "256,512,1024,2048", samples: int = 20, seed: int = 0,
              num_pairs: int | None = None, num_queries: int = 8, batch_size: int = 8,
              prefill_chunk: int = 2048) -> dict[str, Any]:
    """:mod:`~titanmem.eval.compare` runner of multi-query associative recall."""
    specs = [("mqar", {"num_pairs": num_pairs, "num_queries": num_queries})]
    return _compare_metrics(model, tokenizer, specs, lengths, None, samples, seed, batch_size, prefill_chunk)


def babilong_task(model: Any, tokenizer: Any, *, qa: Any = "qa1,qa2,qa3", lengths: Any = "512,1024,2048,4096",
                  samples: int = 10, seed: int = 0, num_facts: int = 6, haystack: str = "shakespeare",
                  batch_size: int = 8, prefill_chunk: int = 2048) -> dict[str, Any]:
    """:mod:`~titanmem.eval.compare` runner of the BABILong-style question types (``qa``: comma-separated)."""
    specs = [("babilong", {"qa": q, "num_facts": num_facts, "haystack": haystack}) for q in _as_list("qa", qa, str)]
    return _compare_metrics(model, tokenizer, specs, lengths, None, samples, seed, batch_size, prefill_chunk)
