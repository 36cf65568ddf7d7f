"""ETT (Electricity Transformer Temperature) files and the long-term forecasting protocol.

The protocol of the Informer / Autoformer / iTransformer line, which the Titans paper's Table 3
follows: hourly ETTh1/ETTh2, a chronological 12/4/4-month split (8,640 / 2,880 / 2,880 rows), the
validation and test windows starting ``lookback`` rows early so that their first target is the
split's first row, per-channel standardisation with the training rows' mean and (population)
standard deviation, all 7 channels in and out, MSE and MAE on the standardised test set.

The files are the unmodified CSVs of https://github.com/zhouhaoyi/ETDataset (``ETT-small/``):
a ``date`` column, then ``HUFL, HULL, MUFL, MULL, LUFL, LULL, OT``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import check_int

__all__ = [
    "ETT_COLUMNS", "ETT_HOURLY_SPLITS", "ETTData", "ForecastSplits", "Standardizer", "load_ett", "make_splits", "window_count",
    "windows",
]

ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
# Rows of each split for the hourly files: 12, 4 and 4 months of 30 days x 24 hours.
ETT_HOURLY_SPLITS = (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24)


@dataclass(frozen=True)
class ETTData:
    """One ETT file: ``dates`` (strings, ``[N]``), ``values`` (float64, ``[N, 7]``) and ``columns``."""

    dates: tuple[str, ...]
    values: np.ndarray
    columns: tuple[str, ...]


def load_ett(path: str | os.PathLike, columns: tuple[str, ...] = ETT_COLUMNS) -> ETTData:
    """Read an ETT CSV; raise ``ValueError`` naming the file if a column is missing or a value is not a number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ETT file not found: {path} (get ETTh1.csv / ETTh2.csv from "
            "https://github.com/zhouhaoyi/ETDataset/tree/main/ETT-small)"
        )
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty: expected a header with 'date' and {', '.join(columns)}")
        header = [h.strip() for h in header]
        missing = [c for c in ("date", *columns) if c not in header]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing}: expected 'date' and {list(columns)}, got {header}")
        date_at, at = header.index("date"), [header.index(c) for c in columns]
        dates, rows = [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                rows.append([float(row[i]) for i in at])
            except (ValueError, IndexError) as err:
                raise ValueError(f"{path}, line {line}: expected {len(header)} numeric fields, got {row!r}") from err
            dates.append(row[date_at])
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))
    if not np.isfinite(values).all():
        raise ValueError(f"{path} holds non-finite values (NaN or inf)")
    return ETTData(tuple(dates), values, tuple(columns))


class Standardizer:
    """Per-channel ``(x - mean) / std`` with statistics from the training rows only.

    ``std`` is the population standard deviation (``ddof = 0``), as scikit-learn's ``StandardScaler``
    that the reference code of this benchmark line uses.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean, self.std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if (self.std <= 0).any():
            raise ValueError(f"std must be > 0 in every channel, got {self.std.tolist()}")

    @classmethod
    def fit(cls, rows: np.ndarray) -> Standardizer:
        """Statistics of ``rows [N, C]``."""
        return cls(rows.mean(axis=0), rows.std(axis=0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean


@dataclass(frozen=True)
class ForecastSplits:
    """Standardised ``train``, ``val`` and ``test`` rows ``[N_split, C]`` and the scaler fitted on train.

    ``borders`` holds ``(start, end)`` row ranges in the file for each split; val and test start
    ``lookback`` rows before their first target (those history rows overlap the previous split; a
    test *target* never lies in the training rows).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    scaler: Standardizer
    borders: dict[str, tuple[int, int]]


def make_splits(
    values: np.ndarray, lookback: int, sizes: tuple[int, int, int] = ETT_HOURLY_SPLITS
) -> ForecastSplits:
    """Chronological split of ``values [N, C]`` into train / val / test rows, standardised with train statistics.

    Raises ``ValueError`` if the file has fewer rows than ``sum(sizes)``.
    """
    check_int("lookback", lookback, 1)
    n_train, n_val, n_test = (check_int(f"sizes[{i}]", s, 1) for i, s in enumerate(sizes))
    need = n_train + n_val + n_test
    if values.ndim != 2 or values.shape[0] < need:
        raise ValueError(f"values must have at least {need} rows (train {n_train} + val {n_val} + test {n_test}), "
                         f"got shape {tuple(values.shape)}")
    if lookback > n_train:
        raise ValueError(f"lookback must be <= the training rows ({n_train}), got {lookback}")
    borders = {
        "train": (0, n_train),
        "val": (n_train - lookback, n_train + n_val),
        "test": (n_train + n_val - lookback, need),
    }
    scaler = Standardizer.fit(values[:n_train])
    scaled = scaler.transform(values[:need])
    parts = {name: scaled[a:b] for name, (a, b) in borders.items()}
    return ForecastSplits(parts["train"], parts["val"], parts["test"], scaler, borders)


def window_count(rows: int, lookback: int, horizon: int) -> int:
    """Number of (history, target) windows in ``rows`` consecutive rows (stride 1)."""
    return max(rows - lookback - horizon + 1, 0)


def windows(rows: np.ndarray, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """All stride-1 windows: ``history [W, lookback, C]`` and ``target [W, horizon, C]`` (views, no copy)."""
    check_int("lookback", lookback, 1)
    check_int("horizon", horizon, 1)
    count = window_count(rows.shape[0], lookback, horizon)
    if count == 0:
        raise ValueError(f"{rows.shape[0]} rows hold no window of lookback {lookback} + horizon {horizon}")
    view = np.lib.stride_tricks.sliding_window_view(rows, lookback + horizon, axis=0)  # [W, C, L + H]
    view = view[:count].transpose(0, 2, 1)
    return view[:, :lookback], view[:, lookback:]
