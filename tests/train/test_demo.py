"""The main job: `titanmem demo` trains both models on Shakespeare and writes its report."""

from __future__ import annotations

import re

from titanmem.cli import main
from titanmem.demo import DEMO_MODELS, demo_config
from titanmem.train import build_model_config
from titanmem.models import TitansForCausalLM


def test_demo_models_have_the_same_size_within_one_percent():
    sizes = [sum(p.numel() for p in TitansForCausalLM(build_model_config(demo_config(m, "x"), 256)).parameters())
             for m in DEMO_MODELS]
    assert abs(sizes[0] - sizes[1]) / max(sizes) < 0.01, sizes


def test_demo_trains_both_models_and_reports(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "2"]) == 0
    report = (tmp_path / "report.md").read_text()
    rows = re.findall(r"^\| (mac|transformer) \| ([\d,]+) \| 2 \| ([\d,]+) \| \d+ \| ([\d.]+) \| ([\d.]+) \|$", report, re.M)
    assert [r[0] for r in rows] == ["mac", "transformer"]
    for _, _, tokens, bpb, _ in rows:
        assert int(tokens.replace(",", "")) == 2 * 16 * 256 and 0 < float(bpb) < 9
    assert (tmp_path / "loss_curves.png").stat().st_size > 10_000
    assert "val bits/byte" in capsys.readouterr().out
