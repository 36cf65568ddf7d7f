"""Forecasters: output shapes, causality of the patch encoder, errors, and a quick DLinear run."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from titanmem.cli import main
from titanmem.timeseries.models import DLinear, ForecasterConfig, PatchForecaster, build_forecaster
from titanmem.timeseries.data import load_ett, make_splits, windows
from titanmem.timeseries.train import ForecastJob, evaluate, run_forecast
from titanmem.timeseries.report import load_run_model, run_grid

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ett" / "ETTh1.csv"
SMALL = dict(d_model=16, n_heads=2, n_layers=2, patch_len=8, stride=4, chunk_size=3, dropout=0.0)


@pytest.mark.parametrize("model", ["memory", "attention", "dlinear", "last"])
@pytest.mark.parametrize("horizon", [1, 24, 96])
def test_output_shape_follows_horizon(model, horizon):
    torch.manual_seed(0)
    net = build_forecaster(model, ForecasterConfig(lookback=48, horizon=horizon, channels=3, **SMALL)).eval()
    x = torch.randn(2, 48, 3)
    y = net(x)
    assert y.shape == (2, horizon, 3)
    assert torch.isfinite(y).all()
    if model == "last":
        torch.testing.assert_close(y, x[:, -1:].expand(-1, horizon, -1))
    else:  # the forecast reads the window: another window gives another forecast
        assert (net(x + torch.randn_like(x)) - y).abs().max() > 1e-6


def test_revin_round_trip_restores_the_series():
    from titanmem.timeseries.models import _RevIN

    revin = _RevIN(3).double()
    with torch.no_grad():
        revin.weight.uniform_(0.5, 2.0)
        revin.bias.uniform_(-1.0, 1.0)
    x = torch.randn(4, 48, 3, dtype=torch.float64) * 5 + 2
    z, stats = revin.normalize(x)
    torch.testing.assert_close(revin.denormalize(z, stats), x, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mixer", ["memory", "attention"])
@pytest.mark.parametrize("read", ["token", "chunk"])
def test_patch_encoder_is_causal(mixer, read):
    torch.manual_seed(0)
    net = PatchForecaster(ForecasterConfig(lookback=48, horizon=8, channels=2, mixer=mixer, read=read, **SMALL))
    net.eval()
    patches = torch.randn(3, net.config.n_patches, 8)
    base = net.encode(patches)
    for p in range(net.config.n_patches):
        changed = patches.clone()
        changed[:, p] += torch.randn(3, 8)
        out = net.encode(changed)
        torch.testing.assert_close(out[:, :p], base[:, :p], rtol=0, atol=1e-6)
        assert (out[:, p] - base[:, p]).abs().max() > 1e-4  # the changed patch itself does matter


def test_patches_cover_the_window_and_pad_by_repeating():
    net = PatchForecaster(ForecasterConfig(lookback=16, horizon=4, channels=1, **{**SMALL, "patch_len": 8,
                                                                                     "stride": 4}))
    x = torch.arange(16.0).view(1, 16, 1)
    patches = net.patches(x)
    assert patches.shape == (1, net.config.n_patches, 8) == (1, 4, 8)
    assert patches[0, 0].tolist() == list(range(8))
    assert patches[0, -1].tolist() == [12.0, 13.0, 14.0, 15.0, 15.0, 15.0, 15.0, 15.0]


def test_batch_rows_are_independent():
    torch.manual_seed(0)
    net = PatchForecaster(ForecasterConfig(lookback=48, horizon=8, channels=2, **SMALL)).eval()
    x = torch.randn(4, 48, 2)
    torch.testing.assert_close(net(x)[1:2], net(x[1:2]), rtol=1e-5, atol=1e-6)


def test_dlinear_trend_is_a_centred_moving_average():
    net = DLinear(lookback=10, horizon=2, kernel=3)
    with torch.no_grad():
        net.seasonal.weight.zero_()
        net.seasonal.bias.zero_()
        net.trend.bias.zero_()
        net.trend.weight.zero_()
        net.trend.weight[0, 0] = 1.0  # first output = trend at step 0 = mean(x0, x0, x1)
    x = torch.arange(10.0).view(1, 10, 1)
    assert net(x)[0, 0, 0].item() == pytest.approx((0 + 0 + 1) / 3)


def test_bad_config_and_input_name_the_argument():
    with pytest.raises(ValueError, match="mixer"):
        ForecasterConfig(mixer="mamba")
    with pytest.raises(ValueError, match="patch_len"):
        ForecasterConfig(lookback=8, patch_len=16)
    with pytest.raises(ValueError, match="lookback"):
        build_forecaster("memory", ForecasterConfig(lookback=48, channels=3, **SMALL))(torch.randn(1, 40, 3))
    with pytest.raises(ValueError, match="model must be one of"):
        build_forecaster("arima", ForecasterConfig())
    with pytest.raises(ValueError, match="model must be one of"):
        ForecastJob(data="x.csv", model="arima")
    with pytest.raises(ValueError, match="max_train_windows"):
        ForecastJob(data="x.csv", max_train_windows=0)
    with pytest.raises(TypeError, match="model_config"):
        ForecastJob(data="x.csv", model_config=[("d_model", 8)])
    with pytest.raises(ValueError, match="x must be 3-D"):
        build_forecaster("last", ForecasterConfig(horizon=4))(torch.randn(96, 7))


@pytest.fixture(scope="module")
def slice_csv(tmp_path_factory):
    # A temporary 2,000-row slice (train 1,200 / val 400 / test 400 rows) for quick runs.
    path = tmp_path_factory.mktemp("ett") / "ETTh1_2000.csv"
    path.write_text("".join(ETTH1.read_text().splitlines(keepends=True)[:2001]))
    return path


def test_dlinear_beats_repeating_the_last_value_on_a_slice(slice_csv):
    common = dict(data=str(slice_csv), horizon=24, lookback=96, split_sizes=(1200, 400, 400), epochs=5)
    dlinear, _ = run_forecast(ForecastJob(model="dlinear", **common), progress=False)
    last, _ = run_forecast(ForecastJob(model="last", **common), progress=False)
    assert dlinear.test_windows == last.test_windows == 400 - 24 + 1
    assert dlinear.mse < 0.9 * last.mse, (dlinear.mse, last.mse)
    assert dlinear.best_epoch >= 1 and len(dlinear.history) == dlinear.epochs_run


def test_runs_are_reproducible_by_seed(slice_csv):
    job = ForecastJob(data=str(slice_csv), model="memory", horizon=8, lookback=48, split_sizes=(1200, 400, 400),
                      epochs=1, max_train_windows=64, model_config=SMALL)
    a, _ = run_forecast(job, progress=False)
    b, _ = run_forecast(job, progress=False)
    assert a.mse == b.mse and a.history == b.history


def test_cli_writes_results_table_and_plot(tmp_path, capsys):
    out = tmp_path / "out"
    # DLinear and the naive forecast keep it quick; memory runs go through the same code (test above).
    rc = main(["forecast", "--data", str(ETTH1), "--horizon", "24", "--model", "dlinear,last", "--epochs", "1",
               "--max-train-windows", "64", "--config", json.dumps(SMALL), "--out", str(out), "--quiet"])
    assert rc == 0
    run = json.loads((out / "ETTh1" / "dlinear_h24_s0.json").read_text())
    assert run["job"]["horizon"] == 24 and run["model_config"]["d_model"] == 16 and run["mse"] > 0
    assert (out / "ETTh1" / "test_window_h24.png").stat().st_size > 1000
    table = (out / "table.md").read_text()
    assert "DLinear (ours)" in table and "repeat last value" in table and "DLinear (paper)" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ETTh1"]["dlinear"]["24"]["seeds"] == 1
    # A second call finds the finished runs and retrains nothing; a new seed is trained.
    before = (out / "ETTh1" / "dlinear_h24_s0.json").stat().st_mtime_ns
    assert main(["forecast", "--data", str(ETTH1), "--horizon", "24", "--model", "dlinear", "--seeds", "0,1",
                 "--epochs", "1", "--max-train-windows", "64", "--out", str(out), "--quiet", "--no-plot"]) == 0
    assert (out / "ETTh1" / "dlinear_h24_s0.json").stat().st_mtime_ns == before
    assert json.loads((out / "summary.json").read_text())["ETTh1"]["dlinear"]["24"]["seeds"] == 2
    capsys.readouterr()


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["forecast", "--data", str(ETTH1), "--model", "arima"])
    assert main(["forecast", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert main(["forecast", "--data", str(ETTH1), "--config", '{"width": 8}', "--out", str(tmp_path)]) == 2
    assert "unknown field(s) ['width']" in capsys.readouterr().err
    assert main(["forecast", "--data", str(ETTH1), "--config", '{"d_model": 0}', "--out", str(tmp_path)]) == 2
    assert "d_model must be >= 1" in capsys.readouterr().err


def test_saved_run_reloads_with_the_same_forecasts(slice_csv, tmp_path):
    job = ForecastJob(data=str(slice_csv), lookback=48, split_sizes=(1200, 400, 400), epochs=1,
                      max_train_windows=64, model_config=SMALL)
    (record,) = run_grid(job, [8], ["memory"], [3], tmp_path, progress=False)
    model = load_run_model(tmp_path / "ETTh1_2000" / "memory_h8_s3.json")
    x = torch.randn(2, 48, 7)
    _, trained = run_forecast(replace(job, horizon=8, model="memory", seed=3), progress=False)
    torch.testing.assert_close(model.eval()(x), trained.eval()(x))
    assert record["mse"] == pytest.approx(evaluate_slice(model, slice_csv), rel=1e-6)


def evaluate_slice(model, path):
    ett = load_ett(path)
    x, y = windows(make_splits(ett.values, 48, (1200, 400, 400)).test, 48, 8)
    return evaluate(model, x, y)[0]
