"""Batches of token windows that are a pure function of the step, so training resumes exactly.

``BatchLoader`` draws training batches (random windows, or contiguous lanes for truncated backprop
through the memory state); ``eval_batches`` walks a split once in non-overlapping windows. Both
split rows across ranks so that ``world_size`` processes see exactly the rows one process with
``world_size`` times the batch would see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..checks import check_int

__all__ = ["MODES", "BatchLoader", "eval_batches"]

MODES = ("random", "sequential")
_STATE_KEYS = ("step", "mode", "seed", "batch_size", "seq_len", "world_size", "num_tokens")


def _as_array(tokens: object) -> np.ndarray:
    """``tokens`` as a 1-D integer numpy array, without copying a memmap or a CPU tensor."""
    if isinstance(tokens, torch.Tensor):
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must hold integer ids, got a tensor of dtype {tokens.dtype}")
        tokens = tokens.detach().cpu()
        try:
            tokens = tokens.numpy()
        except (TypeError, RuntimeError):  # unsigned dtypes numpy conversion may not cover
            tokens = tokens.to(torch.int64).numpy()
    if not isinstance(tokens, np.ndarray):
        raise TypeError(f"tokens must be a numpy array or torch.Tensor, got {type(tokens).__name__}")
    if tokens.dtype.kind not in "iu":
        raise TypeError(f"tokens must hold integer ids, got an array of dtype {tokens.dtype}")
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
    return tokens


def _check_rank(rank: object, world_size: object) -> tuple[int, int]:
    check_int("world_size", world_size, minimum=1)
    check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    return rank, world_size


def _windows(tokens: np.ndarray, starts: np.ndarray, width: int) -> torch.Tensor:
    """LongTensor [len(starts), width] of ``tokens[s : s + width]`` for each start ``s``."""
    rows = tokens[starts[:, None] + np.arange(width)]  # one gather; on a memmap reads only these pages
    return torch.from_numpy(np.asarray(rows, dtype=np.int64))


def _step_seed(seed: int, step: int) -> int:
    """A 63-bit generator seed that depends on both numbers (``seed * C + step`` would collide)."""
    digest = hashlib.sha256(f"titanmem.BatchLoader:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class BatchLoader:
    """Batches of ``seq_len + 1`` consecutive tokens: inputs are ``[:, :-1]``, targets ``[:, 1:]``.

    ``mode="random"``: at step ``s`` the ``global_batch = batch_size * world_size`` start offsets are
    drawn uniformly from ``[0, len(tokens) - seq_len - 1]`` by a ``torch.Generator`` seeded from a
    hash of ``(seed, s)``, the same on every rank; rank ``r`` takes rows ``[r * batch_size,
    (r + 1) * batch_size)``.

    ``mode="sequential"``: the tokens are cut into ``global_batch`` lanes of ``L = len(tokens) //
    global_batch`` tokens; at step ``s`` row ``j`` (global row ``g = rank * batch_size + j``) reads
    ``[g * L + p, g * L + p + seq_len + 1)`` with ``p = (s % steps_per_epoch) * seq_len`` and
    ``steps_per_epoch = (L - 1) // seq_len``. A row's inputs at step ``s + 1`` start right after its
    inputs at step ``s``, which truncated backprop through the memory state needs; where
    ``starts_new_pass(step)`` is true the lanes start over and carried states must be reset.

    Iteration never ends (it wraps around). ``batch_at(step)`` is what ``next()`` returns at that
    step, so ``state_dict()`` (the step and the layout) is all a checkpoint needs.
    """

    def __init__(self, tokens: np.ndarray | torch.Tensor, batch_size: int, seq_len: int, *, mode: str = "random",
                 seed: int = 0, rank: int = 0, world_size: int = 1, start_step: int = 0) -> None:
        self.tokens = _as_array(tokens)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seq_len = check_int("seq_len", seq_len, minimum=1)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.seed = check_int("seed", seed, minimum=-(2**63))
        self.rank, self.world_size = _check_rank(rank, world_size)
        self.step = check_int("start_step", start_step, minimum=0)
        self.global_batch = batch_size * world_size
        self.num_tokens = int(self.tokens.shape[0])
        if self.num_tokens < seq_len + 1:
            raise ValueError(f"tokens must hold at least seq_len + 1 = {seq_len + 1} tokens for one window, "
                             f"got {self.num_tokens}")
        self.lane_len: int | None = None
        self.steps_per_epoch: int | None = None  # sequential only: a random sampler has no passes
        if mode == "sequential":
            self.lane_len = self.num_tokens // self.global_batch
            self.steps_per_epoch = (self.lane_len - 1) // seq_len if self.lane_len else 0
            if self.steps_per_epoch < 1:
                raise ValueError(
                    f"tokens must hold at least global batch * (seq_len + 1) = {self.global_batch} * {seq_len + 1} "
                    f"= {self.global_batch * (seq_len + 1)} tokens in sequential mode, got {self.num_tokens}")

    def __iter__(self) -> BatchLoader:
        return self

    def __next__(self) -> torch.Tensor:
        batch = self.batch_at(self.step)
        self.step += 1
        return batch

    def _starts(self, step: int) -> np.ndarray:
        """Global start offsets of this rank's rows at ``step``."""
        rows = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        if self.mode == "random":
            gen = torch.Generator().manual_seed(_step_seed(self.seed, step))
            # All global rows are drawn on every rank so that a rank's rows do not depend on world_size.
            starts = torch.randint(0, self.num_tokens - self.seq_len, (self.global_batch,), generator=gen)
            return starts[rows].numpy()
        offset = (step % self.steps_per_epoch) * self.seq_len
        return np.arange(self.global_batch, dtype=np.int64)[rows] * self.lane_len + offset

    def batch_at(self, step: int) -> torch.Tensor:
        """LongTensor ``[batch_size, seq_len + 1]`` that ``next()`` returns at ``step``."""
        check_int("step", step, minimum=0)
        return _windows(self.tokens, self._starts(step), self.seq_len + 1)

    def starts_new_pass(self, step: int) -> bool:
        """Whether ``step`` begins a pass (sequential: a lane restarts; random: only step 0)."""
        check_int("step", step, minimum=0)
        if self.mode == "sequential":
            return step % self.steps_per_epoch == 0
        return step == 0

    def state_dict(self) -> dict[str, Any]:
        """The position and the layout it is valid for."""
        return {"step": self.step, "mode": self.mode, "seed": self.seed, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "world_size": self.world_size, "num_tokens": self.num_tokens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state["step"]``; a different layout would silently change the data, so it raises.

        The world size may change as long as the global batch (``batch_size * world_size``) does not:
        the global rows, and so the data, stay the same.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state is missing the fields {missing} (expected those of state_dict())")
        for key in ("mode", "seed", "seq_len", "num_tokens"):
            if state[key] != getattr(self, key):
                raise ValueError(f"state has {key}={state[key]!r} but this loader has {key}={getattr(self, key)!r}; "
                                 "resuming would change the data")
        saved = state["batch_size"] * state["world_size"]
        if saved != self.global_batch:
            raise ValueError(f"state has global batch (batch_size * world_size) = {saved} but this loader has "
                             f"{self.global_batch}; resuming would change the data")
        self.step = check_int("state['step']", state["step"], minimum=0)


def eval_batches(tokens: np.ndarray | torch.Tensor, seq_len: int, batch_size: int, max_tokens: int | None = None,
                 *, rank: int = 0, world_size: int = 1) -> Iterator[torch.Tensor]:
    """Non-overlapping windows in order, as LongTensors of up to ``batch_size`` rows of ``seq_len + 1``.

    Window ``i`` covers ``[i * seq_len, i * seq_len + seq_len + 1)`` (consecutive windows share one
    token), so every target position of the first ``max_tokens`` tokens (all if None) is predicted
    once, except a tail of fewer than ``seq_len`` targets that does not fill a window. Rank ``r``
    gets windows ``i`` with ``i % world_size == r``; ranks may get different numbers of batches.
    Arguments are checked at the call, not at the first ``next()``.
    """
    arr = _as_array(tokens)
    check_int("seq_len", seq_len, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    rank, world_size = _check_rank(rank, world_size)
    n = arr.shape[0]
    if max_tokens is not None:
        n = min(n, check_int("max_tokens", max_tokens, minimum=seq_len + 1))
    if n < seq_len + 1:
        raise ValueError(f"tokens must hold at least seq_len + 1 = {seq_len + 1} tokens for one window, got {n}")
    mine = np.arange(rank, (n - 1) // seq_len, world_size, dtype=np.int64) * seq_len

    def batches() -> Iterator[torch.Tensor]:
        for i in range(0, len(mine), batch_size):
            yield _windows(arr, mine[i : i + batch_size], seq_len + 1)

    return batches()
