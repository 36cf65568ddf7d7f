"""Command line: ``titanmem demo``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``titanmem`` command."""
    parser = argparse.ArgumentParser(prog="titanmem", description="Titans neural long-term memory")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="memorise key->value pairs with the neural memory and read them back")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
