"""Argument types and error reporting for the ``titanmem`` command line.

A bad value fails in argparse, naming the option: ``type=positive_int`` makes argparse print
``error: argument --steps: expected an integer >= 1, got -3`` and exit with status 2, instead of the value
reaching library code that raises a traceback. This module imports nothing heavy, so the subcommand
modules can use it while the parser is built.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable

__all__ = [
    "CommandError", "int_at_least", "int_list_at_least", "nonneg_float", "nonneg_int", "positive_float",
    "positive_int", "report_error",
]


class CommandError(ValueError):
    """A user mistake found after parsing (a missing file, a bad config): ``titanmem``'s ``main`` prints it as
    ``titanmem <command>: <message>`` on one line and returns 2. Raise it only around the calls that check the
    user's input, so that a bug elsewhere still shows its traceback. A ``ValueError``, so that callers of a
    command function outside the CLI (``benchmarks/``, tests) see the error type they saw before."""


def _shown(text: str) -> str:
    # The value as typed (`got -3`), quoted only when it would otherwise be invisible or ambiguous.
    return text if text.strip() == text and text else repr(text)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting an integer ``>= minimum``; anything else is an ``ArgumentTypeError``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {_shown(text)}")
        return value

    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def int_list_at_least(minimum: int) -> Callable[[str], list[int]]:
    """An argparse ``type``: comma-separated integers (``96,192``), each ``>= minimum``, at least one."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers >= {minimum}, got {_shown(text)}")
        return values

    return parse


def _float(text: str, strict: bool) -> float:
    bound = "> 0" if strict else ">= 0"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (strict and value == 0):
        raise argparse.ArgumentTypeError(f"expected a number {bound}, got {_shown(text)}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type`` accepting a finite number ``> 0``."""
    return _float(text, strict=True)


def nonneg_float(text: str) -> float:
    """An argparse ``type`` accepting a finite number ``>= 0``."""
    return _float(text, strict=False)


def report_error(command: str, error: object) -> int:
    """Print ``titanmem <command>: <error>`` on stderr as one line; returns 2, the exit status of a user mistake.

    Line breaks in the message (a hint on a second line, a list of bad checkpoints) become spaces, so the
    terminal shows one line however the library phrased it.
    """
    message = re.sub(r"\s*\n\s*", " ", str(error).strip())
    print(f"titanmem {command}: {message}", file=sys.stderr)
    return 2
