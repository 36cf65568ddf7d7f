"""Grids of forecasting runs (datasets x horizons x models x seeds), their table and a test-window plot.

``titanmem forecast`` calls :func:`run_grid`; each finished run is saved as
``<out>/<dataset>/<model>_h<horizon>_s<seed>.json`` and skipped when the command is run again, so an
interrupted grid resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .data import load_ett, make_splits, windows
from .models import ForecasterConfig, build_forecaster
from .train import ForecastJob, run_forecast, save_result

__all__ = ["PAPER_TABLE3", "format_table", "load_run_model", "plot_test_window", "run_grid", "summarize"]

# Titans paper, Table 3: MSE / MAE averaged over the horizons 96, 192, 336, 720 (lookback 96).
PAPER_TABLE3 = {
    "ETTh1": {"Neural Memory": (0.420, 0.421), "Simba": (0.441, 0.432), "iTransformer": (0.454, 0.447),
              "PatchTST": (0.469, 0.454), "DLinear": (0.456, 0.452)},
    "ETTh2": {"Neural Memory": (0.336, 0.382), "Simba": (0.361, 0.391), "iTransformer": (0.383, 0.407),
              "PatchTST": (0.387, 0.407), "DLinear": (0.559, 0.515)},
}
LABELS = {"memory": "memory (ours)", "attention": "attention (ours)", "dlinear": "DLinear (ours)",
          "last": "repeat last value"}


def run_grid(
    job: ForecastJob, horizons: list[int], models: list[str], seeds: list[int], out: str | os.PathLike,
    progress: bool = True,
) -> list[dict]:
    """Run (or load, when its JSON exists) every combination; returns the results as dicts."""
    dataset = Path(job.data).stem
    folder = Path(out) / dataset
    results = []
    for horizon in horizons:
        for model in models:
            for seed in seeds:
                path = folder / f"{model}_h{horizon}_s{seed}.json"
                if path.is_file():
                    results.append(json.loads(path.read_text()))
                    continue
                run = replace(job, horizon=horizon, model=model, seed=seed)
                result, trained = run_forecast(run, progress=progress)
                folder.mkdir(parents=True, exist_ok=True)
                save_weights(trained, path.with_suffix(".safetensors"))
                save_result(result, path)
                if progress:
                    print(f"{dataset} h{horizon} {model} seed {seed}: test MSE {result.mse:.4f} MAE {result.mae:.4f} "
                          f"(best epoch {result.best_epoch}/{result.epochs_run}, {result.train_seconds:.0f} s)",
                          flush=True)
                results.append(result.to_dict())
    return results


def summarize(results: list[dict]) -> dict:
    """``{dataset: {model: {horizon: (mse mean, mse std, mae mean, mae std, n)}}}`` (std over seeds, ddof 1)."""
    groups: dict = {}
    for r in results:
        key = (Path(r["job"]["data"]).stem, r["job"]["model"], r["job"]["horizon"])
        groups.setdefault(key, []).append(r)
    table: dict = {}
    for (dataset, model, horizon), runs in sorted(groups.items()):
        mse, mae = [r["mse"] for r in runs], [r["mae"] for r in runs]
        spread = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)
        table.setdefault(dataset, {}).setdefault(model, {})[horizon] = (
            statistics.fmean(mse), spread(mse), statistics.fmean(mae), spread(mae), len(runs))
    return table


def format_table(results: list[dict]) -> str:
    """Markdown: per dataset, MSE / MAE (mean ± std over seeds) per horizon and their average, paper beside."""
    lines = []
    for dataset, models in summarize(results).items():
        horizons = sorted({h for per in models.values() for h in per})
        lines += [f"### {dataset}", "",
                  "| model | " + " | ".join(f"h={h} MSE / MAE" for h in horizons) + " | average MSE / MAE | seeds |",
                  "|---|" + "---:|" * (len(horizons) + 2)]
        for model, per in models.items():
            cells = [f"{per[h][0]:.3f}±{per[h][1]:.3f} / {per[h][2]:.3f}±{per[h][3]:.3f}" if h in per else "–"
                     for h in horizons]
            complete = all(h in per for h in horizons)
            avg = (f"**{statistics.fmean(per[h][0] for h in horizons):.3f} / "
                   f"{statistics.fmean(per[h][2] for h in horizons):.3f}**") if complete else "–"
            seeds = sorted({per[h][4] for h in per})
            lines.append(f"| {LABELS.get(model, model)} | " + " | ".join(cells) + f" | {avg} | {seeds[0]} |")
        for name, (mse, mae) in PAPER_TABLE3.get(dataset, {}).items():
            lines.append(f"| {name} (paper) | " + " | ".join("" for _ in horizons) + f" | {mse:.3f} / {mae:.3f} | |")
        lines.append("")
    return "\n".join(lines)


@torch.no_grad()
def plot_test_window(
    data: str | os.PathLike, models: dict, lookback: int, horizon: int, path: str | os.PathLike,
    window: int | None = None, channel: str = "OT",
) -> None:
    """Plot one test window of ``channel``: history, truth and each model's forecast (standardised units)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ett = load_ett(data)
    if channel not in ett.columns:
        raise ValueError(f"channel must be one of {ett.columns}, got {channel!r}")
    c = ett.columns.index(channel)
    x, y = windows(make_splits(ett.values, lookback).test, lookback, horizon)
    window = x.shape[0] // 2 if window is None else window
    if not 0 <= window < x.shape[0]:
        raise ValueError(f"window must be in [0, {x.shape[0]}), got {window}")
    xb = torch.tensor(x[window:window + 1], dtype=torch.float32)
    fig, ax = plt.subplots(figsize=(10, 4))
    past, future = np.arange(-lookback, 0), np.arange(horizon)
    ax.plot(past, x[window, :, c], color="black", label="history")
    ax.plot(future, y[window, :, c], color="black", linestyle="--", label="truth")
    for name, model in models.items():
        model.eval()
        ax.plot(future, model(xb)[0, :, c].numpy(), label=LABELS.get(name, name))
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("hours from the forecast start")
    ax.set_ylabel(f"{channel} (standardised)")
    ax.set_title(f"{Path(data).stem}, test window {window}, horizon {horizon}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_weights(model: nn.Module, path: Path) -> None:
    """Write a run's weights (safetensors) atomically, so a plot can be redrawn without retraining."""
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def load_run_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model of a saved run from its JSON (``..._s<seed>.json``) and the weights beside it."""
    path = Path(path)
    record = json.loads(path.read_text())
    model = build_forecaster(record["job"]["model"], ForecasterConfig(**record["model_config"]))
    weights = path.with_suffix(".safetensors")
    if any(True for _ in model.parameters()):
        model.load_state_dict(load_file(str(weights)))
    return model
