"""The invariants every sequence model of titanmem must keep, written once for blocks and models.

Each check takes the thing under test as a function of a sequence ``x [B, T, ...]`` and a state
(``None`` before the first token) returning ``(y [B, T, ...], state)``: a block is such a function as
it is; a causal LM is one through :func:`lm_step` (token ids in, logits out, a ``TitansCache`` as the
state). A new architecture or memory rule gets every invariant by being written as one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from tests.helpers import assert_close, run_in_pieces

Step = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]

__all__ = ["Step", "check_causal", "check_decoding_equals_parallel", "check_pieces_equal_one_call",
           "check_rows_independent", "lm_step"]


def lm_step(model: torch.nn.Module) -> Step:
    """A causal LM as a :data:`Step`: ``ids [B, n]`` and a cache (None: a new one) -> ``logits [B, n, V]``."""
    from titanmem.models import TitansCache

    def step(ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        cache = TitansCache() if cache is None else cache
        with torch.no_grad():
            return model(ids, cache=cache, use_cache=True).logits, cache

    return step


def _full(step: Step, x: torch.Tensor) -> torch.Tensor:
    return step(x, None)[0]


def check_causal(step: Step, x: torch.Tensor, p: int, perturb: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Changing position ``p`` (``x[:, p] = perturb(x[:, p])``) leaves every output before ``p`` bit for
    bit as it was and changes the output at ``p``."""
    changed = x.clone()
    changed[:, p] = perturb(changed[:, p])
    before, after = _full(step, x), _full(step, changed)
    assert torch.equal(before[:, :p], after[:, :p]), f"an output before the changed position {p} moved"
    assert (before[:, p] - after[:, p]).abs().max() > 1e-8, f"the output at the changed position {p} did not move"


def check_pieces_equal_one_call(step: Step, x: torch.Tensor, lengths: Sequence[int], rtol: float) -> None:
    """Feeding ``x`` in pieces of ``lengths`` with the state carried gives the outputs of one call."""
    assert_close("pieces", _full(step, x), run_in_pieces(step, x, lengths)[0], rtol)


def check_decoding_equals_parallel(step: Step, x: torch.Tensor, prefill: int, rtol: float) -> None:
    """A prefill of ``prefill`` positions, then one position per call, gives the outputs of one call."""
    length = x.shape[1]
    check_pieces_equal_one_call(step, x, (prefill,) + (1,) * (length - prefill), rtol)


def check_rows_independent(step: Step, x: torch.Tensor, rtol: float) -> None:
    """Each batch row's outputs are those of the row run alone."""
    batch = _full(step, x)
    for b in range(x.shape[0]):
        assert_close(f"row {b}", _full(step, x[b : b + 1]), batch[b : b + 1], rtol)
