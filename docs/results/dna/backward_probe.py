"""Probe the exploding backward of a DNA memory model on an all-N window (docs/results.md, "8K context").

For a model trained with ``titanmem train`` (a checkpoint folder), on windows made of one repeated
token ("N"):

1. the gradient norm by window length, with the parameters that carry most of it;
2. the same at one length for other memory chunk sizes (is it the chunk-parallel step?);
3. one optimizer step (AdamW, clipping at 1.0) with and without skipping a non-finite gradient norm:
   how many weights change, how many become non-finite.

Usage (one CPU thread, a few minutes)::

    python docs/results/dna/backward_probe.py runs/r23/pre8k-lmm/checkpoints/step_00000200 out.json
"""

from __future__ import annotations

import copy
import json
import sys

import torch

from titanmem.eval.loading import load_model
from titanmem.layers import NeuralMemory
from titanmem.train import trainer
from titanmem.train.config import OptimConfig
from titanmem.train.loop import optimizer_step
from titanmem.train.optim import build_optimizer


def _window(token: int, length: int) -> torch.Tensor:
    return torch.full((1, length + 1), token, dtype=torch.long)


def _gradients(model: torch.nn.Module, ids: torch.Tensor) -> tuple[float, dict[str, float]]:
    model.zero_grad()
    loss = trainer.lm_loss(model, ids)
    loss.backward()
    norms = {n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), norms


def main(checkpoint: str, out: str) -> None:
    torch.set_num_threads(1)
    model, tokenizer = load_model(checkpoint)
    model.train()
    n = tokenizer.encode("N")[0]
    report: dict = {"checkpoint": checkpoint, "by_length": {}, "by_chunk_size_at_2048": {}, "one_step": {}}
    for length in (512, 1024, 2048, 4096, 8192):
        loss, norms = _gradients(model, _window(n, length))
        total = sum(v * v for v in norms.values()) ** 0.5
        top = sorted(norms.items(), key=lambda kv: -kv[1])[:5]
        report["by_length"][length] = {"loss": loss, "grad_norm": total, "largest": top}
        print(length, f"loss {loss:.3f} grad norm {total:.3g}", top[:2], flush=True)
    layers = [m for m in model.modules() if isinstance(m, NeuralMemory)]
    trained_chunk = layers[0].chunk_size
    for chunk in (64, 16, 4):
        for layer in layers:
            layer.chunk_size = chunk
        loss, norms = _gradients(model, _window(n, 2048))
        total = sum(v * v for v in norms.values()) ** 0.5
        report["by_chunk_size_at_2048"][chunk] = {"loss": loss, "grad_norm": total}
        print("chunk", chunk, f"grad norm {total:.3g}", flush=True)
    for layer in layers:
        layer.chunk_size = trained_chunk
    model.zero_grad()
    for length in (4096, 8192):
        for skip in (False, True):
            m = copy.deepcopy(model)
            optimizer = build_optimizer(m, OptimConfig(lr=2e-3))
            _, norm, _ = optimizer_step(m, optimizer, None, iter([_window(n, length)]), trainer.lm_loss,
                                        grad_clip=1.0, skip_nonfinite=skip)
            changed = sum(int((p != q).sum()) for p, q in zip(m.parameters(), model.parameters()))
            bad = sum(int((~torch.isfinite(p)).sum()) for p in m.parameters())
            key = f"{length}_{'skip' if skip else 'clip_only'}"
            report["one_step"][key] = {"grad_norm": float(norm), "weights_changed": changed, "weights_nonfinite": bad}
            print(key, report["one_step"][key], flush=True)
    report["parameters"] = sum(p.numel() for p in model.parameters())
    with open(out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
