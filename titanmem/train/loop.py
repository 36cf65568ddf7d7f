"""The one training loop of titanmem: optimizer steps over micro-batches, whatever is being trained.

Language modelling (:func:`titanmem.train.train`), synthetic-task training
(:mod:`titanmem.eval.task_train`), forecasting (:mod:`titanmem.timeseries.train`) and few-shot
generation (:mod:`titanmem.fewshot.train`) differ in their data and their loss, not in how a step is
taken. Each hands :func:`train_steps` an iterator of batches and a ``loss_fn(model, batch) -> scalar
loss``; the loop does the rest the same way for all: autocast, gradient accumulation (DDP
synchronises on the last micro-batch only), clipping, the optimizer and scheduler step, skipping a
step whose gradient is not finite, and a per-step callback for logging, validation, checkpoints or
early stopping. The optimizer and the schedule come from :mod:`titanmem.train.optim` (one
weight-decay rule for every model).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..checks import check_int
from ..devices import autocast_context, loss_accumulator

__all__ = ["MAX_SKIPPED_STEPS", "LossFn", "StepRecord", "optimizer_step", "train_steps"]

# Consecutive steps with a non-finite gradient norm that train_steps skips before it gives up. A memory
# model can meet the occasional batch whose backward overflows while its forward stays finite (exactly
# repeated keys over thousands of tokens, e.g. a run of N in DNA: docs/results.md, "8K context"); a
# run of such steps means the model itself has diverged.
MAX_SKIPPED_STEPS = 10

LossFn = Callable[[nn.Module, Any], torch.Tensor]


@dataclass(frozen=True)
class StepRecord:
    """What one optimizer step did.

    Attributes:
        step: optimizer steps done so far (1 after the first).
        loss_sum: the micro-batches' losses summed (not divided by their number), a scalar on the
            training device, not yet reduced over processes (the caller reduces it if it needs to).
        grad_norm: the gradients' total norm before clipping, a scalar tensor on the device (read it
            with ``float()`` when needed: that waits for the device).
        lr: the learning rate of the first parameter group during the step.
        skipped: the gradient norm was not finite, so the parameters and the optimizer's state were
            left as they were (the scheduler still stepped: the step counts).
    """

    step: int
    loss_sum: torch.Tensor
    grad_norm: torch.Tensor
    lr: float
    skipped: bool = False


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batches: Iterator[Any],
    loss_fn: LossFn,
    *,
    grad_accum: int = 1,
    grad_clip: float = 0.0,
    device: torch.device | str = "cpu",
    autocast: torch.dtype | None = None,
    skip_nonfinite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One optimizer step over ``grad_accum`` micro-batches drawn from ``batches``.

    Each micro-batch's loss is divided by ``grad_accum`` before its backward (the gradient of the
    mean); the forward runs under ``autocast`` (e.g. ``torch.bfloat16``) when given, the backward
    outside it. Gradients are clipped to total norm ``grad_clip`` (0: not clipped, the norm is still
    measured), then the optimizer and the scheduler (if any) step and the gradients are cleared.
    With ``skip_nonfinite`` a step whose gradient norm is inf or NaN leaves the parameters and the
    optimizer's state untouched (clipping would turn such gradients into NaN weights); the scheduler
    still steps. Checking the norm waits for the device once per step.

    Returns:
        ``(loss_sum, grad_norm, lr)``: the undivided losses summed on ``device``, the norm before
        clipping (a tensor), and the learning rate the step used.
    """
    loss_sum, grad_norm, lr, _ = _step(model, optimizer, scheduler, batches, loss_fn, grad_accum, grad_clip, device,
                                       autocast, skip_nonfinite)
    return loss_sum, grad_norm, lr


def _step(model, optimizer, scheduler, batches, loss_fn, grad_accum, grad_clip, device, autocast, skip_nonfinite
          ) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
    """:func:`optimizer_step`, also returning whether the step was skipped (one device wait for both)."""
    device = torch.device(device)
    loss_sum = loss_accumulator(device)
    for micro in range(grad_accum):
        batch = next(batches)
        last = micro == grad_accum - 1
        # DDP all-reduces gradients in every backward unless told not to: once, on the last one.
        sync = nullcontext() if last or not isinstance(model, nn.parallel.DistributedDataParallel) \
            else model.no_sync()
        with sync:
            with autocast_context(device, autocast):
                loss = loss_fn(model, batch)
            (loss / grad_accum).backward()
        loss_sum += loss.detach().to(loss_sum.dtype)
    clip = grad_clip if grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    lr = optimizer.param_groups[0]["lr"]
    skipped = skip_nonfinite and not bool(torch.isfinite(grad_norm))
    if not skipped:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm, lr, skipped


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batches: Iterator[Any],
    loss_fn: LossFn,
    *,
    steps: int,
    start: int = 0,
    grad_accum: int = 1,
    grad_clip: float = 0.0,
    device: torch.device | str = "cpu",
    autocast: torch.dtype | None = None,
    on_step: Callable[[StepRecord], bool | None] | None = None,
    max_skipped: int = MAX_SKIPPED_STEPS,
) -> int:
    """Optimizer steps ``start + 1`` to ``steps`` (see :func:`optimizer_step`), ``model`` in training mode.

    A step whose gradient norm is not finite is skipped (parameters and optimizer state unchanged)
    with a ``RuntimeWarning`` naming the step; ``max_skipped`` such steps in a row are tolerated and
    the next one raises (0: the first one raises, before anything is changed).

    After each step ``on_step(record)`` runs; it may log, validate (restoring training mode after),
    save a checkpoint, or return True to stop early. Returns the number of steps done in all
    (``start`` included).

    Raises:
        TypeError, ValueError: ``steps``, ``start``, ``grad_accum`` or ``max_skipped`` not ints in range.
        FloatingPointError: more than ``max_skipped`` steps in a row had a non-finite gradient norm.
    """
    check_int("steps", steps, 0)
    check_int("start", start, 0)
    check_int("grad_accum", grad_accum, 1)
    check_int("max_skipped", max_skipped, 0)
    model.train()
    done = start
    in_a_row = 0
    while done < steps:
        loss_sum, grad_norm, lr, skipped = _step(model, optimizer, scheduler, batches, loss_fn, grad_accum, grad_clip,
                                                 device, autocast, skip_nonfinite=True)
        done += 1
        in_a_row = in_a_row + 1 if skipped else 0
        if in_a_row > max_skipped:
            raise FloatingPointError(f"the gradient norm was {float(grad_norm)} at step {done}: {in_a_row} "
                                     f"step(s) in a row without a finite gradient, more than max_skipped="
                                     f"{max_skipped}; lower the learning rate or the memory's max_lr, or bound "
                                     "its inner step with max_surprise")
        if skipped:
            warnings.warn(f"step {done}: the gradient norm is {float(grad_norm)}, so the step was skipped "
                          f"({in_a_row} in a row, at most {max_skipped})", RuntimeWarning, stacklevel=2)
        if on_step is not None and on_step(StepRecord(done, loss_sum, grad_norm, lr, skipped)):
            break
    return done
