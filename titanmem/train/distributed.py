"""Process groups, model wrapping (DDP or FSDP2) and full state dicts for checkpoints.

The same entry point runs alone or under ``torchrun``: the ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``
variables torchrun sets decide. CPU processes talk over gloo, GPU processes over nccl.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..devices import resolve_device
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

__all__ = ["DistInfo", "all_reduce_sum", "full_model_state", "full_optimizer_state", "load_optimizer_state",
           "setup_distributed", "teardown_distributed", "wrap_model"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from err


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this process's device.

    ``device``: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"`` (an error without CUDA).
    """
    use_cuda = resolve_device(device).type == "cuda"
    world_size, rank, local_rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, strategy: str) -> nn.Module:
    """``model`` as trained under ``info``: itself alone, DDP, or FSDP2 with one unit per block.

    With FSDP2 the module is sharded in place (its parameters become DTensors) and returned as is.
    """
    if not info.distributed:
        return model
    if strategy == "ddp":
        ids = [info.device.index] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.model.layers:
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"run.distributed must be 'ddp' or 'fsdp', got {strategy!r}")


def _options() -> StateDictOptions:
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded weights (on the CPU) of a plain, DDP or FSDP2 model; on ranks > 0 of FSDP, empty.

    Every rank must call it (FSDP gathers shards collectively).
    """
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return get_model_state_dict(inner, options=_options())


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state keyed by parameter name (portable across plain, DDP and FSDP2 runs).

    Every rank must call it.
    """
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return get_optimizer_state_dict(inner, optimizer, options=_options())


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore :func:`full_optimizer_state` output into ``optimizer`` (every rank passes the full state)."""
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    set_optimizer_state_dict(inner, optimizer, state, options=StateDictOptions(full_state_dict=True))


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``values`` over all processes (itself when alone).

    Raises ``ValueError`` when ``values`` is not on ``info.device``: the process group's backend
    reduces tensors of that device only (NCCL refuses CPU tensors), so a CPU tensor that works under
    gloo would fail on GPUs.
    """
    want = info.device
    if values.device.type != want.type or (want.index is not None and values.device.index != want.index):
        raise ValueError(f"values must be on the training device {info.device} to be reduced, got a tensor on "
                         f"{values.device}")
    if info.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
