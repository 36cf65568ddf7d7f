"""neural_memory_family_chunk computes the numbers of the token-loop oracle neural_memory_family_naive, for
every choice of the family (objective, retention, optimizer, window, feature map), and with the Titans
rule it computes the Titans op's numbers.

float64 throughout: outputs, the final state and the gradient of a random functional of both with
respect to every input (gates, window gates, Huber thresholds, initial state, window context).
Measured errors are ~1e-16 to ~3e-14 (Newton-Schulz, a degree-5 polynomial applied five times,
loses the most); the tolerance is 1e-9.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from tests.helpers import assert_close, compare_states, layer_dims, linear_functional, make_inputs, make_state
from titanmem.ops import (
    TITANS,
    MemoryRule,
    WindowContext,
    neural_memory_chunk,
    neural_memory_family_chunk,
    neural_memory_family_naive,
    neural_memory_naive,
)
from titanmem.ops.neural_memory.features import feature_dim

RTOL64 = 1e-9

# One change from Titans at a time, then the combinations the papers name.
RULES = {
    "titans": TITANS,
    "lp3": MemoryRule(objective="lp", p=3.0),
    "lp1.5": MemoryRule(objective="lp", p=1.5, sign_sharpness=3.0),
    "huber": MemoryRule(objective="huber"),
    "lq4": MemoryRule(retention="lq", q=4.0),
    "lq3": MemoryRule(retention="lq", q=3.0),
    "kl": MemoryRule(retention="kl"),
    "muon": MemoryRule(optimizer="muon"),
    "muon2": MemoryRule(optimizer="muon", ns_steps=2),
    "window2": MemoryRule(window=2),
    "window5": MemoryRule(window=5),
    "poly2": MemoryRule(feature_map="poly", feature_degree=2),
    "poly3": MemoryRule(feature_map="poly", feature_degree=3),
    "moneta": MemoryRule(objective="lp", p=3.0, retention="lq", q=4.0),
    "yaad": MemoryRule(objective="huber", retention="decay"),
    "memora": MemoryRule(retention="kl"),
    "omeganet": MemoryRule(window=4, feature_map="poly", feature_degree=2),
    "atlas": MemoryRule(window=4, feature_map="poly", feature_degree=2, optimizer="muon"),
    "everything": MemoryRule(objective="huber", retention="kl", optimizer="muon", window=3, feature_map="poly"),
}

# (T, chunk): odd lengths, a partial last chunk, a chunk longer than the sequence, chunk size 1.
SHAPES = [(1, 1), (7, 3), (13, 4), (9, 16), (11, 1), (12, 5)]


class Case:
    """Seeded float64 inputs for a rule: q/k of size Dk, a state taking ``feature_dim(Dk)`` inputs."""

    def __init__(self, rule, T, depth, residual, seed, requires_grad=True, B=2, H=2, dk=3, context=0):
        self.rule = rule
        dkf = feature_dim(dk, rule.feature_map, rule.feature_degree)
        dv = dkf if residual else 4
        inp = make_inputs(B=B, T=T + context, H=H, Dk=dk, Dv=dv, depth=depth, hidden=5, seed=seed)
        g = torch.Generator().manual_seed(seed + 1)
        self.state = make_state(B, H, layer_dims(dkf, dv, depth, 5), generator=g)
        gamma = 0.3 + 0.7 * torch.rand(B, T + context, H, dtype=torch.float64, generator=g)
        # Thresholds around the errors' norms (~1 to 2), so that both Huber branches are taken.
        delta = 2.5 * torch.rand(B, T + context, H, dtype=torch.float64, generator=g)
        full = dict(q=inp.q, k=inp.k, v=inp.v, theta=inp.theta, eta=inp.eta, alpha=inp.alpha, gamma=gamma,
                    delta=delta)
        cut = {name: t[:, context:].clone() for name, t in full.items()}
        before = {name: t[:, :context].clone() for name, t in full.items()}
        self.tensors = cut
        self.context_tensors = before if context else None
        self.leaves = [*cut.values(), *self.state.weights, *self.state.momentum]
        if self.context_tensors:
            self.leaves += [before[n] for n in ("k", "v", "gamma", "delta")]
        if requires_grad:
            for t in self.leaves:
                t.requires_grad_(True)
        self.leaf_names = [*cut, *(f"A0[{i}]" for i in range(depth)), *(f"S0[{i}]" for i in range(depth))]
        if self.context_tensors:
            self.leaf_names += ["context.k", "context.v", "context.gamma", "context.delta"]

    def call(self, fn, **kw):
        t = self.tensors
        huber = self.rule.objective == "huber"
        context = None
        if self.context_tensors:
            c = self.context_tensors
            context = WindowContext(c["k"], c["v"], c["gamma"], c["delta"] if huber else None)
        return fn(t["q"], t["k"], t["v"], t["theta"], t["eta"], t["alpha"], self.state, rule=self.rule,
                  gamma=t["gamma"], delta=t["delta"] if huber else None, context=context, **kw)


def _compare(case, naive_kw, chunk_kw=None, grads=True):
    y_ref, s_ref = case.call(neural_memory_family_naive, **naive_kw)
    y, s = case.call(neural_memory_family_chunk, **naive_kw, **(chunk_kw or {}))
    assert y.dtype == torch.float64
    assert_close("y", y_ref, y, RTOL64)
    compare_states("state", s_ref, s, RTOL64)
    if not grads:
        return
    used = [(n, t) for n, t in zip(case.leaf_names, case.leaves)
            if not (n.endswith("delta") and case.rule.objective != "huber")]
    g_ref = torch.autograd.grad(linear_functional(y_ref, s_ref), [t for _, t in used], allow_unused=True)
    g = torch.autograd.grad(linear_functional(y, s), [t for _, t in used], allow_unused=True)
    for (name, _), a, b in zip(used, g_ref, g):
        assert (a is None) == (b is None), f"d loss / d {name}: one implementation has no gradient"
        if a is not None:
            assert_close(f"d loss / d {name}", a, b, RTOL64)


def _grid():
    cases = []
    for i, ((name, rule), read, depth) in enumerate(itertools.product(RULES.items(), ("token", "chunk"), (1, 2, 3))):
        T, chunk = SHAPES[i % len(SHAPES)]
        residual = i % 4 == 3
        cases.append(pytest.param(name, rule, T, chunk, depth, read, residual, i,
                                  id=f"{name}-{read}-d{depth}-T{T}-c{chunk}{'-res' if residual else ''}"))
    return cases


@pytest.mark.parametrize("name, rule, T, chunk, depth, read, residual, seed", _grid())
def test_chunk_matches_naive_float64(name, rule, T, chunk, depth, read, residual, seed):
    case = Case(rule, T, depth, residual, seed=seed)
    _compare(case, dict(chunk_size=chunk, read=read, activation=("gelu", "silu", "relu")[depth % 3],
                        residual=residual), {"recompute_chunks": depth % 2 * 2})


@pytest.mark.parametrize("read", ["token", "chunk"])
@pytest.mark.parametrize("name", ["titans", "window5", "muon", "lq4", "everything"])
def test_max_surprise_matches_naive_float64(name, read):
    # A bound of 0.3 clips most tokens (their surprise norms are ~1 to 5), so both branches are covered.
    case = Case(RULES[name], 13, 2, False, seed=17)
    _compare(case, dict(chunk_size=4, read=read, max_surprise=0.3))


@pytest.mark.parametrize("recompute_chunks", [0, 1, 2, 100])
def test_recompute_settings_same_gradients(recompute_chunks):
    case = Case(RULES["atlas"], 13, 2, False, seed=4)
    _compare(case, dict(chunk_size=3, read="token"), {"recompute_chunks": recompute_chunks})


@pytest.mark.parametrize("name", ["window5", "atlas", "everything"])
def test_no_grad_groups_carry_the_window(name):
    # Without autograd the chunk op runs groups of 16 chunks: 37 tokens in chunks of 2 make three
    # groups, and each group's window must reach back into the one before.
    case = Case(RULES[name], 37, 1, False, seed=8, requires_grad=False, B=1, H=1)
    with torch.no_grad():
        _compare(case, dict(chunk_size=2, read="token"), grads=False)


@pytest.mark.parametrize("name", ["window5", "omeganet", "everything"])
def test_window_context_reaches_before_the_call(name):
    # Tokens passed as the context change the first tokens' windows; the chunk op pads with them.
    case = Case(RULES[name], 10, 2, False, seed=12, context=6)
    _compare(case, dict(chunk_size=4, read="token"))


@pytest.mark.parametrize("impl", [neural_memory_family_naive, neural_memory_family_chunk], ids=["naive", "chunk"])
@pytest.mark.parametrize("name", ["window5", "atlas", "everything"])
def test_split_at_chunk_boundary_with_context_equals_one_call(impl, name):
    whole = Case(RULES[name], 12, 2, False, seed=21, requires_grad=False)
    y_all, s_all = whole.call(impl, chunk_size=4)
    t, huber = whole.tensors, whole.rule.objective == "huber"
    first = {n: x[:, :8] for n, x in t.items()}
    second = {n: x[:, 8:] for n, x in t.items()}

    def run(part, state, context):
        return impl(part["q"], part["k"], part["v"], part["theta"], part["eta"], part["alpha"], state,
                    chunk_size=4, rule=whole.rule, gamma=part["gamma"], delta=part["delta"] if huber else None,
                    context=context)

    y1, s1 = run(first, whole.state, None)
    context = WindowContext(first["k"], first["v"], first["gamma"], first["delta"] if huber else None)
    y2, s2 = run(second, s1, context)
    assert_close("y", y_all, torch.cat((y1, y2), dim=1), 1e-12)
    compare_states("state", s_all, s2, 1e-12)


@pytest.mark.parametrize("read", ["token", "chunk"])
@pytest.mark.parametrize("residual, max_surprise", [(False, None), (True, None), (False, 0.5)])
def test_titans_rule_is_the_titans_op(read, residual, max_surprise):
    # The default rule (l2, decay, momentum, window 1, identity) and all-ones window gates give the
    # Titans op's numbers: outputs and states bit for bit, gradients to rounding.
    inp = make_inputs(B=2, T=23, H=2, Dk=4, Dv=4 if residual else 3, depth=2, hidden=5, seed=3, requires_grad=True)
    kw = dict(chunk_size=4, read=read, residual=residual, max_surprise=max_surprise)
    gamma = torch.ones_like(inp.theta)
    for titans, family in ((neural_memory_naive, neural_memory_family_naive),
                           (neural_memory_chunk, neural_memory_family_chunk)):
        y_ref, s_ref = titans(*inp.args(), **kw)
        g_ref = torch.autograd.grad(linear_functional(y_ref, s_ref), inp.leaves())
        for extra in ({}, {"rule": TITANS, "gamma": gamma}):
            y, s = family(*inp.args(), **kw, **extra)
            assert torch.equal(y_ref, y)
            for a, b in zip((*s_ref.weights, *s_ref.momentum), (*s.weights, *s.momentum)):
                assert torch.equal(a, b)
            g = torch.autograd.grad(linear_functional(y, s), inp.leaves())
            for name, a, b in zip(inp.leaf_names(), g_ref, g):
                assert_close(f"d loss / d {name}", a, b, 1e-13)


def test_float32_close_to_float64_reference():
    # The chunk op in float32 against the float64 oracle on the heaviest rule. Measured over 8 rules x
    # 2 seeds (T = 33, chunk 8): outputs within 1e-5, states within 2.7e-5 (Muon and lq rules), the
    # float32 oracle's own errors are the same (Newton-Schulz and the lq norm amplify rounding).
    case64 = Case(RULES["everything"], 33, 2, False, seed=2, requires_grad=False)
    y_ref, s_ref = case64.call(neural_memory_family_naive, chunk_size=8)
    state32 = case64.state.to(torch.float32)
    t = {n: x.float() for n, x in case64.tensors.items()}
    y, s = neural_memory_family_chunk(t["q"], t["k"], t["v"], t["theta"], t["eta"], t["alpha"], state32,
                                      chunk_size=8, rule=case64.rule, gamma=t["gamma"], delta=t["delta"])
    assert y.dtype == torch.float32 and s.weights[0].dtype == torch.float32
    assert_close("y", y_ref, y, 1e-4)
    for i in range(2):
        assert_close(f"weights[{i}]", s_ref.weights[i], s.weights[i], 1e-4)


def test_inference_mode_runs_the_oracle():
    case = Case(RULES["everything"], 7, 2, False, seed=5, requires_grad=False)
    y_ref, _ = case.call(neural_memory_family_naive, chunk_size=3)
    with torch.inference_mode():
        y_naive, _ = case.call(neural_memory_family_naive, chunk_size=3)
        y_chunk, _ = case.call(neural_memory_family_chunk, chunk_size=3)
    assert torch.equal(y_ref, y_naive)
    assert_close("y", y_ref, y_chunk, RTOL64)
