"""Weight-decay groups and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from titanmem.models import TitansConfig, TitansForCausalLM
from titanmem.train.config import OptimConfig, ScheduleConfig
from titanmem.train.optim import build_optimizer, build_scheduler, lr_factor


@pytest.mark.parametrize(("variant", "persistent"), [("mac", "layers.0.persistent"), ("mag", "layers.0.attn.persistent")])
def test_norms_biases_and_persistent_tokens_are_not_decayed(variant, persistent):
    model = TitansForCausalLM(TitansConfig.from_preset("tiny", variant=variant))
    opt = build_optimizer(model, OptimConfig(weight_decay=0.1))
    decay_ids = {id(p) for p in opt.param_groups[0]["params"]}
    names = {name: id(p) in decay_ids for name, p in model.named_parameters()}
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.0
    assert not names["model.layers.0.memory.gate_proj.bias"] and not names["model.norm.weight"]
    assert not names[f"model.{persistent}"] and not names["model.layers.0.mlp_norm.weight"]
    assert names["model.layers.0.memory.memory_init.0"] and names["model.layers.0.mlp.up.weight"]
    assert names["model.embed_tokens.weight"] and names["model.layers.0.memory.gate_proj.weight"]
    # every parameter in exactly one group, the tied head counted once
    total = sum(len(g["params"]) for g in opt.param_groups)
    assert total == len(list(model.parameters()))


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = ScheduleConfig(steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert [lr_factor(s, cfg) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert lr_factor(9, cfg) == pytest.approx(1.0) and lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(110, cfg) == pytest.approx(0.1) and lr_factor(500, cfg) == pytest.approx(0.1)
    values = [lr_factor(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_scheduler_drives_the_optimizer_learning_rate():
    param = torch.nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.AdamW([param], lr=0.01)
    sched = build_scheduler(opt, ScheduleConfig(steps=20, warmup_steps=4, min_lr_ratio=0.0))
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    assert seen[-1] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 15 / 16)))
