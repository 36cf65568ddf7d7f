"""The ETT loader and the forecasting protocol: split sizes, train-only standardisation, no leakage."""

from pathlib import Path

import numpy as np
import pytest

from titanmem.timeseries.data import ETT_COLUMNS, load_ett, make_splits, window_count, windows

ETT = Path(__file__).resolve().parents[2] / "data" / "ett"
ETTH1 = ETT / "ETTh1.csv"


@pytest.fixture(scope="module")
def etth1():
    return load_ett(ETTH1)


def test_load_reads_every_row_and_column(etth1):
    assert etth1.values.shape == (17420, 7)
    assert etth1.columns == ETT_COLUMNS
    assert etth1.dates[0] == "2016-07-01 00:00:00"
    assert etth1.values[0, -1] == pytest.approx(30.5310001373291)


def test_split_sizes_and_borders_follow_the_protocol(etth1):
    splits = make_splits(etth1.values, lookback=96)
    assert splits.train.shape == (8640, 7)
    assert splits.val.shape == (2880 + 96, 7)
    assert splits.test.shape == (2880 + 96, 7)
    assert splits.borders == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    # The first target of val / test is the split's first row (dates checked with awk on the CSV).
    assert etth1.dates[splits.borders["val"][0] + 96] == "2017-06-26 00:00:00"
    assert etth1.dates[splits.borders["test"][0] + 96] == "2017-10-24 00:00:00"
    assert etth1.dates[splits.borders["test"][1] - 1] == "2018-02-20 23:00:00"
    # Windows: rows - lookback - horizon + 1 each.
    assert window_count(8640, 96, 96) == 8449
    assert windows(splits.test, 96, 720)[0].shape == (2976 - 96 - 720 + 1, 96, 7)


def test_standardisation_uses_training_statistics_computed_by_hand(etth1):
    # Mean and population std of the first 8,640 rows, computed with awk straight from the CSV.
    splits = make_splits(etth1.values, lookback=96)
    assert splits.scaler.mean[0] == pytest.approx(7.9377422457, abs=1e-8)
    assert splits.scaler.std[0] == pytest.approx(5.8127494091, abs=1e-8)
    assert splits.scaler.mean[6] == pytest.approx(17.1282616982, abs=1e-8)
    assert splits.scaler.std[6] == pytest.approx(9.1764910249, abs=1e-8)
    np.testing.assert_allclose(splits.train.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(splits.train.std(axis=0), 1.0, atol=1e-10)
    np.testing.assert_allclose(splits.test[-1, -1], (2.321000099182129 - 17.1282616982) / 9.1764910249, atol=1e-8)


def test_scaler_sees_only_training_rows(etth1):
    values = etth1.values.copy()
    values[8640:] = 1e6  # anything after the training rows must not move the statistics
    a, b = make_splits(etth1.values, 96).scaler, make_splits(values, 96).scaler
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)


def test_test_targets_never_overlap_training_rows(etth1):
    splits = make_splits(etth1.values, lookback=96)
    for horizon in (96, 720):
        count = window_count(len(splits.test), 96, horizon)
        first_target_row = splits.borders["test"][0] + 96
        last_target_row = splits.borders["test"][0] + count - 1 + 96 + horizon - 1
        assert first_target_row >= splits.borders["val"][1] >= splits.borders["train"][1]
        assert last_target_row == splits.borders["test"][1] - 1
        val_first_target = splits.borders["val"][0] + 96
        assert val_first_target == splits.borders["train"][1]


def test_windows_are_consecutive_rows():
    rows = np.arange(30.0).reshape(10, 3)
    x, y = windows(rows, lookback=4, horizon=2)
    assert x.shape == (5, 4, 3) and y.shape == (5, 2, 3)
    np.testing.assert_array_equal(x[2], rows[2:6])
    np.testing.assert_array_equal(y[2], rows[6:8])


def test_missing_column_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("date,HUFL,HULL\n2016-07-01 00:00:00,1,2\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['MUFL'"):
        load_ett(path)


def test_non_numeric_field_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("date," + ",".join(ETT_COLUMNS) + "\n2016,1,2,3,4,5,6,x\n")
    with pytest.raises(ValueError, match="line 2"):
        load_ett(path)


def test_too_few_rows_is_a_clear_error(etth1):
    with pytest.raises(ValueError, match="at least 14400 rows"):
        make_splits(etth1.values[:2000], lookback=96)
    with pytest.raises(FileNotFoundError, match="ETDataset"):
        load_ett(ETT / "missing.csv")
