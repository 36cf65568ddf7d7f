"""Command line: ``titanmem demo|train|prepare|export|recall``.

``train`` and ``prepare`` take a TOML job config (``--config``) and ``--section.key=value``
overrides, e.g. ``titanmem train --config configs/tiny/mac.toml --optim.lr=3e-4 --schedule.steps=200``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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
    recall = sub.add_parser("recall", help="memorise key->value pairs with the bare neural memory and read them back")
    recall.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``titanmem`` command."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "prepare"):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    if args.command == "demo":
        from .demo import run_demo

        run_demo(out_dir=args.out, steps=args.steps, seed=args.seed)
    elif args.command in ("train", "prepare"):
        from .train.config import load_config

        try:
            cfg = load_config(args.config, _split_overrides(parser, extra))
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
    elif args.command == "recall":
        from .recall import run_recall

        run_recall(seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
