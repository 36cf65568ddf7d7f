"""Validation loss in nats per token, bits per byte and perplexity over a token stream."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import eval_batches
from ..devices import autocast_context, loss_accumulator
from .distributed import DistInfo, all_reduce_sum

__all__ = ["ValidationResult", "validate"]


@dataclass(frozen=True)
class ValidationResult:
    """``loss``: mean nats per predicted token; ``bpb``: bits per byte of text; ``ppl``: exp(loss)."""

    loss: float
    bpb: float
    ppl: float
    tokens: int


@torch.no_grad()
def validate(
    model: nn.Module, tokens: np.ndarray, *, seq_len: int, batch_size: int, max_tokens: int,
    bytes_per_token: float, info: DistInfo, shard: bool = True, autocast_dtype: torch.dtype | None = None,
) -> ValidationResult:
    """Score every token of the first ``max_tokens`` of ``tokens`` once, in windows of ``seq_len``.

    Each window starts from an empty state (no memory carried between windows), so the number is
    comparable across variants and independent of the batch layout. With ``shard`` the windows are
    split over processes and the sums reduced; without it every process scores all of them (FSDP:
    its collectives need every rank in every forward). ``bits per byte`` is the total in bits over
    the text's UTF-8 bytes (``bytes_per_token`` of the split times the tokens scored).
    """
    was_training = model.training
    model.eval()
    rank, world = (info.rank, info.world_size) if shard else (0, 1)
    # Summed on the device: no host sync per batch, and the process group reduces it there.
    nll_sum, count = loss_accumulator(info.device), 0
    for batch in eval_batches(tokens, seq_len, batch_size, max_tokens, rank=rank, world_size=world):
        batch = batch.to(info.device)
        with autocast_context(info.device, autocast_dtype):
            logits = model(input_ids=batch[:, :-1], use_cache=False).logits
        nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
        nll_sum += nll.to(nll_sum.dtype)
        count += batch[:, 1:].numel()
    totals = torch.stack((nll_sum, torch.tensor(float(count), dtype=nll_sum.dtype, device=info.device)))
    if shard:
        totals = all_reduce_sum(totals, info)
    model.train(was_training)
    nll_sum, count = totals.tolist()
    if count == 0:
        raise ValueError(f"tokens: nothing to validate on (max_tokens={max_tokens}, seq_len={seq_len})")
    loss = nll_sum / count
    return ValidationResult(loss=loss, bpb=nll_sum / math.log(2) / (count * bytes_per_token),
                            ppl=math.exp(min(loss, 700.0)), tokens=int(count))
