"""The tables and the sample grid of few-shot runs."""

from __future__ import annotations

import torch

from titanmem.fewshot.report import format_comparison, format_table, save_sample_grid

ROWS = {
    "vae": [{"classes": 1, "memory_size": 1, "episodes": 2, "samples": 3, "nll": 100.04, "nll_stderr": 1.0}],
    "vma": [{"classes": 1, "memory_size": 1, "episodes": 2, "samples": 3, "nll": 90.0, "nll_stderr": 1.0,
             "address_accuracy": 1.0, "address_kl": 0.0},
            {"classes": 2, "memory_size": 2, "episodes": 2, "samples": 3, "nll": 95.0, "nll_stderr": 2.0,
             "address_accuracy": 0.5, "address_kl": 0.25}],
}


def test_tables():
    table = format_comparison(ROWS)
    lines = table.splitlines()
    assert lines[0] == "| C | memory size | vae NLL | vma NLL | vma acc. | vma KL |"
    assert lines[2] == "| 1 | 1 | 100.0 ± 1.0 | 90.0 ± 1.0 | 1.00 | 0.00 |"
    assert lines[3] == "| 2 | 2 |  | 95.0 ± 2.0 | 0.50 | 0.25 |"
    assert "| vma | 2 | 2 | 2 | 3 | 95.00 ± 2.00 | 0.500 | 0.250 |" in format_table(ROWS["vma"], "vma")


def test_sample_grid_is_a_png(tmp_path):
    path = save_sample_grid(torch.rand(2, 3, 28, 28), torch.rand(2, 4, 28, 28), tmp_path / "g.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob("*.tmp*"))
