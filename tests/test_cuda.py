"""Device checks: the ops and the models on the device that ``TITANMEM_TEST_DEVICE`` names (default
``cuda``), so that a machine with a GPU checks in a few seconds what the rest of the suite checks on the
CPU. Without that device the whole module is skipped; ``TITANMEM_TEST_DEVICE=cpu`` runs every check on
the CPU (the CPU-vs-device comparisons then compare the CPU with itself).

    TITANMEM_TEST_DEVICE=cpu python -m pytest -q tests/test_cuda.py   # anywhere
    python -m pytest -q tests/test_cuda.py                              # on a CUDA machine

What is checked on the device:

a. ``neural_memory_chunk`` == ``neural_memory_naive`` in float64: outputs, final state and the gradient
   of a random functional of both with respect to every input (depth 1 and 2, both read modes,
   37 tokens in chunks of 8, so the last chunk is partial).
b. The same for ``neural_memory_family_chunk`` and ``neural_memory_family_naive`` with the rule of each
   family preset (moneta, yaad, memora, omeganet, atlas; ``titanmem.models.presets.FAMILY_RULES``).
c. The chunk ops in float32 on the device give the CPU's numbers (outputs, state, gradients).
d. Every model variant (and LMM with each family rule) at a tiny size: logits on the device == logits
   on the CPU (same weights, float32 and float64), and cached token-by-token decoding on the device ==
   the parallel forward on the device (float64).
e. One optimizer step of the tiny MAC model under bf16 autocast (``titanmem.train.optimizer_step``):
   finite loss, a finite gradient in every parameter, and a float32 memory state.

The float64 tolerances are those of tests/ops (measured errors there ~1e-15); the float32 ones are
about 10x to 300x the float32 rounding errors measured on the CPU (see RTOL32).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests.helpers import assert_close, compare_states, layer_dims, linear_functional, make_inputs, make_state
from tests.invariants import check_decoding_equals_parallel, lm_step
from titanmem.blocks import VARIANTS
from titanmem.devices import resolve_device
from titanmem.models import TitansCache, TitansConfig, TitansForCausalLM
from titanmem.models.presets import FAMILY_RULES
from titanmem.ops import (
    MemoryRule,
    MemoryState,
    neural_memory_chunk,
    neural_memory_family_chunk,
    neural_memory_family_naive,
    neural_memory_naive,
)
from titanmem.ops.neural_memory.features import feature_dim
from titanmem.train.config import OptimConfig
from titanmem.train.loop import optimizer_step
from titanmem.train.optim import build_optimizer

SKIP_REASON = "needs a CUDA device (or TITANMEM_TEST_DEVICE=cpu to run these checks on CPU)"


def _test_device() -> torch.device | None:
    """The device ``TITANMEM_TEST_DEVICE`` names (default cuda); None for CUDA on a machine without it.

    Raises:
        ValueError: a name that is not auto, cpu, cuda or cuda:N (a typo must not skip silently).
    """
    name = os.environ.get("TITANMEM_TEST_DEVICE", "cuda")
    try:
        return resolve_device(name)
    except ValueError as err:
        if name.startswith("cuda") and not torch.cuda.is_available():
            return None
        raise ValueError(f"TITANMEM_TEST_DEVICE: {err}") from err


DEVICE = _test_device()
if DEVICE is None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

pytestmark = pytest.mark.gpu
CPU = torch.device("cpu")
READS = ("token", "chunk")
RTOL64 = 1e-9
# float32 device vs CPU: the two sum in different orders, so they differ by rounding. Measured on the
# CPU, float32 against float64 on the op cases of test c: Titans <= 3.7e-7, moneta <= 5.6e-6, atlas
# <= 1.6e-5 (gradients); the float32 logits of the models below: <= 8.4e-6 (lmm-atlas apart).
RTOL32 = 1e-4
RTOL32_FAMILY = 3e-4
FAMILY = {name: MemoryRule(**{k.removeprefix("memory_"): v for k, v in fields.items()})
          for name, fields in FAMILY_RULES.items()}
T_OP, CHUNK = 37, 8


@pytest.fixture(scope="module", autouse=True)
def _full_float32_matmuls():
    """float32 matmuls in full precision (torch's default; TF32 would be ~1e-3 off the CPU's numbers).

    NVIDIA_TF32_OVERRIDE=0 in the environment also keeps cuBLAS from TF32 where torch is told otherwise.
    """
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


def _assert_on_device(name: str, t: torch.Tensor) -> None:
    # torch.device("cuda") != torch.device("cuda:0"): compare the type, and the index when one is named.
    ok = t.device.type == DEVICE.type and (DEVICE.index is None or t.device.index == DEVICE.index)
    assert ok, f"{name} is on {t.device}, expected {DEVICE}"


@dataclasses.dataclass
class OpCase:
    """Inputs of one op call: ``rule`` None is the Titans op (``neural_memory_naive`` / ``_chunk``),
    else the family op with that rule (window gates ``gamma`` when its window is > 1, Huber thresholds
    ``delta`` with the Huber objective)."""

    rule: MemoryRule | None
    tensors: dict[str, torch.Tensor]
    state: MemoryState

    @classmethod
    def build(cls, rule: MemoryRule | None, depth: int, seed: int) -> OpCase:
        """Seeded float64 inputs on the CPU: B = H = 2, T_OP tokens, Dk = 6 (3 for the family) != Dv."""
        dk, dv = (6, 5) if rule is None else (3, 4)
        inp = make_inputs(B=2, T=T_OP, H=2, Dk=dk, Dv=dv, depth=depth, hidden=7, seed=seed)
        tensors = dict(q=inp.q, k=inp.k, v=inp.v, theta=inp.theta, eta=inp.eta, alpha=inp.alpha)
        state = inp.state
        if rule is not None:
            g = torch.Generator().manual_seed(seed + 1)
            d_in = feature_dim(dk, rule.feature_map, rule.feature_degree)
            state = make_state(2, 2, layer_dims(d_in, dv, depth, 7), generator=g)
            if rule.window > 1:
                tensors["gamma"] = 0.3 + 0.7 * torch.rand(2, T_OP, 2, dtype=torch.float64, generator=g)
            if rule.objective == "huber":
                # Thresholds around the errors' norms (~1 to 2), so that both Huber branches are taken.
                tensors["delta"] = 2.5 * torch.rand(2, T_OP, 2, dtype=torch.float64, generator=g)
        return cls(rule, tensors, state)

    def to(self, device: torch.device, dtype: torch.dtype) -> OpCase:
        """A copy on ``device`` in ``dtype`` whose tensors are leaves requiring grad."""
        def leaf(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(device, dtype).requires_grad_(True)

        state = MemoryState(tuple(leaf(w) for w in self.state.weights), tuple(leaf(s) for s in self.state.momentum))
        return OpCase(self.rule, {n: leaf(t) for n, t in self.tensors.items()}, state)

    def leaves(self) -> list[tuple[str, torch.Tensor]]:
        depth = self.state.depth
        return [*self.tensors.items(), *((f"W0[{i}]", w) for i, w in enumerate(self.state.weights)),
                *((f"S0[{i}]", s) for i, s in zip(range(depth), self.state.momentum))]

    def run(self, impl: str, **kw: Any) -> tuple[torch.Tensor, MemoryState, tuple[torch.Tensor | None, ...]]:
        """``impl`` ("naive" or "chunk") on these inputs: ``(y, final state, gradients of every leaf)``."""
        t = self.tensors
        args = (t["q"], t["k"], t["v"], t["theta"], t["eta"], t["alpha"], self.state)
        if self.rule is None:
            fn = {"naive": neural_memory_naive, "chunk": neural_memory_chunk}[impl]
        else:
            fn = {"naive": neural_memory_family_naive, "chunk": neural_memory_family_chunk}[impl]
            kw = dict(kw, rule=self.rule, gamma=t.get("gamma"), delta=t.get("delta"))
        y, state = fn(*args, **kw)
        grads = torch.autograd.grad(linear_functional(y, state), [x for _, x in self.leaves()], allow_unused=True)
        return y, state, grads


def _compare(case: OpCase, ref, out, rtol: float) -> None:
    """Outputs, final states and gradients of two runs of ``case`` (compared on the CPU)."""
    (y_ref, s_ref, g_ref), (y, s, g) = ref, out
    assert y.dtype == y_ref.dtype
    assert_close("y", y_ref.cpu(), y.cpu(), rtol)
    compare_states("state", s_ref.to(CPU), s.to(CPU), rtol)
    for (name, _), a, b in zip(case.leaves(), g_ref, g):
        assert (a is None) == (b is None), f"d loss / d {name}: one run has no gradient"
        if a is not None:
            assert_close(f"d loss / d {name}", a.cpu(), b.cpu(), rtol)


# --------------------------------------------------------------------------------------------------
# a, b. chunk == naive in float64 on the device.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("depth", [1, 2])
def test_titans_chunk_matches_naive_float64_on_device(depth, read):
    case = OpCase.build(None, depth, seed=10 * depth + len(read)).to(DEVICE, torch.float64)
    kw = dict(chunk_size=CHUNK, read=read, activation="gelu")
    ref = case.run("naive", **kw)
    out = case.run("chunk", **kw, recompute_chunks=2)  # 5 chunks in groups of 2: a partial last group
    for name, t in (("y", out[0]), ("weights[0]", out[1].weights[0]), ("grad q", out[2][0])):
        _assert_on_device(name, t)
    _compare(case, ref, out, RTOL64)


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("name", list(FAMILY))
def test_family_chunk_matches_naive_float64_on_device(name, depth, read):
    case = OpCase.build(FAMILY[name], depth, seed=depth + 3 * len(name)).to(DEVICE, torch.float64)
    kw = dict(chunk_size=CHUNK, read=read, activation="silu")
    ref = case.run("naive", **kw)
    out = case.run("chunk", **kw, recompute_chunks=2)
    _assert_on_device("y", out[0])
    _assert_on_device("weights[0]", out[1].weights[0])
    _compare(case, ref, out, RTOL64)


# --------------------------------------------------------------------------------------------------
# c. float32 on the device == float32 on the CPU.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("name", ["titans", "moneta", "atlas"])
def test_chunk_op_float32_on_device_equals_cpu(name, read):
    case = OpCase.build(None if name == "titans" else FAMILY[name], depth=2, seed=7)
    kw = dict(chunk_size=CHUNK, read=read)
    cpu_case, device_case = case.to(CPU, torch.float32), case.to(DEVICE, torch.float32)
    ref, out = cpu_case.run("chunk", **kw), device_case.run("chunk", **kw)
    assert out[0].dtype == torch.float32 and out[1].weights[0].dtype == torch.float32
    _assert_on_device("y", out[0])
    _compare(case, ref, out, RTOL32 if name == "titans" else RTOL32_FAMILY)


# --------------------------------------------------------------------------------------------------
# d. Models: the device gives the CPU's logits, and decoding on the device == one call on the device.
# --------------------------------------------------------------------------------------------------

T_LM = 19
# chunk 4 and segment 8 put memory and MAC boundaries inside T_LM; window 5 makes SWA forget.
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, chunk_size=4,
             segment_size=8, window=5, n_persistent=2, max_lr=0.5, initializer_range=0.1)
MODEL_CASES = [*VARIANTS, *(f"lmm-{name}" for name in FAMILY_RULES)]


def _tiny_model(case: str) -> TitansForCausalLM:
    """A float32 CPU model of the tiny preset, shrunk (SMALL); ``lmm-<rule>`` is LMM with a family rule."""
    variant, _, rule = case.partition("-")
    torch.manual_seed(0)
    model = TitansForCausalLM(TitansConfig.from_preset("tiny", variant=variant, **SMALL,
                                                       **(FAMILY_RULES[rule] if rule else {})))
    with torch.no_grad():  # random gate biases: the gates differ per head (the defaults are uniform)
        for pname, p in model.named_parameters():
            if pname.endswith("gate_proj.bias"):
                p.normal_(0.0, 1.0)
    return model.eval()


def _ids(model: TitansForCausalLM, B: int = 2) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (B, T_LM), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module", params=MODEL_CASES)
def model_case(request):
    """``(case name, float32 CPU model)``; tests copy it to the device and dtype they need."""
    return request.param, _tiny_model(request.param)


# Measured on the CPU (float32 logits against float64 ones, same weights): <= 8.4e-6 for every case
# but lmm-atlas, 3.0e-4 there (Newton-Schulz on poly features amplifies rounding); the float32 device
# and CPU logits may each be that far from the exact ones. float64 logits agree to ~1e-13 at most.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_logits_on_device_equal_cpu(model_case, dtype):
    case, model = model_case
    ids = _ids(model)
    cpu_model = copy.deepcopy(model).to(dtype)
    device_model = copy.deepcopy(model).to(DEVICE, dtype)
    with torch.no_grad():
        ref = cpu_model(ids, use_cache=False).logits
        out = device_model(ids.to(DEVICE), use_cache=False).logits
    _assert_on_device("logits", out)
    assert out.dtype == dtype
    rtol = RTOL64 if dtype == torch.float64 else 5e-3 if case == "lmm-atlas" else RTOL32
    assert_close("logits", ref, out.cpu(), rtol)


# float64, where decoding and one call agree to <= 7.3e-13 on the CPU (float32: up to 3.3e-4 for
# lmm-atlas, rounding only), so that a wrong state carried on the device cannot hide in the tolerance.
@pytest.mark.parametrize("prefill", [1, 5])
def test_decoding_on_device_equals_parallel(model_case, prefill):
    _, model = model_case
    device_model = copy.deepcopy(model).to(DEVICE, torch.float64)
    check_decoding_equals_parallel(lm_step(device_model), _ids(model).to(DEVICE), prefill, RTOL64)


# --------------------------------------------------------------------------------------------------
# e. A bf16-autocast training step of MAC on the device.
# --------------------------------------------------------------------------------------------------


def _memory_states(obj: Any) -> Iterator[MemoryState]:
    """Every MemoryState inside a block state (dataclasses and tuples of them)."""
    if isinstance(obj, MemoryState):
        yield obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for field in dataclasses.fields(obj):
            yield from _memory_states(getattr(obj, field.name))
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _memory_states(item)


def test_bf16_autocast_training_step_of_mac_on_device():
    model = _tiny_model("mac").to(DEVICE)
    ids = _ids(model).to(DEVICE)
    seen: dict[str, Any] = {}

    def loss_fn(model, batch):
        cache = TitansCache()
        out = model(batch, labels=batch, cache=cache, use_cache=True)
        seen["logits_dtype"] = out.logits.dtype
        seen["memory"] = [s for i in sorted(cache.states) for s in _memory_states(cache.get_state(i))]
        return out.loss

    def check_grads(optimizer, args, kwargs):  # before the step: the gradients are still there
        seen["grads"] = {name: p.grad for name, p in model.named_parameters()}

    optimizer = build_optimizer(model, OptimConfig(lr=1e-3))
    optimizer.register_step_pre_hook(check_grads)
    model.train()
    loss, grad_norm, _ = optimizer_step(model, optimizer, None, iter([ids]), loss_fn, grad_clip=1.0,
                                        device=DEVICE, autocast=torch.bfloat16)
    assert seen["logits_dtype"] == torch.bfloat16, "autocast did not reach the model"
    assert bool(torch.isfinite(loss)) and float(loss) > 0, f"loss {float(loss)}"
    assert bool(torch.isfinite(grad_norm)) and float(grad_norm) > 0, f"gradient norm {float(grad_norm)}"
    for name, grad in seen["grads"].items():
        assert grad is not None, f"{name} got no gradient"
        _assert_on_device(f"grad of {name}", grad)
        assert bool(torch.isfinite(grad).all()), f"{name}: non-finite gradient"
    assert len(seen["memory"]) == model.config.num_hidden_layers
    for i, state in enumerate(seen["memory"]):
        for t in (*state.weights, *state.momentum):
            assert t.dtype == torch.float32, f"memory state of layer {i} is {t.dtype}"
            _assert_on_device(f"memory state of layer {i}", t)
    for name, p in model.named_parameters():
        assert bool(torch.isfinite(p).all()), f"{name}: non-finite after the step"
