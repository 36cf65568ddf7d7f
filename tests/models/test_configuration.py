"""TitansConfig: validation names the field, presets and overrides, JSON round trip, preset sizes."""

from __future__ import annotations

import json

import pytest
import torch

from titanmem.blocks import VARIANTS
from titanmem.models import PRESETS, TitansConfig, TitansForCausalLM

SMALL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=48, window=5)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(variant="mamba"), "variant"),
        (dict(window=0), "window"),
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (dict(variant="swa", window=None), "window"),
        (dict(variant="mag", window=None), "window"),
        (dict(variant="mal", window=None), "window"),
        (dict(variant="mac", head_dim=7), "head_dim"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(chunk_size=True), "chunk_size"),
        (dict(n_persistent=-1), "n_persistent"),
        (dict(mac_query_conv=-1), "mac_query_conv"),
        (dict(mac_query_conv=2.5), "mac_query_conv"),
        (dict(mac_read_residual="yes"), "mac_read_residual"),
        (dict(mac_memory_input="output"), "mac_memory_input"),
        (dict(memory_activation="tanh"), "memory_activation"),
        (dict(max_lr=0.0), "max_lr"),
        (dict(recompute_chunks=-1), "recompute_chunks"),
        (dict(recompute_chunks=1.5), "recompute_chunks"),
        (dict(compiled="yes"), "compiled"),
        (dict(attn_impl="flash"), "attn_impl"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={v[k]}" for k in v),
)
def test_invalid_config_raises_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field) as err:
        TitansConfig(**{**SMALL, **overrides})
    seen = overrides.get(field)
    assert repr(seen) in str(err.value) or str(seen) in str(err.value), f"value {seen!r} not in: {err.value}"


def test_windowless_variants_do_not_need_a_window():
    for variant in ("lmm", "mac", "transformer"):
        assert TitansConfig(**{**SMALL, "window": None, "variant": variant}).block_spec().window is None


def test_assigned_field_is_validated_when_the_model_is_built():
    config = TitansConfig(**SMALL)
    config.window = 0
    with pytest.raises(ValueError, match="window"):
        config.block_spec()


def test_block_spec_carries_every_field():
    config = TitansConfig(variant="mag", hidden_size=48, num_attention_heads=3, intermediate_size=96, head_dim=8,
                          window=7, n_persistent=3, memory_depth=3, memory_expansion=2, chunk_size=16,
                          segment_size=32, max_lr=0.2, memory_activation="silu", rope_theta=500.0,
                          rms_norm_eps=1e-5, attn_impl="eager")
    spec = config.block_spec()
    assert (spec.hidden_size, spec.num_heads, spec.intermediate_size, spec.head_dim) == (48, 3, 96, 8)
    assert (spec.window, spec.n_persistent, spec.memory_depth, spec.memory_expansion) == (7, 3, 3, 2)
    assert (spec.chunk_size, spec.segment_size, spec.max_lr, spec.memory_activation) == (16, 32, 0.2, "silu")
    assert (spec.rope_theta, spec.norm_eps, spec.attn_impl) == (500.0, 1e-5, "eager")


def test_json_round_trip():
    config = TitansConfig(variant="mal", **SMALL, n_persistent=3)
    again = TitansConfig.from_dict(json.loads(config.to_json_string()))
    assert again.variant == "mal" and again.block_spec() == config.block_spec()
    assert config.to_dict()["model_type"] == "titans"


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="preset") as err:
        TitansConfig.from_preset("huge")
    assert all(name in str(err.value) for name in PRESETS) and "'huge'" in str(err.value)


def test_preset_overrides():
    config = TitansConfig.from_preset("tiny", variant="lmm", num_hidden_layers=2)
    assert (config.variant, config.num_hidden_layers) == ("lmm", 2)
    assert (config.hidden_size, config.vocab_size, config.window) == (128, 256, 64)
    with pytest.raises(ValueError, match="window"):
        TitansConfig.from_preset("tiny", variant="swa", window=None)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_config_for_every_variant(name, variant):
    config = TitansConfig.from_preset(name, variant=variant)
    assert config.variant == variant and config.block_spec().hidden_size == PRESETS[name]["hidden_size"]


@pytest.mark.parametrize("name, size", [("170m", 170e6), ("340m", 340e6), ("760m", 760e6)])
def test_paper_presets_have_their_size_for_mac(name, size):
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = TitansForCausalLM(TitansConfig.from_preset(name))
    count = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    assert abs(count / size - 1) < 0.02, f"{name}: {count:,} parameters"


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal"])
def test_runtime_options_reach_every_memory_layer(variant):
    from titanmem.layers import NeuralMemory

    config = TitansConfig(variant=variant, **SMALL, num_hidden_layers=2, compiled=True, recompute_chunks=0)
    layers = [m for m in TitansForCausalLM(config).modules() if isinstance(m, NeuralMemory)]
    assert len(layers) == 2 and all(m.compiled and m.recompute_chunks == 0 for m in layers)
    assert TitansConfig.from_dict(json.loads(config.to_json_string())).recompute_chunks == 0


def test_runtime_options_come_from_a_training_config():
    from titanmem.train import config_from_dict
    from titanmem.train.trainer import build_model_config

    job = config_from_dict({"model": {"preset": "tiny", "variant": "mag", "recompute_chunks": 2, "compiled": True}})
    config = build_model_config(job, 256)
    assert config.recompute_chunks == 2 and config.compiled is True
    assert config.block_spec().recompute_chunks == 2 and config.block_spec().compiled is True


@pytest.mark.parametrize("overrides", [dict(max_surprise=0.0), dict(max_surprise=-1.0), dict(max_surprise="big"),
                                       dict(check_memory_finite="yes")], ids=str)
def test_memory_safety_fields_are_checked(overrides):
    with pytest.raises(ValueError, match=next(iter(overrides))):
        TitansConfig(variant="lmm", **SMALL, **overrides)


def test_memory_safety_fields_reach_every_memory_layer():
    from titanmem.layers import NeuralMemory

    config = TitansConfig(variant="mac", **SMALL, num_hidden_layers=2, max_surprise=0.5, check_memory_finite=False)
    layers = [m for m in TitansForCausalLM(config).modules() if isinstance(m, NeuralMemory)]
    assert [m.name for m in layers] == ["layers.0.memory", "layers.1.memory"]
    assert all(m.max_surprise == 0.5 and not m.check_finite for m in layers)


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal"])
def test_gate_initialisations_reach_every_memory_layer(variant):
    from titanmem.layers import NeuralMemory

    config = TitansConfig(variant=variant, **SMALL, num_hidden_layers=2, forget_bias_init=-7.0,
                          momentum_bias_init=1.5)
    layers = [m for m in TitansForCausalLM(config).modules() if isinstance(m, NeuralMemory)]
    assert len(layers) == 2
    for layer in layers:
        theta, eta, alpha = layer.gate_proj.bias.detach().view(3, -1)
        assert torch.all(theta == -2.0) and torch.all(eta == 1.5) and torch.all(alpha == -7.0)


@pytest.mark.parametrize("overrides", [dict(max_alpha=0.0), dict(max_alpha=1.5), dict(max_alpha=True),
                                       dict(forget_bias_init=float("nan")), dict(forget_bias_init="low"),
                                       dict(momentum_bias_init=float("inf")), dict(momentum_bias_init=None)], ids=str)
def test_forgetting_gate_fields_are_checked(overrides):
    with pytest.raises(ValueError, match=next(iter(overrides))):
        TitansConfig(variant="lmm", **SMALL, **overrides)
