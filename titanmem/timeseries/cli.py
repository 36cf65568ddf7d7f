"""``titanmem forecast``: train and test forecasters on ETT files, write JSON, a table and plots."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..cli_args import int_list_at_least, positive_float, positive_int, report_error
from .data import load_ett
from .train import MODELS, ForecastJob
from .report import format_table, load_run_model, plot_test_window, run_grid, summarize

__all__ = ["add_forecast_arguments", "run_forecast_command"]


def _model_list(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if not models or bad:
        raise argparse.ArgumentTypeError(f"models must be among {', '.join(MODELS)}, got {text!r}")
    return models


def add_forecast_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``titanmem forecast``."""
    parser.add_argument("--data", action="append", required=True,
                        help="ETT CSV, repeat for several files (required), e.g. data/ett/ETTh1.csv in a clone")
    parser.add_argument("--horizon", type=int_list_at_least(1), default=[96],
                        help="comma-separated horizons in time steps (default 96)")
    parser.add_argument("--model", type=_model_list, default=["memory"],
                        help=f"comma-separated models among {', '.join(MODELS)} (default memory)")
    parser.add_argument("--seeds", type=int_list_at_least(0), default=[0],
                        help="comma-separated seeds, one run per seed (default 0)")
    parser.add_argument("--lookback", type=positive_int, default=96,
                        help="past time steps each forecast reads (default 96)")
    parser.add_argument("--epochs", type=positive_int, default=10, help="training epochs at most (default 10)")
    parser.add_argument("--patience", type=positive_int, default=3,
                        help="stop after this many epochs without a better validation MSE (default 3)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="training windows per step (default 32)")
    parser.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: per model, see docs)")
    parser.add_argument("--max-train-windows", type=positive_int, default=None,
                        help="use only the first N training windows (default: all)")
    parser.add_argument("--config", default=None,
                        help="JSON of forecaster fields, e.g. '{\"d_model\": 64}' (default: the model's defaults)")
    parser.add_argument("--out", default="runs/forecast", help="output folder (default runs/forecast)")
    parser.add_argument("--no-plot", action="store_true", help="skip the test-window plots (default: draw them)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (default: show them)")


def run_forecast_command(args: argparse.Namespace) -> int:
    """Run the grid, then write ``table.md``, ``summary.json`` and ``test_window_h<H>.png`` per dataset."""
    try:
        fields = json.loads(args.config) if args.config else {}
        if not isinstance(fields, dict):
            raise ValueError(f"--config must be a JSON object, got {args.config!r}")
        job = ForecastJob(data=args.data[0], lookback=args.lookback, epochs=args.epochs, patience=args.patience,
                          batch_size=args.batch_size, lr=args.lr, max_train_windows=args.max_train_windows,
                          model_config=fields)
        for model in args.model:  # unknown or bad forecaster fields fail here, before any training
            replace(job, model=model).forecaster_config(channels=7)
        for path in args.data:
            if not Path(path).is_file():
                raise ValueError(f"--data {path} is not a file (ETT CSVs: https://github.com/zhouhaoyi/ETDataset)")
            try:  # read every file now: a file that is not an ETT table fails before any training
                load_ett(path)
            except ValueError as err:
                raise ValueError(f"--data {path}: {err}") from err
    except (ValueError, TypeError) as err:
        return report_error("forecast", err)
    out = Path(args.out)
    results = []
    for path in args.data:
        results += run_grid(replace(job, data=path), args.horizon, args.model, args.seeds, out,
                            progress=not args.quiet)
        if not args.no_plot:
            folder = out / Path(path).stem
            for horizon in args.horizon:
                models = {m: load_run_model(folder / f"{m}_h{horizon}_s{args.seeds[0]}.json") for m in args.model}
                plot_test_window(path, models, args.lookback, horizon, folder / f"test_window_h{horizon}.png")
    table = format_table(results)
    (out / "table.md").write_text(table + "\n")
    summary = {d: {m: {str(h): dict(zip(("mse", "mse_std", "mae", "mae_std", "seeds"), v)) for h, v in per.items()}
                   for m, per in models.items()} for d, models in summarize(results).items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table)
    print(f"wrote {out / 'table.md'}, {out / 'summary.json'} and one JSON per run under {out}")
    return 0
