"""One reading of a device name for every command and loader: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` that ``device`` names; ``None`` or ``"auto"``: CUDA when available, else CPU.

    Raises:
        ValueError: a name that is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, or a CUDA device
            when ``torch.cuda.is_available()`` is False.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__})")
    return resolved
