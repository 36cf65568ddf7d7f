"""Shared factories and comparison helpers for the titanmem test suite."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from titanmem.ops import MemoryState, neural_memory_chunk, neural_memory_naive

TINY = 1e-30


def rel_err(ref: torch.Tensor, out: torch.Tensor) -> float:
    """``max|ref - out| / max(max|ref|, tiny)``, computed in float64."""
    ref64, out64 = ref.detach().to(torch.float64), out.detach().to(torch.float64)
    if ref64.numel() == 0:
        return 0.0
    scale = max(ref64.abs().max().item(), TINY)
    return (ref64 - out64).abs().max().item() / scale


def assert_close(name: str, ref: torch.Tensor, out: torch.Tensor, rtol: float) -> float:
    """Assert equal shapes, finite values and a relative error (see :func:`rel_err`) <= rtol."""
    assert ref.shape == out.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert bool(torch.isfinite(out).all()), f"{name}: non-finite values in the output"
    assert bool(torch.isfinite(ref).all()), f"{name}: non-finite values in the reference"
    err = rel_err(ref, out)
    assert err <= rtol, f"{name}: relative error {err:.3e} > rtol {rtol:.1e}"
    return err


@dataclass
class Inputs:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    theta: torch.Tensor
    eta: torch.Tensor
    alpha: torch.Tensor
    state: MemoryState

    def args(self) -> tuple:
        return (self.q, self.k, self.v, self.theta, self.eta, self.alpha, self.state)

    def leaves(self) -> list[torch.Tensor]:
        """Every differentiable input: q, k, v, the three gates, initial weights and momentum."""
        return [self.q, self.k, self.v, self.theta, self.eta, self.alpha,
                *self.state.weights, *self.state.momentum]

    def leaf_names(self) -> list[str]:
        depth = len(self.state.weights)
        return (["q", "k", "v", "theta", "eta", "alpha"]
                + [f"W0[{i}]" for i in range(depth)] + [f"S0[{i}]" for i in range(depth)])


def layer_dims(dk: int, dv: int, depth: int, hidden: int) -> list[tuple[int, int]]:
    sizes = [dk] + [hidden] * (depth - 1) + [dv]
    return list(zip(sizes[:-1], sizes[1:]))


def make_state(B: int, H: int, dims: list[tuple[int, int]], dtype=torch.float64,
               momentum_scale: float = 0.1, requires_grad: bool = False,
               generator: torch.Generator | None = None) -> MemoryState:
    ws = [torch.randn(B, H, a, b, dtype=dtype, generator=generator) / a**0.5 for a, b in dims]
    ss = [torch.randn(B, H, a, b, dtype=dtype, generator=generator) * momentum_scale for a, b in dims]
    if requires_grad:
        for t in ws + ss:
            t.requires_grad_(True)
    return MemoryState(tuple(ws), tuple(ss))


def make_inputs(B: int = 2, T: int = 9, H: int = 2, Dk: int = 8, Dv: int = 8, depth: int = 1,
                hidden: int = 16, dtype=torch.float64, requires_grad: bool = False, seed: int = 0,
                state_dtype=None, lr_scale: float = 0.1, decay_scale: float = 0.2) -> Inputs:
    """Seeded, numerically tame inputs: l2-normalised q/k, theta = U*0.1, eta = U, alpha = U*0.2,
    weights ~ randn / sqrt(d_in), non-zero initial momentum ~ randn * 0.1.

    q, k, v and the gates are created in ``dtype``, the state in ``state_dtype`` (default ``dtype``).
    With ``requires_grad`` every input (state included) is a leaf requiring grad.
    """
    g = torch.Generator().manual_seed(seed)
    state_dtype = dtype if state_dtype is None else state_dtype
    f64 = torch.float64

    def normed(*shape):
        x = torch.randn(*shape, dtype=f64, generator=g)
        return x / x.norm(dim=-1, keepdim=True)

    q = normed(B, T, H, Dk)
    k = normed(B, T, H, Dk)
    v = torch.randn(B, T, H, Dv, dtype=f64, generator=g)
    theta = torch.rand(B, T, H, dtype=f64, generator=g) * lr_scale
    mom = torch.rand(B, T, H, dtype=f64, generator=g)
    dec = torch.rand(B, T, H, dtype=f64, generator=g) * decay_scale
    q, k, v, theta, mom, dec = (t.to(dtype) for t in (q, k, v, theta, mom, dec))
    state = make_state(B, H, layer_dims(Dk, Dv, depth, hidden), dtype=f64, generator=g)
    state = state.to(state_dtype)
    if requires_grad:
        for t in (q, k, v, theta, mom, dec, *state.weights, *state.momentum):
            t.requires_grad_(True)
    return Inputs(q, k, v, theta, mom, dec, state)


def linear_functional(y: torch.Tensor, state: MemoryState, seed: int = 1234) -> torch.Tensor:
    """A random linear functional of y and of every final weight and momentum tensor (float64, on y's device).

    The coefficients are drawn on the CPU and moved, so the functional is the same on every device.
    """
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64, device=y.device)
    for t in (y, *state.weights, *state.momentum):
        r = torch.randn(t.shape, dtype=torch.float64, generator=g).to(t.device)
        total = total + (t.to(torch.float64) * r).sum()
    return total


def run_with_grads(fn, inp: Inputs, **kwargs):
    """Run ``fn`` on ``inp`` and return ``(y, state, grads)`` with grads of :func:`linear_functional`
    w.r.t. every leaf of ``inp`` (in :meth:`Inputs.leaves` order)."""
    y, state = fn(*inp.args(), **kwargs)
    loss = linear_functional(y, state)
    grads = torch.autograd.grad(loss, inp.leaves())
    return y, state, grads


def compare_states(prefix: str, ref: MemoryState, out: MemoryState, rtol: float) -> None:
    assert len(ref.weights) == len(out.weights), f"{prefix}: depth {len(out.weights)} != {len(ref.weights)}"
    assert len(ref.momentum) == len(out.momentum)
    for i, (a, b) in enumerate(zip(ref.weights, out.weights)):
        assert b.dtype == a.dtype, f"{prefix} weights[{i}] dtype {b.dtype} != {a.dtype}"
        assert_close(f"{prefix} weights[{i}]", a, b, rtol)
    for i, (a, b) in enumerate(zip(ref.momentum, out.momentum)):
        assert b.dtype == a.dtype, f"{prefix} momentum[{i}] dtype {b.dtype} != {a.dtype}"
        assert_close(f"{prefix} momentum[{i}]", a, b, rtol)


def run_in_pieces(module, x: torch.Tensor, lengths) -> tuple[torch.Tensor, object]:
    """Feed ``x [B, T, ...]`` to ``module(x_piece, state) -> (y, state)`` in pieces of ``lengths``
    (which must add up to T), carrying the state; returns the concatenated outputs and the last state."""
    outs, state, start = [], None, 0
    for n in lengths:
        y, state = module(x[:, start : start + n], state)
        outs.append(y)
        start += n
    assert start == x.shape[1], f"piece lengths {lengths} do not add up to {x.shape[1]}"
    return torch.cat(outs, dim=1), state


IMPLS = [
    pytest.param(neural_memory_naive, id="naive"),
    pytest.param(neural_memory_chunk, id="chunk"),
]
