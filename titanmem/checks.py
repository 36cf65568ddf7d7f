"""Argument checks shared by every stratum: one message format per mistake.

This module sits outside the strata (it imports only torch), so the ops, the modules and the data
code all use the same checks. A wrong type raises ``TypeError``, a value out of range ``ValueError``;
both name the argument, what it must be and what was given.
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_fraction", "check_int", "check_real", "check_tensor"]


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) ``>= minimum``.

    Raises:
        TypeError: ``value`` is not an int (a bool counts as not an int).
        ValueError: ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_real(name: str, value: object, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number in ``[low, high]`` (``(low, high]`` with
    ``low_open``); either bound may be None.

    Raises:
        TypeError: not an int or float (bools are refused).
        ValueError: not finite, or outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    below = low is not None and (value <= low if low_open else value < low)
    if not math.isfinite(value) or below or (high is not None and value > high):
        lo, hi = ("-inf" if low is None else low), ("inf" if high is None else high)
        where = f"{'(' if low_open else '['}{lo}, {hi}]"
        raise ValueError(f"{name} must be a finite number in {where}, got {value!r}")
    return float(value)


def check_fraction(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a real number in [0, 1).

    Raises:
        TypeError: ``value`` is not an int or float (bools are refused).
        ValueError: ``value`` is outside [0, 1) or NaN.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__} ({value!r})")
    if not 0.0 <= value < 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_tensor(name: str, value: object, dim: int, last: int | None = None) -> torch.Tensor:
    """Return ``value`` if it is a floating tensor with ``dim`` dimensions (and last size ``last``).

    Raises:
        TypeError: not a tensor, or not floating point.
        ValueError: another number of dimensions or last size.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.dim() != dim or (last is not None and value.shape[-1] != last):
        want = f"{dim}-D" + (f" with last size {last}" if last is not None else "")
        raise ValueError(f"{name} must be {want}, got shape {tuple(value.shape)}")
    return value
