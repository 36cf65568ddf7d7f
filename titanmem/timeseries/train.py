"""Train and test a forecaster on an ETT file under the standard protocol (``titanmem forecast``).

Protocol (see :mod:`titanmem.timeseries.data`): 12/4/4-month split, train-only standardisation, all
7 channels, lookback 96. Training as the reference code of this benchmark line does it: Adam, MSE
loss, learning rate halved after every epoch, early stopping on the validation MSE (patience 3),
the best epoch's weights restored for the test. Test MSE/MAE are averaged over every test window
(stride 1, none dropped) and every channel, on standardised values.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data import ETT_HOURLY_SPLITS, load_ett, make_splits, windows
from .models import ForecasterConfig, build_forecaster
from ..train.config import OptimConfig
from ..train.loop import StepRecord, train_steps
from ..train.optim import build_optimizer

__all__ = ["ForecastJob", "ForecastResult", "evaluate", "run_forecast", "save_result"]

MODELS = ("memory", "attention", "dlinear", "last")


@dataclass(frozen=True)
class ForecastJob:
    """One training run: data, model, optimisation and seed. ``model_config`` holds the forecaster's fields."""

    data: str
    model: str = "memory"
    horizon: int = 96
    lookback: int = 96
    seed: int = 0
    epochs: int = 10
    patience: int = 3
    batch_size: int = 32
    lr: float | None = None  # None: the model's default (DEFAULT_LR)
    max_train_windows: int | None = None  # keep the first N training windows (quick runs and tests)
    split_sizes: tuple[int, int, int] = ETT_HOURLY_SPLITS  # train / val / test rows
    model_config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        for name in ("horizon", "lookback", "epochs", "patience", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.max_train_windows is not None and (isinstance(self.max_train_windows, bool) or not isinstance(
                self.max_train_windows, int) or self.max_train_windows < 1):
            raise ValueError(f"max_train_windows must be None or an int >= 1, got {self.max_train_windows!r}")
        if not isinstance(self.model_config, dict):
            raise TypeError(f"model_config must be a dict of forecaster fields, got {type(self.model_config).__name__}")

    @property
    def learning_rate(self) -> float:
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.model]

    def forecaster_config(self, channels: int) -> ForecasterConfig:
        fields = {**DEFAULT_CONFIG.get(self.model, {}), **self.model_config}
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(ForecasterConfig)})
        if unknown:
            raise ValueError(f"model_config has unknown field(s) {unknown}; see ForecasterConfig")
        return ForecasterConfig(lookback=self.lookback, horizon=self.horizon, channels=channels,
                                mixer=self.model if self.model in ("memory", "attention") else "memory", **fields)


# Width 16, as PatchTST uses on ETTh1 (8,640 training rows favour small models); one block and
# non-overlapping patches (7 tokens per series) because the per-token memory is the costly part on
# a CPU. Not tuned on the test split; the same network for both mixers.
_NETWORK = dict(d_model=16, n_heads=2, n_layers=1, patch_len=16, stride=16, dropout=0.2)
DEFAULT_CONFIG: dict[str, dict] = {
    "memory": dict(_NETWORK, memory_depth=2, memory_expansion=2, chunk_size=4),
    "attention": dict(_NETWORK),
}
DEFAULT_LR = {"memory": 1e-3, "attention": 1e-3, "dlinear": 5e-3, "last": 0.0}


@dataclass(frozen=True)
class ForecastResult:
    """Test metrics of one run (standardised scale), with what produced them."""

    job: dict
    model_config: dict
    mse: float
    mae: float
    val_mse: float
    epochs_run: int
    best_epoch: int
    parameters: int
    train_seconds: float
    test_windows: int
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> tuple[float, float]:
    """Mean squared and mean absolute error of ``model`` over windows ``x [W, L, C]``, ``y [W, H, C]``."""
    model.eval()
    sq = ab = 0.0
    for start in range(0, x.shape[0], batch_size):
        xb = torch.tensor(x[start:start + batch_size], dtype=torch.float32)
        yb = torch.tensor(y[start:start + batch_size], dtype=torch.float32)
        err = (model(xb) - yb).double()
        sq += float((err * err).sum())
        ab += float(err.abs().sum())
    count = y.shape[0] * y.shape[1] * y.shape[2]
    return sq / count, ab / count


def run_forecast(job: ForecastJob, progress: bool = True) -> tuple[ForecastResult, nn.Module]:
    """Train ``job.model`` on ``job.data`` and test the best validation epoch; returns the result and the model."""
    ett = load_ett(job.data)
    splits = make_splits(ett.values, job.lookback, tuple(job.split_sizes))
    train_x, train_y = windows(splits.train, job.lookback, job.horizon)
    if job.max_train_windows is not None:
        train_x, train_y = train_x[:job.max_train_windows], train_y[:job.max_train_windows]
    val_x, val_y = windows(splits.val, job.lookback, job.horizon)
    test_x, test_y = windows(splits.test, job.lookback, job.horizon)
    config = job.forecaster_config(ett.values.shape[1])
    _seed_everything(job.seed)
    model = build_forecaster(job.model, config)
    parameters = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    history: list[dict] = []
    if parameters:
        (val_mse, best_epoch, weights), epochs_run = _fit(model, job, (train_x, train_y), (val_x, val_y), history,
                                                          progress)
        model.load_state_dict(weights)
    else:  # the naive forecast: nothing to train
        val_mse, best_epoch, epochs_run = evaluate(model, val_x, val_y)[0], 0, 0
    train_seconds = time.perf_counter() - start
    mse, mae = evaluate(model, test_x, test_y)
    if not (math.isfinite(mse) and math.isfinite(mae)):
        raise FloatingPointError(f"test metrics are not finite (mse {mse}, mae {mae}): the run diverged")
    result = ForecastResult(job=asdict(job), model_config=config.to_dict(), mse=mse, mae=mae, val_mse=val_mse,
                            epochs_run=epochs_run, best_epoch=best_epoch, parameters=parameters,
                            train_seconds=train_seconds, test_windows=int(test_x.shape[0]), history=history)
    return result, model


def _fit(
    model: nn.Module, job: ForecastJob, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
    history: list[dict], progress: bool,
) -> tuple[tuple[float, int, dict], int]:
    """Train with early stopping; returns ``((best val MSE, its epoch, its weights), epochs run)``."""
    train_x, train_y = train
    # Adam as the reference code uses it: AdamW without weight decay is the same update (bit for bit,
    # measured), built by the library's one optimizer builder.
    optimizer = build_optimizer(model, OptimConfig(lr=job.learning_rate, beta2=0.999, weight_decay=0.0, grad_clip=0.0))
    generator = torch.Generator().manual_seed(job.seed)
    best, stale, epoch = (math.inf, 0, None), 0, 0
    steps = math.ceil(train_x.shape[0] / job.batch_size)

    def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return nn.functional.mse_loss(model(batch[0]), batch[1])

    for epoch in range(1, job.epochs + 1):
        order = torch.randperm(train_x.shape[0], generator=generator).numpy()
        bar = tqdm(total=steps, desc=f"{job.model} h{job.horizon} epoch {epoch}", leave=False, disable=not progress)
        rows = (np.sort(order[step * job.batch_size:(step + 1) * job.batch_size]) for step in range(steps))
        batches = ((torch.as_tensor(train_x[idx], dtype=torch.float32), torch.as_tensor(train_y[idx], dtype=torch.float32))
                   for idx in rows)
        losses: list[float] = []

        def on_step(record: StepRecord, epoch: int = epoch, bar=bar, losses=losses) -> None:
            loss = float(record.loss_sum)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss is not finite at epoch {epoch}, step {record.step - 1}")
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses) / len(losses):.4f}")

        # One epoch through the library's training loop: no schedule inside it, no clipping.
        train_steps(model, optimizer, None, batches, mse, steps=steps, on_step=on_step)
        bar.close()
        total = sum(losses)
        val_mse, val_mae = evaluate(model, *val)
        history.append(dict(epoch=epoch, train_mse=total / steps, val_mse=val_mse, val_mae=val_mae,
                            lr=optimizer.param_groups[0]["lr"]))
        if val_mse < best[0]:
            best, stale = (val_mse, epoch, copy.deepcopy(model.state_dict())), 0
        else:
            stale += 1
            if stale >= job.patience:
                break
        for group in optimizer.param_groups:  # halve every epoch ("type1" schedule of the reference code)
            group["lr"] *= 0.5
    return best, epoch


def save_result(result: ForecastResult, path: str | os.PathLike) -> None:
    """Write the result as JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)

