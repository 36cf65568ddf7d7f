"""AdamW with weight-decay groups, and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig

__all__ = ["build_optimizer", "build_scheduler", "lr_factor", "no_decay"]


def no_decay(name: str, param: nn.Parameter) -> bool:
    """Whether parameter ``name`` is exempt from weight decay.

    Decay pulls weights towards zero, which only makes sense for matrices that mix features: norm
    scales, biases (the memory's gate biases included: they set the initial learning rate, momentum
    and forgetting of the memory) and the persistent tokens (learned data, Titans eq. 19) are exempt.
    Embeddings, projections, depthwise convolution kernels and the memory's learned initial weights
    are decayed.
    """
    return param.ndim < 2 or name.endswith("bias") or "persistent" in name.split(".")[-1]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters in two groups (decay / no decay), in name order."""
    decay, exempt = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (exempt if no_decay(name, param) else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": exempt, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def lr_factor(step: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Linear warmup over ``warmup_steps`` (step 0 already gets ``1 / warmup_steps``, never a zero step),
    then cosine from 1 down to ``min_lr_ratio`` at ``steps``, flat after.
    """
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor`; step it once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
