"""The importance-weighted bound and VIMCO: fast against naive, unbiased gradients, bound below log p(x)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from titanmem.fewshot.bounds import (iw_bound, vimco_learning_signals, vimco_learning_signals_naive, vimco_surrogate,
                                     vimco_surrogate_naive)
from titanmem.fewshot.models import VMA, FewShotConfig


def test_vimco_matches_its_naive_twin_in_value_and_gradient():
    torch.manual_seed(1)
    log_w = (3 * torch.randn(5, 4, 6, dtype=torch.float64)).requires_grad_()
    log_q = torch.randn(5, 4, 6, dtype=torch.float64).requires_grad_()
    fast = vimco_surrogate(log_w, log_q)
    slow = vimco_surrogate_naive(log_w, log_q)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast, iw_bound(log_w))  # the value is the bound
    torch.testing.assert_close(iw_bound(log_w), torch.log(torch.exp(log_w).mean(-1)))
    grads_fast = torch.autograd.grad(fast.sum(), (log_w, log_q))
    grads_slow = torch.autograd.grad(slow.sum(), (log_w, log_q))
    for a, b in zip(grads_fast, grads_slow):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vimco_learning_signals(log_w), vimco_learning_signals_naive(log_w), rtol=1e-12, atol=1e-12)
    # the learning signals are what VIMCO eq. 10 says, written out for one row
    row = log_w[0, 0].detach()
    w = row.exp()
    k = 6
    for i in range(k):
        rest = torch.cat([row[:i], row[i + 1:]])
        expected = math.log(w.mean()) - math.log((w.sum() - w[i] + rest.mean().exp()) / k)
        assert abs(float(vimco_learning_signals(row.unsqueeze(0))[0, i]) - expected) < 1e-12


def test_vimco_refuses_one_sample():
    with pytest.raises(ValueError, match="K >= 2"):
        vimco_surrogate(torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="same shape"):
        vimco_surrogate(torch.zeros(3, 2), torch.zeros(3, 3))


# A discrete toy: a in {0, 1, 2}, q_phi(a) = softmax(phi), weights w(a) = p(a) g(a) / q_phi(a).
_PRIOR = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
_LIKELIHOOD = torch.tensor([0.9, 0.05, 0.4], dtype=torch.float64)
_K = 3


def _exact_objective(phi: torch.Tensor) -> torch.Tensor:
    """E_{a_1..K ~ q}[log (1/K) sum_k w(a_k)] by enumerating all 3^K tuples."""
    log_q = torch.log_softmax(phi, -1)
    total = phi.new_zeros(())
    for draw in itertools.product(range(3), repeat=_K):
        a = torch.tensor(draw)
        prob = log_q[a].sum().exp()
        log_w = torch.log(_PRIOR[a] * _LIKELIHOOD[a]) - log_q[a]
        total = total + prob * (torch.logsumexp(log_w, 0) - math.log(_K))
    return total


def _estimates(phi: torch.Tensor, n: int, vimco: bool) -> torch.Tensor:
    """``n`` independent single-draw gradient estimates ``[n, 3]``."""
    phis = phi.detach().expand(n, -1).clone().requires_grad_()
    log_q_all = torch.log_softmax(phis, -1)
    a = torch.multinomial(log_q_all.detach().exp(), _K, replacement=True, generator=torch.Generator().manual_seed(7))
    log_q = log_q_all.gather(1, a)
    log_w = torch.log(_PRIOR[a] * _LIKELIHOOD[a]) - log_q
    objective = vimco_surrogate(log_w, log_q) if vimco else iw_bound(log_w)
    (grad,) = torch.autograd.grad(objective.sum(), phis)
    return grad


def test_vimco_gradient_is_unbiased_on_a_toy_with_a_closed_form():
    phi = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad(_exact_objective(phi), phi)
    n = 40000
    grads = _estimates(phi, n, vimco=True)
    mean, stderr = grads.mean(0), grads.std(0) / math.sqrt(n)
    assert torch.all((mean - exact).abs() < 4 * stderr), (mean, exact, stderr)
    # The test can fail: the pathwise term alone (no score function for a) is biased, and it shows.
    naive = _estimates(phi, n, vimco=False)
    naive_mean, naive_se = naive.mean(0), naive.std(0) / math.sqrt(n)
    assert torch.any((naive_mean - exact).abs() > 10 * naive_se)


def _tiny_vma() -> VMA:
    torch.manual_seed(3)
    model = VMA(FewShotConfig(image_size=3, hidden=16, latent=1, embedding=4)).double()
    with torch.no_grad():  # make the image depend strongly on z, so that q(z | x, m_a) is far from exact
        model.vae.decoder[0].weight[:, :1] *= 8
        model.vae.decoder[-1].weight *= 4
    model.eval()
    return model


def _exact_log_likelihood(model: VMA, memory: torch.Tensor, query: torch.Tensor) -> float:
    """log p(x | M) = log sum_a (1/M) int p(z | m_a) p(x | z, m_a) dz, by quadrature over the 1-D z."""
    content, _ = model.embed(memory.flatten(2))
    x = query.flatten(1)[0]
    terms = []
    for a in range(memory.shape[1]):
        e = content[0, a]
        mean, log_std = model.vae.prior(e)
        std = float(log_std.exp())
        grid = mean + std * torch.linspace(-12, 12, 20001, dtype=torch.float64).unsqueeze(-1)  # [G, 1]
        log_prior = -0.5 * ((grid - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
        logits = model.vae.logits(grid, e.expand(grid.shape[0], -1))
        log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                                        reduction="none").sum(-1)
        log_f = log_prior.squeeze(-1) + log_lik
        step = float(grid[1, 0] - grid[0, 0])
        terms.append(torch.logsumexp(log_f, 0) + math.log(step) - math.log(memory.shape[1]))
    return float(torch.logsumexp(torch.stack(terms), 0))


@torch.no_grad()
def test_k_sample_bound_is_below_the_exact_likelihood_and_tightens_with_k():
    model = _tiny_vma()
    g = torch.Generator().manual_seed(0)
    memory = torch.bernoulli(torch.full((1, 3, 3, 3), 0.5, dtype=torch.float64), generator=g)
    query = memory[:, 1].clone()
    query[0, 0, 0] = 1 - query[0, 0, 0]  # near entry 1, not equal to it
    exact = _exact_log_likelihood(model, memory, query)
    replicas = 4000
    log_w, _ = model.log_weights(memory.expand(replicas, -1, -1, -1), query.expand(replicas, -1, -1), 64)
    means = {}
    for k in (1, 4, 16, 64):
        bounds = iw_bound(log_w[:, :k])
        mean, stderr = float(bounds.mean()), float(bounds.std()) / math.sqrt(replicas)
        assert mean <= exact + 3 * stderr, (k, mean, exact, stderr)
        means[k] = (mean, stderr)
    ordered = [means[k][0] for k in (1, 4, 16, 64)]
    assert all(b > a for a, b in zip(ordered, ordered[1:])), means
    assert exact - means[1][0] > 0.05  # the posterior is not exact, so K matters
    assert exact - means[64][0] < 0.5 * (exact - means[1][0])
