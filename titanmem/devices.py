"""Devices: one reading of a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``) for every command and
loader, the CPU set-up of the training commands, the loss sums that collectives reduce on the training
device, and autocast by dtype."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast_context", "loss_accumulator", "prepare_cpu", "resolve_device"]


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


def prepare_cpu(threads: int = 0) -> None:
    """Set torch's CPU threads to ``threads`` (0 keeps torch's choice) and flush subnormal floats to zero.

    Why the flush: during training some of the memory's float32 intermediates fall below 1.2e-38
    (subnormal), and x86 CPUs compute on subnormals many times slower than on normal floats. On the
    MAL DNA pretraining the step time grew from 2.5 s to 4.3 s over 200 steps without it; in a side
    by side run of 70 steps it was 1.26x faster by the end with it, with every loss and the validation
    the same to the last digit (docs/benchmarks.md, "Subnormal floats on the CPU").
    ``torch.set_flush_denormal`` is process-wide and has no effect on CUDA; the training commands
    call this once at their start.

    Raises:
        TypeError: ``threads`` is not an int.
        ValueError: ``threads`` is negative.
    """
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int (0 keeps torch's choice), got {type(threads).__name__} {threads!r}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 keeps torch's choice), got {threads}")
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def loss_accumulator(device: torch.device) -> torch.Tensor:
    """A zero on ``device`` to sum losses in: float64, except on MPS, which has no float64.

    It lives on the training device because the process group reduces it there (NCCL cannot reduce
    CPU tensors), and summing on the device saves a host sync per batch.
    """
    return torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing when ``dtype`` is None.

    Nothing rather than ``autocast(enabled=False)``: a disabled autocast would still turn off an
    autocast context the caller opened.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
