"""The memory-rule presets (moneta, yaad, memora, omeganet, atlas) keep every model invariant: decoding
with the cache == parallel forward, pieces == one call, causality at chunk boundaries (where the
Omega window reaches into the previous chunk), independent batch rows, a gradient in every
parameter and the save/load round trip; and the memory_* fields reach every memory variant."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tests.helpers import assert_close
from tests.invariants import check_causal, check_decoding_equals_parallel, check_pieces_equal_one_call, \
    check_rows_independent, lm_step
from titanmem.layers import NeuralMemory
from titanmem.models import PRESETS, TitansConfig, TitansForCausalLM
from titanmem.models.presets import FAMILY_RULES
from titanmem.ops import NAMED_RULES, MemoryRule

RTOL = 1e-10
T, VOCAB = 19, 64
# chunk 4: memory chunk boundaries inside T, so a window of 4 reaches across them.
TINY = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            chunk_size=4, segment_size=8, window=5, n_persistent=2, memory_expansion=2, max_lr=0.5,
            initializer_range=0.1)
NAMES = list(FAMILY_RULES)


def _model(name: str, variant: str = "lmm", seed: int = 0) -> TitansForCausalLM:
    torch.manual_seed(seed)
    model = TitansForCausalLM(TitansConfig(variant=variant, **{**FAMILY_RULES[name], **TINY})).to(torch.float64)
    with torch.no_grad():  # random gate biases (theta, eta, alpha and the window / Huber gates)
        for pname, p in model.named_parameters():
            if pname.endswith("gate_proj.bias"):
                p.normal_(0.0, 1.0)
    return model.eval()


def _ids(B: int = 2, length: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=NAMES)
def family_model(request):
    return request.param, _model(request.param)


def test_presets_name_their_rule_at_every_size():
    for name, rule in FAMILY_RULES.items():
        for preset in (name, f"{name}-170m", f"{name}-340m", f"{name}-760m"):
            config = TitansConfig.from_preset(preset)
            assert config.variant == "lmm"
            assert config.block_spec().memory_rule == MemoryRule(**{k.removeprefix("memory_"): v
                                                                      for k, v in rule.items()})
    assert PRESETS["moneta-340m"]["hidden_size"] == PRESETS["340m"]["hidden_size"]


def test_presets_build_the_ops_named_rules():
    # the presets and the op-level benchmarks/capacity sweep name the same rules
    for name in FAMILY_RULES:
        assert TitansConfig.from_preset(name).memory_rule() == NAMED_RULES[name]
    assert FAMILY_RULES["moneta"] == {"memory_objective": "lp", "memory_retention": "lq"}


def test_the_rule_reaches_every_memory_layer(family_model):
    name, model = family_model
    layers = [m for m in model.modules() if isinstance(m, NeuralMemory)]
    assert len(layers) == 2 and all(m.rule == model.config.block_spec().memory_rule for m in layers)
    assert not layers[0].rule.is_titans


@pytest.mark.parametrize("prefill", [1, 6])
def test_decoding_with_cache_equals_parallel(family_model, prefill):
    _, model = family_model
    check_decoding_equals_parallel(lm_step(model), _ids(), prefill, RTOL)


def test_pieces_equal_one_call(family_model):
    _, model = family_model
    check_pieces_equal_one_call(lm_step(model), _ids(), (3, 7, 9), RTOL)


def test_rows_of_a_batch_are_independent(family_model):
    _, model = family_model
    check_rows_independent(lm_step(model), _ids(B=3), RTOL)


@pytest.mark.parametrize("p", [0, 3, 4, 5, 8, 15])
def test_causal(family_model, p):
    _, model = family_model
    check_causal(lm_step(model), _ids(), p, lambda column: (column + 1) % VOCAB)


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name):
    model = _model(name).train()
    logits = model(_ids(), use_cache=False).logits
    F.cross_entropy(logits.reshape(-1, VOCAB), _ids(seed=2).reshape(-1)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().max() > 0)]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_round_trip(name, tmp_path):
    model = _model(name)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).to(torch.float64).eval()
    assert loaded.config.block_spec() == model.config.block_spec()
    with torch.no_grad():
        assert_close("logits", model(_ids(), use_cache=False).logits, loaded(_ids(), use_cache=False).logits, 1e-12)


@pytest.mark.parametrize("variant", ["mac", "mag", "mal"])
@pytest.mark.parametrize("name", ["yaad", "atlas"])
def test_rules_run_in_every_memory_variant(name, variant):
    # The rule reaches MAC's, MAG's and MAL's memory; decoding and causality hold there too.
    model = _model(name, variant=variant)
    assert all(m.rule == model.config.block_spec().memory_rule for m in model.modules() if isinstance(m, NeuralMemory))
    check_decoding_equals_parallel(lm_step(model), _ids(), 5, RTOL)
    check_causal(lm_step(model), _ids(), 8, lambda column: (column + 1) % VOCAB)


@pytest.mark.parametrize("field, value, pattern", [
    ("memory_objective", "l3", r"memory_objective must be one of"),
    ("memory_p", 0.5, r"memory_p must be a finite number"),
    ("memory_window", 0, r"memory_window must be >= 1"),
    ("memory_q", "four", r"memory_q must be a number"),
    ("max_delta", 0.0, r"max_delta must be"),
])
def test_bad_memory_fields_are_value_errors_naming_the_field(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        TitansConfig(variant="lmm", **TINY, **{field: value})


def test_compiled_needs_the_titans_rule():
    with pytest.raises(ValueError, match="compiled=True runs the Titans op only"):
        TitansConfig(variant="lmm", **TINY, memory_retention="kl", compiled=True)


def test_memory_fields_survive_json():
    config = TitansConfig(variant="mag", **TINY, **FAMILY_RULES["atlas"])
    again = TitansConfig.from_dict(json.loads(config.to_json_string()))
    assert again.block_spec().memory_rule == config.block_spec().memory_rule
