"""The table of fine-tuning runs over seeds (``titanmem dna report``): grouping, means, the change
pretraining makes, rounding, and the errors that keep a run from being counted twice or misread."""

from __future__ import annotations

import json

import pytest

from titanmem.cli import main
from titanmem.genomics.report import PAPER_TABLE4, markdown_table, paper_table, read_record, summarize


def _write(folder, name, *, task="coding-vs-intergenic", variant="lmm", pretrained=False, seed=0, steps=300,
           correct=450, n=544, both=None, parameters=1000, validation=None):
    """A results.json of the shape titanmem dna finetune writes, with the fields the report reads."""
    run = folder / name
    run.mkdir(parents=True)
    data = {"job": {"train": {"seed": seed, "steps": steps, "batch_size": 32, "lr": 0.002}},
            "task": {"name": task}, "variant": variant, "pretrained": pretrained, "parameters": parameters,
            "test": {"accuracy": correct / n, "n": n, "correct": correct}}
    if both is not None:
        data["test_both_strands"] = {"accuracy": both / n, "n": n, "correct": both}
    if validation is not None:  # (fraction, kept)
        data["job"]["task"] = {"val_fraction": validation[0], "val_seed": 0}
        data["validation"] = {"kept": validation[1]}
    (run / "results.json").write_text(json.dumps(data))
    return run


def test_means_per_seed_and_change_written_by_hand(tmp_path):
    # scratch 80%, 85%, 90% (seeds 0-2); pretrained 90% (seed 0), 86% (seed 1), none for seed 2:
    # the change is over seeds 0 and 1 only: +10 and +1 points, mean +5.5.
    runs = [_write(tmp_path, f"s{s}", seed=s, correct=c, n=100) for s, c in ((0, 80), (1, 85), (2, 90))]
    runs += [_write(tmp_path, f"p{s}", seed=s, correct=c, n=100, pretrained=True) for s, c in ((0, 90), (1, 86))]
    (row,) = summarize(read_record(r) for r in runs)
    assert row["scratch"] == pytest.approx({0: 0.80, 1: 0.85, 2: 0.90})
    assert row["pretrained"] == pytest.approx({0: 0.90, 1: 0.86})
    assert row["change"] == pytest.approx({0: 0.10, 1: 0.01})
    table = markdown_table([row])
    assert "| LMM | coding-vs-intergenic | 300 | 1,000 | 0, 1, 2 / 0, 1 |" in table
    assert "| 85.0% (80.0, 85.0, 90.0) | 88.0% (90.0, 86.0) | +5.5 (+10.0, +1.0) |" in table


def test_budgets_variants_and_tasks_get_their_own_rows_in_a_fixed_order(tmp_path):
    runs = [_write(tmp_path, "a", variant="swa"), _write(tmp_path, "b", variant="lmm", steps=600),
            _write(tmp_path, "c", variant="lmm"), _write(tmp_path, "d", variant="lmm", task="human-vs-worm"),
            _write(tmp_path, "e", variant="mac")]
    rows = summarize(read_record(r) for r in runs)
    assert [(r["variant"], r["task"], r["steps"]) for r in rows] == [
        ("lmm", "coding-vs-intergenic", 300), ("lmm", "coding-vs-intergenic", 600), ("lmm", "human-vs-worm", 300),
        ("mac", "coding-vs-intergenic", 300), ("swa", "coding-vs-intergenic", 300)]
    assert "| - | - |" in markdown_table(rows)  # no pretrained run: no mean and no change


def test_runs_that_chose_their_weights_on_a_validation_split_get_their_own_row(tmp_path):
    runs = [_write(tmp_path, "plain"), _write(tmp_path, "best", validation=(0.1, "best"), correct=460),
            _write(tmp_path, "last", validation=(0.1, "last"), correct=470)]
    rows = summarize(read_record(r) for r in runs)
    assert [(r["selection"], r["scratch"][0]) for r in rows] == [
        ("", pytest.approx(450 / 544)), ("val 10%, best", pytest.approx(460 / 544)),
        ("val 10%, last", pytest.approx(470 / 544))]
    table = markdown_table(rows)
    assert "| LMM | coding-vs-intergenic | 300 | 1,000 |" in table
    assert "| LMM | coding-vs-intergenic | 300 (val 10%, best) | 1,000 |" in table


def test_halves_round_away_from_zero_and_one_seed_names_it(tmp_path):
    # 1,845 / 2,000 = 92.25% and 1,857 / 2,000 = 92.85%: a reader rounds them to 92.3 and 92.9 (+0.6)
    runs = [_write(tmp_path, "s", correct=1845, n=2000), _write(tmp_path, "p", correct=1857, n=2000, pretrained=True)]
    table = markdown_table(summarize(read_record(r) for r in runs))
    assert "| 92.3% (seed 0) | 92.9% (seed 0) | +0.6 (seed 0) |" in table


def test_both_strands_reads_the_other_score_and_names_a_run_without_it(tmp_path):
    with_both = _write(tmp_path, "a", correct=50, both=60, n=100)
    (row,) = summarize([read_record(with_both)], both_strands=True)
    assert row["scratch"] == pytest.approx({0: 0.60})
    without = _write(tmp_path, "b", seed=1)
    with pytest.raises(ValueError, match=r"b/results.json has no both-strands score"):
        summarize([read_record(with_both), read_record(without)], both_strands=True)


def test_a_run_given_twice_is_an_error_naming_both(tmp_path):
    a, b = _write(tmp_path, "a"), _write(tmp_path, "b")
    with pytest.raises(ValueError, match=r"two runs of lmm on coding-vs-intergenic \(scratch, seed 0, 300 steps\)"
                                         r".*a/results.json and .*b/results.json"):
        summarize([read_record(a), read_record(b)])


def test_bad_runs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="run must be a titanmem dna finetune folder"):
        read_record(tmp_path / "missing")
    (tmp_path / "run.log").write_text("step 1/300\n")
    with pytest.raises(ValueError, match=r"run.log is not a titanmem dna finetune results file: not JSON"):
        read_record(tmp_path / "run.log")
    (tmp_path / "other.json").write_text(json.dumps({"accuracy": []}))
    with pytest.raises(ValueError, match=r"other.json is not a titanmem dna finetune results file: no field 'job'"):
        read_record(tmp_path / "other.json")


def test_paper_table_holds_table4_labelled_as_another_data_set():
    text = paper_table()
    assert "a different data set" in text
    assert "| Neural Memory Module | 75.2 | 89.6 | 89.3 | 96.6 | 79.9 |" in text
    assert "| Mamba | 73.0 | - | - | 96.6 | - |" in text
    assert len(PAPER_TABLE4) == 8


def test_report_command_prints_the_table_and_writes_json(tmp_path, capsys):
    runs = [_write(tmp_path, f"s{s}", seed=s, correct=c, n=100) for s, c in ((0, 70), (1, 72))]
    out = tmp_path / "rows.json"
    assert main(["dna", "report", *map(str, runs), "--paper", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| 71.0% (70.0, 72.0) | - | - |" in printed and "Table 4" in printed
    (row,) = json.loads(out.read_text())
    assert row["scratch"] == {"0": 0.7, "1": 0.72} and row["parameters"] == [1000]


def test_report_command_error_is_one_line(tmp_path, capsys):
    assert main(["dna", "report", str(tmp_path / "nothing")]) != 0
    err = capsys.readouterr().err
    assert "run must be a titanmem dna finetune folder" in err and "Traceback" not in err


def test_report_command_skips_unfinished_runs_only_when_asked(tmp_path, capsys):
    done = _write(tmp_path, "done", correct=60, n=100)
    running = tmp_path / "running"
    running.mkdir()
    assert main(["dna", "report", str(done), str(running)]) != 0
    assert "--skip-unfinished" in capsys.readouterr().err
    assert main(["dna", "report", str(done), str(running), "--skip-unfinished"]) == 0
    captured = capsys.readouterr()
    assert "| 60.0% (seed 0) |" in captured.out and f"skipped (no results.json yet): {running}" in captured.err
