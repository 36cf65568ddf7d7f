"""``titanmem eval lm-eval``: run lm-eval tasks (the local titanmem tasks by default) on one model."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...cli_args import nonneg_int, positive_float, positive_int, report_error

__all__ = ["add_lm_eval_arguments", "lm_eval_task", "run_lm_eval"]

INSTALL_HINT = "pip install 'titanmem[eval]'  (lm_eval==0.4.13)"


def add_lm_eval_arguments(parser: Any) -> None:
    """Options of ``titanmem eval lm-eval`` on an ``argparse`` parser."""
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="model folder, training checkpoint or run folder (required)")
    parser.add_argument("--tasks", default="titanmem",
                        help="comma-separated lm-eval tasks or tags (default: the local 'titanmem' tasks)")
    parser.add_argument("--backend", default="titanmem", choices=("titanmem", "hf"),
                        help="titanmem: whole inputs streamed with the cache (default); hf: lm-eval's own "
                             "Hugging Face model, windows of the training length")
    parser.add_argument("--limit", type=positive_float, default=None,
                        help="examples per task, a fraction of them if < 1 (default: all)")
    parser.add_argument("--num-fewshot", type=nonneg_int, default=None,
                        help="examples shown before each question (default: each task's own setting)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto: CUDA if available)")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float64"),
                        help="parameter dtype (default: the saved one, float32)")
    parser.add_argument("--piece", type=positive_int, default=512,
                        help="tokens per forward, titanmem backend (default 512)")
    parser.add_argument("--include-path", action="append", default=[],
                        help="another folder of lm-eval task YAMLs (repeatable; default: the local tasks only)")
    parser.add_argument("--out", default="runs/eval/lm_eval",
                        help="folder for results.json and the hf folder (default runs/eval/lm_eval)")


def _hf_model_args(path: str, out: Path) -> dict[str, Any]:
    from ..loading import resolve_source, tokenizer_for
    from .folder import prepare_lm_eval_folder

    source = resolve_source(path)
    folder = source.path
    if source.kind != "hf" or not (folder / "tokenizer_config.json").is_file():
        folder = prepare_lm_eval_folder(path, out / "hf_model", remote_code=False)
    vocab = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("vocab_size", 256)
    args: dict[str, Any] = {"pretrained": str(folder), "backend": "causal", "batch_size": 1}
    if tokenizer_for(source, vocab).name == "byte":
        args["prefix_token_id"] = 10  # "\n": the byte tokenizer has no BOS; NUL (its EOS) never occurs in text
    return args


def _task_manager(tasks: list[str], include_path: Sequence[str] = ()) -> Any:
    """The local tasks (and ``include_path``); lm-eval's own index, slow to build, only if a task needs it."""
    from lm_eval.tasks import TaskManager

    from .tasks import tasks_dir

    paths = [str(tasks_dir()), *include_path]
    manager = TaskManager(include_path=paths, include_defaults=False)
    return manager if set(tasks) <= set(manager.all_tasks) else TaskManager(include_path=paths)


def lm_eval_task(model: Any, tokenizer: Any, *, tasks: str | list[str] = "titanmem", limit: float | None = None,
                 piece: int = 512, num_fewshot: int | None = None) -> dict[str, Any]:
    """Runner for :mod:`titanmem.eval.compare`: lm-eval ``tasks`` on a loaded model through the ``titanmem``
    model; metrics flattened as ``<task>.<metric>`` (``<task>.<metric>[<filter>]`` for a named filter)."""
    try:
        import lm_eval
    except ImportError as err:
        raise RuntimeError(f"the lm_eval task needs lm-evaluation-harness: {INSTALL_HINT}") from err
    from .model import TitansLM

    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    lm = TitansLM(model, tokenizer=tokenizer, device=str(next(model.parameters()).device), piece=piece)
    limit = None if limit is None else (int(limit) if limit >= 1 else limit)
    results = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=_task_manager(names), limit=limit,
                                      num_fewshot=num_fewshot, log_samples=False)
    flat: dict[str, Any] = {}
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if metric.endswith("_stderr") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            flat[f"{task}.{metric}" + (f"[{filt}]" if filt and filt != "none" else "")] = value
    return flat


def run_lm_eval(args: Any) -> int:
    """Run ``args.tasks`` on ``args.model``; print lm-eval's table and write ``<out>/results.json``."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import lm_eval
        from lm_eval.utils import handle_non_serializable, make_table
    except ImportError:
        print(f"titanmem eval lm-eval needs lm-evaluation-harness: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from ... import models  # noqa: F401  (registers the Titans Auto classes for lm-eval's hf model)
    from ...train.checkpoint import CheckpointError
    from . import model  # noqa: F401  (registers lm-eval model "titanmem")

    out = Path(args.out)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    limit = None if args.limit is None else (int(args.limit) if args.limit >= 1 else args.limit)
    try:
        if args.backend == "hf":
            model_args = _hf_model_args(args.model, out)
            if args.dtype:
                model_args["dtype"] = args.dtype
        else:
            model_args = {"pretrained": args.model, "piece": args.piece, "dtype": args.dtype}
        manager = _task_manager(tasks, args.include_path)
        results = lm_eval.simple_evaluate(
            model=args.backend, model_args=model_args, tasks=tasks, task_manager=manager, limit=limit,
            num_fewshot=args.num_fewshot, device=None if args.device == "auto" else args.device, log_samples=False)
    except (ValueError, TypeError, CheckpointError) as err:
        return report_error("eval lm-eval", err)
    if results is None:  # not rank 0
        return 0
    print(make_table(results))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=handle_non_serializable) + "\n",
                                      encoding="utf-8")
    print(f"wrote {out / 'results.json'}")
    return 0
