"""Bad choices of the family raise the documented error naming the argument, in both implementations."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import layer_dims, make_inputs, make_state
from titanmem.ops import MemoryRule, WindowContext, neural_memory_family_chunk, neural_memory_family_naive

IMPLS = [pytest.param(neural_memory_family_naive, id="naive"), pytest.param(neural_memory_family_chunk, id="chunk")]
B, T, H, DK, DV = 2, 5, 2, 3, 4


@pytest.mark.parametrize("fields, error, pattern", [
    ({"objective": "l3"}, ValueError, r"^objective must be one of \('l2', 'lp', 'huber'\), got 'l3'"),
    ({"objective": 2}, TypeError, r"^objective must be a str"),
    ({"retention": "l1"}, ValueError, r"^retention must be one of"),
    ({"optimizer": "adam"}, ValueError, r"^optimizer must be one of"),
    ({"feature_map": "exp"}, ValueError, r"^feature_map must be one of"),
    ({"p": 0.5}, ValueError, r"^p must be a finite number in \[1.0, inf\], got 0.5"),
    ({"p": float("nan")}, ValueError, r"^p must be"),
    ({"p": True}, TypeError, r"^p must be a number"),
    ({"q": 1.0}, ValueError, r"^q must be a finite number in \(1.0, inf\], got 1.0"),
    ({"window": 0}, ValueError, r"^window must be >= 1, got 0"),
    ({"window": 2.0}, TypeError, r"^window must be an int"),
    ({"ns_steps": 0}, ValueError, r"^ns_steps must be >= 1"),
    ({"feature_degree": 0}, ValueError, r"^feature_degree must be >= 1"),
    ({"sign_sharpness": 0.0}, ValueError, r"^sign_sharpness must be"),
    ({"abs_eps": -1e-6}, ValueError, r"^abs_eps must be"),
], ids=lambda x: str(x) if not isinstance(x, dict) else "-".join(f"{k}={v}" for k, v in x.items()))
def test_bad_rule_fields(fields, error, pattern):
    with pytest.raises(error, match=pattern):
        MemoryRule(**fields)


def _args(rule=None, dk_state=DK):
    inp = make_inputs(B=B, T=T, H=H, Dk=DK, Dv=DV, depth=2, hidden=5, seed=1)
    state = make_state(B, H, layer_dims(dk_state, DV, 2, 5), generator=torch.Generator().manual_seed(2))
    return (inp.q, inp.k, inp.v, inp.theta, inp.eta, inp.alpha, state)


def _gates(value=0.5, length=T):
    return torch.full((B, length, H), value, dtype=torch.float64)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rule, kw, error, pattern", [
    (MemoryRule(objective="huber"), {"delta": _gates(-0.1)}, ValueError, r"^delta must lie in >= 0.0"),
    (MemoryRule(objective="huber"), {"delta": _gates(float("inf"))}, ValueError, r"^delta must be finite"),
    (MemoryRule(objective="huber"), {}, ValueError, r"^delta must be a \[B, T, H\] tensor"),
    (MemoryRule(objective="huber"), {"delta": _gates(1.0, T + 1)}, ValueError, r"^delta must have shape"),
    (MemoryRule(), {"delta": _gates(1.0)}, ValueError, r"^delta is read only by objective 'huber'"),
    (MemoryRule(), {"gamma": _gates(1.5)}, ValueError, r"^gamma must lie in \[0.0, 1.0\]"),
    (MemoryRule(), {"gamma": _gates(float("nan"))}, ValueError, r"^gamma must lie in"),
    (MemoryRule(), {"gamma": torch.ones(B, T)}, ValueError, r"^gamma must have shape"),
    (MemoryRule(), {"gamma": [1.0]}, TypeError, r"^gamma must be a torch.Tensor"),
    (MemoryRule(window=3), {"context": (1, 2, 3)}, TypeError, r"^context must be a WindowContext"),
    (MemoryRule(window=3), {"context": WindowContext(torch.zeros(B, 2, H, DK + 1), torch.zeros(B, 2, H, DV),
                                                     _gates(1.0, 2))}, ValueError, r"^context.k must have shape"),
    (MemoryRule(window=3), {"context": WindowContext(torch.zeros(B, 2, H, DK), torch.zeros(B, 3, H, DV),
                                                     _gates(1.0, 2))}, ValueError, r"^context.v must have shape"),
    (MemoryRule(window=3), {"context": WindowContext(torch.zeros(B, 2, H, DK), torch.zeros(B, 2, H, DV),
                                                     _gates(2.0, 2))}, ValueError, r"^context.gamma must lie in"),
    (MemoryRule(window=3, objective="huber"),
     {"delta": _gates(1.0), "context": WindowContext(torch.zeros(B, 2, H, DK), torch.zeros(B, 2, H, DV),
                                                     _gates(1.0, 2))}, ValueError, r"^context.delta must be given"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_bad_family_inputs(impl, rule, kw, error, pattern):
    with pytest.raises(error, match=pattern):
        impl(*_args(), rule=rule, **kw)


@pytest.mark.parametrize("impl", IMPLS)
def test_rule_must_be_a_memory_rule(impl):
    with pytest.raises(TypeError, match=r"^rule must be a MemoryRule, got str"):
        impl(*_args(), rule="moneta")


@pytest.mark.parametrize("impl", IMPLS)
def test_state_must_take_the_feature_map_size(impl):
    # Degree 2 on 3 features gives 3 + 6 = 9 inputs; a state taking 3 is refused before any work.
    with pytest.raises(ValueError, match=r"^state.weights\[0\] must have shape \[B, H, d_in, d_out\] = \[2, 2, 9, d_out\]"):
        impl(*_args(), rule=MemoryRule(feature_map="poly", feature_degree=2))
    y, _ = impl(*_args(dk_state=9), rule=MemoryRule(feature_map="poly", feature_degree=2))
    assert y.shape == (B, T, H, DV)


@pytest.mark.parametrize("impl", IMPLS)
def test_titans_checks_still_apply(impl):
    args = list(_args())
    args[4] = _gates(1.5)  # eta
    with pytest.raises(ValueError, match=r"^eta must lie in \[0.0, 1.0\]"):
        impl(*args, rule=MemoryRule(optimizer="muon"))
    with pytest.raises(ValueError, match=r"^chunk_size must be >= 1"):
        impl(*_args(), chunk_size=0, rule=MemoryRule(window=2))


def test_chunk_recompute_chunks_checked():
    with pytest.raises(ValueError, match=r"^recompute_chunks must be >= 0"):
        neural_memory_family_chunk(*_args(), recompute_chunks=-1)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_sequence_returns_the_state(impl):
    args = [t[:, :0] for t in _args()[:6]]
    state = _args()[6]
    y, s = impl(*args, state, rule=MemoryRule(window=3, retention="kl"))
    assert y.shape == (B, 0, H, DV) and s is state
