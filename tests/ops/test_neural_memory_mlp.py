"""The memory MLP's derivative helpers: the fused ``activation_backward`` against the written-out
``activation_grad``, in value and in both of its gradients (the chunk op differentiates through it)."""

from __future__ import annotations

import pytest
import torch

from titanmem.ops.neural_memory.mlp import ACTIVATIONS, activation_backward, activation_grad


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_matches_written_out_derivative(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    # Keep z away from 0: relu's derivative jumps there and the two forms need not agree on it.
    z = torch.randn(3, 5, 7, generator=gen, dtype=torch.float64)
    z = (z + 0.1 * z.sign()).requires_grad_()
    grad = torch.randn(3, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    outer = torch.randn(3, 5, 7, generator=gen, dtype=torch.float64)

    fused = activation_backward(name)(grad, z)
    plain = grad * activation_grad(name)(z)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)

    fused_grads = torch.autograd.grad(fused, (grad, z), outer, allow_unused=True, materialize_grads=True)
    # relu's written-out derivative is a comparison, not a function of z in the graph: its z-gradient is 0.
    plain_grads = torch.autograd.grad(plain, (grad, z), outer, allow_unused=True, materialize_grads=True)
    for got, want in zip(fused_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_is_the_derivative_of_the_activation(name: str) -> None:
    z = (torch.linspace(-3, 3, 41, dtype=torch.float64) + 0.01).requires_grad_()
    grad = torch.linspace(-1, 1, 41, dtype=torch.float64)
    (want,) = torch.autograd.grad(ACTIVATIONS[name][0](z), z, grad)
    torch.testing.assert_close(activation_backward(name)(grad, z.detach()), want, rtol=1e-12, atol=1e-12)
