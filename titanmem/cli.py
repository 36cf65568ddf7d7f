"""Command line: ``titanmem demo|train|prepare|export|forecast|eval|bench|recall``.

``train``, ``prepare`` and ``eval train-task`` take a TOML job config (``--config``) and
``--section.key=value`` overrides, e.g. ``titanmem train --config configs/tiny/mac.toml --optim.lr=3e-4 --schedule.steps=200``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Commands that live in their own modules: name -> (help, module, add-arguments function, run function).
_COMMANDS = {
    "forecast": ("train and test forecasters (memory, attention, DLinear) on ETT files",
                 "titanmem.train.forecast_cli", "add_forecast_arguments", "run_forecast_command"),
}
_GROUPS = {
    "eval": ("evaluate models: long-context tasks, long-document perplexity, lm-eval, comparisons", {
        "niah": ("needle-in-a-haystack (RULER S-NIAH: pass key, number, word, UUID) by length and depth",
                 "titanmem.eval.task_cli", "add_niah_arguments", "run_niah"),
        "mqar": ("multi-query associative recall accuracy by length",
                 "titanmem.eval.task_cli", "add_mqar_arguments", "run_mqar"),
        "babilong": ("BABILong-style reasoning (bAbI qa1-qa5 facts in book text) by length",
                     "titanmem.eval.task_cli", "add_babilong_arguments", "run_babilong"),
        "train-task": ("train a tiny model on a synthetic task and test it at 1x-16x the training length",
                       "titanmem.eval.task_cli", "add_train_task_arguments", "run_train_task"),
        "ppl": ("bits per byte of whole documents, streamed with the cache, by position",
                "titanmem.eval.perplexity", "add_ppl_arguments", "run_ppl"),
        "lm-eval": ("lm-evaluation-harness tasks, offline (pip install 'titanmem[eval]')",
                    "titanmem.eval.lm_eval.cli", "add_lm_eval_arguments", "run_lm_eval"),
        "compare": ("several models on the same tasks: a markdown table and plots",
                    "titanmem.eval.compare", "add_compare_arguments", "run_compare"),
    }),
    "bench": ("benchmarks that ship with the package", {
        "stream": ("push millions of tokens through a model in pieces; tokens/s and resident memory",
                   "titanmem.bench.stream", "add_stream_arguments", "run_stream"),
    }),
}


def _add_commands(sub, commands: dict) -> None:
    for name, (help_text, module, add, run) in commands.items():
        parser = sub.add_parser(name, help=help_text)
        getattr(importlib.import_module(module), add)(parser)
        parser.set_defaults(run=f"{module}:{run}")


def _split_overrides(parser: argparse.ArgumentParser, extra: list[str]) -> list[str]:
    # Overrides are the arguments argparse did not know: each must be --section.key=value (or
    # --name=... / --out_dir=..., the two top-level keys).
    for item in extra:
        key = item[2:].partition("=")[0] if item.startswith("--") else ""
        if "=" not in item or ("." not in key and key not in ("name", "out_dir")):
            parser.error(f"unrecognised argument {item!r}: overrides look like --section.key=value")
    return extra


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="titanmem", description="Titans neural long-term memory")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a tiny MAC and a Transformer++ on Shakespeare and compare them")
    demo.add_argument("--out", default="runs/demo", help="folder for the runs and the report (default runs/demo)")
    demo.add_argument("--steps", type=int, default=None, help="training steps per model (default: the demo's budget)")
    demo.add_argument("--seed", type=int, default=0)
    train = sub.add_parser("train", help="train a model from a TOML job config",
                           epilog="Any --section.key=value after the options overrides the config file.")
    train.add_argument("--config", default=None, help="TOML job config (see configs/)")
    train.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                       help="continue from the newest good checkpoint in <out_dir>/checkpoints, or from CHECKPOINT")
    prepare = sub.add_parser("prepare", help="tokenize a job's corpus into memory-mapped shards (done once)",
                             epilog="Any --section.key=value after the options overrides the config file.")
    prepare.add_argument("--config", default=None, help="TOML job config whose [data] section to prepare")
    export = sub.add_parser("export", help="write a checkpoint as a Hugging Face folder")
    export.add_argument("checkpoint", help="a checkpoint folder (<out_dir>/checkpoints/step_XXXXXXXX)")
    export.add_argument("out", help="folder to write (loads with AutoModelForCausalLM.from_pretrained)")
    _add_commands(sub, _COMMANDS)
    for group, (help_text, commands) in _GROUPS.items():
        _add_commands(sub.add_parser(group, help=help_text).add_subparsers(dest=f"{group}_command", required=True),
                      commands)
    recall = sub.add_parser("recall", help="memorise key->value pairs with the bare neural memory and read them back")
    recall.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``titanmem`` command."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    takes_overrides = args.command in ("train", "prepare") or getattr(args, "eval_command", None) == "train-task"
    if extra and not takes_overrides:
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    args.overrides = _split_overrides(parser, extra)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(out_dir=args.out, steps=args.steps, seed=args.seed)
    elif args.command in ("train", "prepare"):
        from .train.config import load_config

        try:
            cfg = load_config(args.config, args.overrides)
        except ValueError as err:
            print(f"titanmem {args.command}: {err}", file=sys.stderr)
            return 2
        if args.command == "prepare":
            from .train.trainer import prepare_job_data

            print(f"prepared {prepare_job_data(cfg)}")
        else:
            from .train import train

            train(cfg, resume=args.resume)
    elif args.command == "export":
        from .train.export import export_pretrained

        print(f"wrote {export_pretrained(args.checkpoint, args.out)}")
    elif getattr(args, "run", None):
        module, _, function = args.run.partition(":")
        return getattr(importlib.import_module(module), function)(args)
    elif args.command == "recall":
        from .recall import run_recall

        run_recall(seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
