"""Forecasting (Titans §5.6): the ETT reader and protocol, the forecasters, one run, grids and ``titanmem forecast``.

A domain subpackage (docs/design.md, "Domains"): it imports from the strata and is never imported by
them. ``data`` reads ETT files and cuts windows, ``models`` holds the patching forecaster and DLinear,
``train`` runs one training and test through the one loop, ``report`` runs grids and writes the
table and plot, ``cli`` is the command.
"""

from .data import ETT_COLUMNS, ETT_HOURLY_SPLITS, load_ett, make_splits, windows
from .models import DLinear, ForecasterConfig, PatchForecaster, build_forecaster
from .train import ForecastJob, ForecastResult, evaluate, run_forecast

__all__ = [
    "DLinear", "ETT_COLUMNS", "ETT_HOURLY_SPLITS", "ForecastJob", "ForecastResult", "ForecasterConfig",
    "PatchForecaster", "build_forecaster", "evaluate", "load_ett", "make_splits", "run_forecast", "windows",
]
