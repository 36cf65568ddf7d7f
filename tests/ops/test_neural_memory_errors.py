"""Every documented invalid input raises the documented exception type with a message naming the
argument, in both implementations (they share the validation, but each must call it)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import IMPLS, make_inputs
from titanmem.ops import MemoryState, neural_memory_chunk

B, T, H, DK, DV, HIDDEN = 2, 5, 3, 4, 4, 6


def _base():
    inp = make_inputs(B=B, T=T, H=H, Dk=DK, Dv=DV, depth=2, hidden=HIDDEN, dtype=torch.float32, seed=7)
    args = dict(q=inp.q, k=inp.k, v=inp.v, theta=inp.theta, eta=inp.eta, alpha=inp.alpha, state=inp.state)
    return args, {}


def _with_state(weights=None, momentum=None):
    def edit(args, kw):
        st = args["state"]
        args["state"] = MemoryState(weights(st) if weights else st.weights, momentum(st) if momentum else st.momentum)
    return edit


def _set(**new):
    def edit(args, kw):
        for name, value in new.items():
            if name in args:
                args[name] = value(args[name]) if callable(value) else value
            else:
                kw[name] = value
    return edit


def _gate_value(name, index, value):
    def fn(g):
        g = g.clone()
        g[index] = value
        return g
    return _set(**{name: fn})



ERROR_CASES = {
    # id: (edit, exception type, regex that must be found in the message)
    "k_shape": (_set(k=torch.zeros(B, T, H, DK + 1)), ValueError, r"^k must have the shape of q"),
    "k_length": (_set(k=torch.zeros(B, T + 1, H, DK)), ValueError, r"^k must have the shape of q"),
    "v_batch": (_set(v=torch.zeros(B + 1, T, H, DV)), ValueError, r"^v must have shape"),
    "v_length": (_set(v=torch.zeros(B, T - 1, H, DV)), ValueError, r"^v must have shape"),
    "v_heads": (_set(v=torch.zeros(B, T, H + 1, DV)), ValueError, r"^v must have shape"),
    "v_3d": (_set(v=torch.zeros(B, T, H)), ValueError, r"^v must have shape"),
    "q_3d": (_set(q=torch.zeros(B, T, H), k=torch.zeros(B, T, H)), ValueError, r"^q must have shape"),
    "theta_shape": (_set(theta=torch.zeros(B, T)), ValueError, r"^theta must have shape"),
    "eta_shape": (_set(eta=torch.zeros(B, T, H, 1)), ValueError, r"^eta must have shape"),
    "alpha_shape": (_set(alpha=torch.zeros(B, T + 1, H)), ValueError, r"^alpha must have shape"),
    "theta_negative": (_gate_value("theta", (1, 2, 0), -1e-3), ValueError, r"^theta must lie in"),
    "theta_inf": (_gate_value("theta", (0, 0, 0), float("inf")), ValueError, r"^theta must be finite"),
    "eta_above_1": (_gate_value("eta", (0, 3, 1), 1.0 + 1e-6), ValueError, r"^eta must lie in"),
    "eta_negative": (_gate_value("eta", (0, 3, 1), -1e-6), ValueError, r"^eta must lie in"),
    "alpha_negative": (_gate_value("alpha", (1, 0, 2), -1e-6), ValueError, r"^alpha must lie in"),
    "alpha_above_1": (_gate_value("alpha", (1, 0, 2), 1.5), ValueError, r"^alpha must lie in"),
    "theta_nan": (_gate_value("theta", (0, 4, 2), float("nan")), ValueError, r"^theta must lie in"),
    "eta_nan": (_gate_value("eta", (0, 4, 2), float("nan")), ValueError, r"^eta must lie in"),
    "alpha_nan": (_gate_value("alpha", (0, 4, 2), float("nan")), ValueError, r"^alpha must lie in"),
    "q_int": (_set(q=torch.zeros(B, T, H, DK, dtype=torch.int64)), ValueError, r"^q must be a floating-point"),
    "v_bool": (_set(v=torch.zeros(B, T, H, DV, dtype=torch.bool)), ValueError, r"^v must be a floating-point"),
    "eta_int": (_set(eta=torch.zeros(B, T, H, dtype=torch.int32)), ValueError,
                     r"^eta must be a floating-point"),
    "chunk_size_0": (_set(chunk_size=0), ValueError, r"^chunk_size must be >= 1"),
    "chunk_size_negative": (_set(chunk_size=-4), ValueError, r"^chunk_size must be >= 1"),
    "chunk_size_float": (_set(chunk_size=4.0), TypeError, r"^chunk_size must be an int"),
    "chunk_size_bool": (_set(chunk_size=True), TypeError, r"^chunk_size must be an int"),
    "chunk_size_str": (_set(chunk_size="4"), TypeError, r"^chunk_size must be an int"),
    "read_unknown": (_set(read="tokens"), ValueError, r"^read must be one of"),
    "activation_unknown": (_set(activation="tanh"), ValueError, r"^activation must be one of"),
    "residual_dk_ne_dv": (_set(v=torch.zeros(B, T, H, DV + 1), residual=True,
                               state=MemoryState.initial([torch.zeros(H, DK, HIDDEN), torch.zeros(H, HIDDEN, DV + 1)], B)),
                          ValueError, r"^residual=True needs Dk == Dv"),
    "state_batch": (_with_state(weights=lambda s: (s.weights[0][:1], s.weights[1][:1]),
                                momentum=lambda s: (s.momentum[0][:1], s.momentum[1][:1])),
                    ValueError, r"^state\.weights\[0\] must have shape"),
    "state_heads": (_with_state(weights=lambda s: (s.weights[0][:, :2], s.weights[1][:, :2]),
                                momentum=lambda s: (s.momentum[0][:, :2], s.momentum[1][:, :2])),
                    ValueError, r"^state\.weights\[0\] must have shape"),
    "state_d_in": (_with_state(weights=lambda s: (torch.zeros(B, H, DK + 1, HIDDEN), s.weights[1]),
                               momentum=lambda s: (torch.zeros(B, H, DK + 1, HIDDEN), s.momentum[1])),
                   ValueError, r"^state\.weights\[0\] must have shape"),
    "state_layer_chain": (_with_state(weights=lambda s: (s.weights[0], torch.zeros(B, H, HIDDEN + 1, DV)),
                                      momentum=lambda s: (s.momentum[0], torch.zeros(B, H, HIDDEN + 1, DV))),
                          ValueError, r"^state\.weights\[1\] must have shape"),
    "state_3d": (_with_state(weights=lambda s: (s.weights[0][0], s.weights[1]),
                             momentum=lambda s: (s.momentum[0][0], s.momentum[1])),
                 ValueError, r"^state\.weights\[0\] must have shape"),
    "state_last_d_out": (_with_state(weights=lambda s: (s.weights[0], torch.zeros(B, H, HIDDEN, DV + 1)),
                                     momentum=lambda s: (s.momentum[0], torch.zeros(B, H, HIDDEN, DV + 1))),
                         ValueError, r"last memory layer must output Dv.*state\.weights\[-1\]"),
    "state_momentum_shape": (_with_state(momentum=lambda s: (s.momentum[0], s.momentum[1][..., :-1])),
                             ValueError, r"^state\.momentum\[1\] must have the shape of state\.weights\[1\]"),
    "state_momentum_count": (_with_state(momentum=lambda s: s.momentum[:1]), ValueError,
                             r"^state\.momentum must have one tensor per layer"),
    "state_no_layers": (_with_state(weights=lambda s: (), momentum=lambda s: ()), ValueError,
                        r"^state\.weights must hold at least one layer"),
    "state_float16": (_with_state(weights=lambda s: tuple(w.half() for w in s.weights),
                                  momentum=lambda s: tuple(m.half() for m in s.momentum)),
                      ValueError, r"state must be float32 or float64.*state\.weights\[0\]"),
    "state_bfloat16": (_with_state(weights=lambda s: tuple(w.bfloat16() for w in s.weights),
                                   momentum=lambda s: tuple(m.bfloat16() for m in s.momentum)),
                       ValueError, r"state must be float32 or float64.*state\.weights\[0\]"),
    "state_mixed_dtype": (_with_state(momentum=lambda s: (s.momentum[0].double(), s.momentum[1])), ValueError,
                          r"^state\.momentum\[0\] has dtype"),
    "state_not_memorystate": (_set(state=lambda s: (s.weights, s.momentum)), TypeError,
                              r"^state must be a MemoryState"),
    "state_momentum_not_tensor": (_with_state(momentum=lambda s: (s.momentum[0], s.momentum[1].tolist())),
                                  TypeError, r"^state\.momentum\[1\] must be a torch\.Tensor"),
    "q_not_tensor": (_set(q=lambda q: q.tolist()), TypeError, r"^q must be a torch\.Tensor"),
    "v_list": (_set(v=lambda v: v.tolist()), TypeError, r"^v must be a torch\.Tensor"),
    "alpha_float": (_set(alpha=0.1), TypeError, r"^alpha must be a torch\.Tensor"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
@pytest.mark.parametrize("impl", IMPLS)
def test_invalid_input_raises(impl, case):
    edit, exc, pattern = ERROR_CASES[case]
    args, kw = _base()
    # The unedited inputs are valid, so the exception below comes from the edit.
    impl(**args, **kw)
    edit(args, kw)
    with pytest.raises(exc, match=pattern):
        impl(**args, **kw)


@pytest.mark.parametrize("impl", IMPLS)
def test_check_inputs_false_skips_the_gate_range_check(impl):
    args, _ = _base()
    args["theta"] = args["theta"].clone()
    args["theta"][0, 0, 0] = -1e-3
    with pytest.raises(ValueError, match=r"^theta must lie in"):
        impl(**args)
    y, _ = impl(**args, check_inputs=False)  # the gates' values are not read
    assert y.shape == (B, T, H, DV) and bool(torch.isfinite(y).all())


@pytest.mark.parametrize("empty", [False, True], ids=["T5", "T0"])
@pytest.mark.parametrize("value, exc", [(-1, ValueError), (2.5, TypeError), (True, TypeError)],
                         ids=["negative", "float", "bool"])
def test_invalid_recompute_chunks(value, exc, empty):
    args, _ = _base()
    if empty:
        args = {name: (t[:, :0] if isinstance(t, torch.Tensor) else t) for name, t in args.items()}
    with pytest.raises(exc, match=r"^recompute_chunks must be"):
        neural_memory_chunk(**args, recompute_chunks=value)


@pytest.mark.parametrize(
    "weights, batch_size, pattern",
    [
        pytest.param([torch.zeros(3, 4, 4)], 0, r"^batch_size must be >= 1", id="batch_size_0"),
        pytest.param([torch.zeros(4, 4)], 2, r"^weights\[0\] must have shape \[H, d_in, d_out\]", id="weights_2d"),
        pytest.param([torch.zeros(3, 4, 5), torch.zeros(1, 3, 5, 4)], 2,
                     r"^weights\[1\] must have shape \[H, d_in, d_out\]", id="weights_4d"),
    ],
)
def test_memory_state_initial_errors(weights, batch_size, pattern):
    with pytest.raises(ValueError, match=pattern):
        MemoryState.initial(weights, batch_size)
