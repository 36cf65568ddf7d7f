"""The carried state of the neural memory: MLP weights and momentum, per batch row and head."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

__all__ = ["MemoryState", "state_precision"]


def state_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which the memory's arithmetic runs in the state's dtype, whatever autocast says.

    Under ``torch.autocast`` the coefficient matmuls and the state update would otherwise run in
    bfloat16 (0.45% off in the reads, growing with the gates); the state is float32, and so is the
    arithmetic that updates it. The op casts its inputs to the state's dtype itself.
    """
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class MemoryState:
    """Weights ``W_1..W_L`` and momentum ``S_1..S_L`` of the memory MLP (paper eqs. 13-14).

    Every tensor has shape ``[B, H, d_in, d_out]`` (row convention: a layer computes ``x @ W``),
    and the momentum tensors have the shapes of the weights. The state is float32 (float64 is
    accepted for numerical checks) whatever the dtype of the inputs that update it.
    """

    weights: tuple[torch.Tensor, ...]
    momentum: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(self.weights))
        object.__setattr__(self, "momentum", tuple(self.momentum))

    @property
    def depth(self) -> int:
        """Number of layers L of the memory MLP."""
        return len(self.weights)

    @classmethod
    def initial(
        cls,
        weights: tuple[torch.Tensor, ...] | list[torch.Tensor],
        batch_size: int,
        dtype: torch.dtype = torch.float32,
    ) -> MemoryState:
        """State with zero momentum from per-head initial weights ``[H, d_in, d_out]``.

        The weights are expanded (and copied) to ``[batch_size, H, d_in, d_out]``; autograd flows
        back to the given tensors, so a learned initial memory ``M_0`` trains through this.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ws = []
        for i, w in enumerate(weights):
            if w.dim() != 3:
                raise ValueError(f"weights[{i}] must have shape [H, d_in, d_out], got {tuple(w.shape)}")
            ws.append(w.to(dtype).unsqueeze(0).expand(batch_size, *w.shape).clone())
        return cls(tuple(ws), tuple(torch.zeros_like(w) for w in ws))

    def detach(self) -> MemoryState:
        """The same values cut from the autograd graph (truncated backprop through time)."""
        return MemoryState(
            tuple(w.detach() for w in self.weights), tuple(s.detach() for s in self.momentum)
        )

    def to(self, *args, **kwargs) -> MemoryState:
        """``Tensor.to`` applied to every tensor of the state."""
        return MemoryState(
            tuple(w.to(*args, **kwargs) for w in self.weights),
            tuple(s.to(*args, **kwargs) for s in self.momentum),
        )
