"""Argument checks shared by the modules and layers: one message format per mistake."""

from __future__ import annotations

import torch

__all__ = ["check_int", "check_tensor"]


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) ``>= minimum``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_tensor(name: str, value: object, dim: int, last: int | None = None) -> torch.Tensor:
    """Return ``value`` if it is a floating tensor with ``dim`` dimensions (and last size ``last``)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.dim() != dim or (last is not None and value.shape[-1] != last):
        want = f"{dim}-D" + (f" with last size {last}" if last is not None else "")
        raise ValueError(f"{name} must be {want}, got shape {tuple(value.shape)}")
    return value
