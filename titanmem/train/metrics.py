"""Training metrics: CSV and JSONL files, TensorBoard (optional), and the loss-curve plot."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CSV_COLUMNS", "MetricsWriter", "plot_curves", "plot_loss_history", "read_metrics"]

# One row per logged step; validation columns are empty on steps without validation.
CSV_COLUMNS = ("step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s", "val_loss", "val_bpb",
               "val_ppl")


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class MetricsWriter:
    """Appends metric records to ``metrics.csv`` / ``metrics.jsonl`` under ``out_dir`` (and TensorBoard).

    On resume, :meth:`truncate_after` drops rows past the resumed step first, so a crash between
    two checkpoints does not leave duplicated steps.
    """

    def __init__(self, out_dir: str | Path, *, csv_file: bool = True, jsonl: bool = True,
                 tensorboard: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "metrics.csv" if csv_file else None
        self.jsonl_path = self.out_dir / "metrics.jsonl" if jsonl else None
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # the tensorboard package is optional
                raise ImportError("log.tensorboard = true needs the tensorboard package: pip install tensorboard "
                                  "(or pip install 'titanmem[tensorboard]')") from err
            self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Forget records of steps after ``step`` (both files), keeping the ones up to it."""
        if self.csv_path is not None and self.csv_path.exists():
            with self.csv_path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
            with self.csv_path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        if self.jsonl_path is not None and self.jsonl_path.exists():
            lines = [ln for ln in self.jsonl_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            self.jsonl_path.write_text("".join(ln + "\n" for ln in lines))

    def write(self, record: Mapping[str, Any]) -> None:
        """Record one step's metrics (keys from :data:`CSV_COLUMNS`; missing ones are left empty)."""
        unknown = set(record) - set(CSV_COLUMNS)
        if unknown:
            raise ValueError(f"record has keys outside CSV_COLUMNS: {sorted(unknown)}")
        if self.csv_path is not None:
            new = not self.csv_path.exists()
            with self.csv_path.open("a", newline="") as f:
                writer = csv.writer(f)
                if new:
                    writer.writerow(CSV_COLUMNS)
                writer.writerow([_format(record.get(c)) for c in CSV_COLUMNS])
        if self.jsonl_path is not None:
            with self.jsonl_path.open("a") as f:
                f.write(json.dumps({k: v for k, v in record.items() if v is not None}) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}" if not key.startswith("val_") else f"val/{key[4:]}",
                                        value, record["step"])
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, float | None]]:
    """Rows of a ``metrics.csv`` as dicts of floats (None where empty)."""
    with Path(path).open(newline="") as f:
        return [{k: float(v) if v != "" else None for k, v in row.items()} for row in csv.DictReader(f)]


def plot_curves(runs: Mapping[str, str | Path], out_path: str | Path, title: str = "") -> Path:
    """Training loss and validation bits per byte against tokens for each named run's ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for label, path in runs.items():
        rows = read_metrics(path)
        train = [(r["tokens"], r["loss"] / math.log(2)) for r in rows if r["loss"] is not None]
        val = [(r["tokens"], r["val_bpb"]) for r in rows if r["val_bpb"] is not None]
        if train:
            ax_train.plot(*zip(*train), label=label)
        if val:
            ax_val.plot(*zip(*val), marker="o", label=label)
    ax_train.set(xlabel="training tokens", ylabel="training loss (bits per token)", title="training")
    ax_val.set(xlabel="training tokens", ylabel="bits per byte", title="validation")
    for ax in (ax_train, ax_val):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def plot_loss_history(history: Sequence[Mapping[str, Any]], out_path: str | Path, title: str = "",
                      window: int = 25) -> Path:
    """The training loss of each step (``history``: dicts with ``"step"`` and ``"loss"``, in nats) and its
    trailing mean over ``window`` steps, as a PNG at ``out_path``; skipped steps are marked.

    Raises:
        ValueError: ``history`` is empty or ``window`` < 1.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("history must hold at least one step, got none")
    if not (isinstance(window, int) and window >= 1):
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    steps = [h["step"] for h in history]
    losses = [h["loss"] for h in history]
    mean = [sum(losses[max(0, i + 1 - window):i + 1]) / (i + 1 - max(0, i + 1 - window)) for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, losses, alpha=0.3, label="loss of the step")
    ax.plot(steps, mean, label=f"mean of the last {window} steps")
    skipped = [h["step"] for h in history if h.get("skipped")]
    if skipped:
        ax.plot(skipped, [losses[steps.index(s)] for s in skipped], "rx", label="skipped (gradient not finite)")
    ax.set(xlabel="optimizer step", ylabel="training loss (nats)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
