"""Task runs summarised over seeds (titanmem.eval.seeds)."""

from __future__ import annotations

import json

import pytest

from titanmem.eval.seeds import _distinct_ticks, length_accuracy, main, markdown_table, pairs_accuracy, seed_rows


def _run(tmp_path, name: str, cells: dict[tuple[int, float], tuple[int, int]]):
    folder = tmp_path / name
    folder.mkdir()
    rows = [{"task": "passkey", "length": n, "depth": d, "correct": c, "n": t, "accuracy": c / t}
            for (n, d), (c, t) in cells.items()]
    (folder / "results.json").write_text(json.dumps({"accuracy": rows}))
    return folder


def test_depths_are_pooled_and_seeds_averaged(tmp_path):
    a = _run(tmp_path, "a", {(10, 0.0): (10, 10), (10, 100.0): (0, 10), (20, 0.0): (5, 10), (20, 100.0): (5, 10)})
    b = _run(tmp_path, "b", {(10, 0.0): (10, 10), (10, 100.0): (10, 10), (20, 0.0): (0, 10), (20, 100.0): (1, 10)})
    assert length_accuracy(json.loads((a / "results.json").read_text())) == {10: 0.5, 20: 0.5}
    (row,) = seed_rows({"LMM": [a, b]})
    assert row["lengths"] == [10, 20]
    assert row["seeds"] == [[0.5, 0.5], [1.0, 0.05]]
    assert row["mean"] == pytest.approx([0.75, 0.275])
    table = markdown_table([row])
    assert "| 10 (1x) | 20 (2x) |" in table
    assert "| LMM | 2 | 75% (50, 100) | 28% (50, 5) |" in table


def test_a_run_joins_a_training_run_and_a_later_niah_scoring(tmp_path):
    train = _run(tmp_path, "a", {(10, 0.0): (1, 2)})
    long = tmp_path / "a" / "long"
    long.mkdir()
    rows = [{"task": "passkey", "length": 40, "depth": 0.0, "correct": 1, "n": 4, "accuracy": 0.25}]
    (long / "results.json").write_text(json.dumps({"tasks": {"passkey": {"accuracy": rows}}}))
    (row,) = seed_rows({"LMM": [f"{train}+{long}"]})
    assert row["lengths"] == [10, 40] and row["mean"] == [0.5, 0.25]
    assert "| 10 (1x) | 40 (4x) |" in markdown_table([row])
    (short,) = seed_rows({"SWA": [train]})
    assert "| SWA | 1 | 50% | - |" in markdown_table([row, short])
    with pytest.raises(ValueError, match="twice"):
        seed_rows({"LMM": [f"{train}+{train}"]})
    two = {"tasks": {"passkey": {"accuracy": rows}, "niah_word": {"accuracy": rows}}}
    with pytest.raises(ValueError, match="several tasks"):
        length_accuracy(two)


def test_runs_scored_at_different_lengths_or_missing_are_refused(tmp_path, capsys):
    a = _run(tmp_path, "a", {(10, 0.0): (1, 1)})
    b = _run(tmp_path, "b", {(20, 0.0): (1, 1)})
    with pytest.raises(ValueError, match="different lengths"):
        seed_rows({"x": [a, b]})
    with pytest.raises(FileNotFoundError, match="no results.json"):
        seed_rows({"x": [tmp_path / "missing"]})
    assert main(["--group", f"x={a},{tmp_path / 'missing'}"]) == 2
    assert "no results.json" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no results file .*missing.json"):
        seed_rows({"x": [tmp_path / "missing.json"]})


def test_a_run_may_be_a_results_file_as_kept_in_docs(tmp_path):
    folder = _run(tmp_path, "a", {(10, 0.0): (1, 2), (20, 0.0): (1, 4)})
    kept = tmp_path / "a_s0.json"
    kept.write_text((folder / "results.json").read_text())
    assert seed_rows({"LMM": [kept]}) == seed_rows({"LMM": [folder]})
    (row,) = seed_rows({"LMM": [str(kept)]})
    assert row["lengths"] == [10, 20] and row["mean"] == [0.5, 0.25]


def test_the_command_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    a = _run(tmp_path, "a", {(10, 0.0): (1, 2), (20, 0.0): (0, 2)})
    plot = tmp_path / "curves.png"
    assert main(["--group", f"SWA={a}", "--plot", str(plot)]) == 0
    assert "| SWA | 1 | 50% | 0% |" in capsys.readouterr().out
    assert plot.stat().st_size > 0


def _mqar(tmp_path, name: str, pairs: int, correct: int, n: int = 40):
    folder = tmp_path / name
    folder.mkdir()
    length = 10 * pairs
    (folder / "results.json").write_text(json.dumps({
        "job": {"train": {"length": length}}, "task": {"name": "mqar", "num_pairs": pairs},
        "accuracy": [{"task": "mqar", "length": length, "depth": None, "correct": 1, "n": 5, "accuracy": 0.2}],
        "query_accuracy": [{"task": "mqar", "length": length, "n": n, "correct": correct, "accuracy": correct / n}]}))
    return folder


def test_mqar_runs_tabulate_every_query_against_the_number_of_pairs(tmp_path, capsys):
    a16, a32 = _mqar(tmp_path, "a16", 16, 30), _mqar(tmp_path, "a32", 32, 10)
    b16, b32 = _mqar(tmp_path, "b16", 16, 20), _mqar(tmp_path, "b32", 32, 0)
    assert pairs_accuracy(json.loads((a32 / "results.json").read_text())) == {32: 0.25}
    (row,) = seed_rows({"depth 1": [f"{a16}+{a32}", f"{b16}+{b32}"]}, by="pairs")
    assert row["lengths"] == [16, 32] and row["mean"] == pytest.approx([0.625, 0.125])
    assert "| 16 pairs | 32 pairs |" in markdown_table([row], by="pairs")
    plot = tmp_path / "capacity.png"
    assert main(["--by", "pairs", "--group", f"d1={a16}+{a32}", "--plot", str(plot)]) == 0
    assert "| d1 | 1 | 75% | 25% |" in capsys.readouterr().out and plot.stat().st_size > 0
    # a pass-key run has no every-query score: named, not read as a greedy score
    passkey = _run(tmp_path, "p", {(10, 0.0): (1, 2)})
    with pytest.raises(ValueError, match="query_accuracy"):
        seed_rows({"x": [passkey]}, by="pairs")
    with pytest.raises(ValueError, match="by must be one of"):
        seed_rows({"x": [a16]}, by="depth")


def test_plot_ticks_leave_out_lengths_that_would_overlap():
    assert _distinct_ticks([512, 255, 256, 510, 1024, 255]) == [255, 510, 1024]
    assert _distinct_ticks([16, 32, 64]) == [16, 32, 64]
