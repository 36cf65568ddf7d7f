"""The main job: `titanmem demo` trains both models on Shakespeare and writes its report."""

from __future__ import annotations

import csv
import math
import re

import torch
import torch.nn.functional as F

from titanmem.cli import main
from titanmem.data import TokenDataset, eval_batches
from titanmem.demo import DEMO_MODELS, DEMO_SEQ_LEN, DEMO_VAL_TOKENS, demo_config
from titanmem.eval.loading import load_model
from titanmem.models import TitansForCausalLM
from titanmem.train import build_model_config

ROW = re.compile(r"^\| (mac|transformer) \| ([\d,]+) \| 2 \| ([\d,]+) \| (\d+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \|$",
                 re.M)


def test_demo_models_have_the_same_size_within_one_percent():
    sizes = [sum(p.numel() for p in TitansForCausalLM(build_model_config(demo_config(m, "x"), 256)).parameters())
             for m in DEMO_MODELS]
    assert abs(sizes[0] - sizes[1]) / max(sizes) < 0.01, sizes


def _bits_per_byte(run, val, bytes_per_token):
    """Validation of the run's final checkpoint recomputed here: every window of the report, summed in bits."""
    model, _ = load_model(run)
    nll, count = 0.0, 0
    with torch.no_grad():
        for batch in eval_batches(val, DEMO_SEQ_LEN, 16, DEMO_VAL_TOKENS):
            logits = model(input_ids=batch[:, :-1], use_cache=False).logits
            nll += F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum").item()
            count += batch[:, 1:].numel()
    return nll / math.log(2) / (count * bytes_per_token), count


def test_demo_trains_both_models_and_reports_what_validation_scored(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert main(["demo", "--out", str(tmp_path), "--steps", "2", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    report = (tmp_path / "report.md").read_text()
    rows = ROW.findall(report)
    assert [r[0] for r in rows] == ["mac", "transformer"], report
    data = TokenDataset(tmp_path / "data")
    val = data.split("val")
    # eval_batches' windows share one token: n tokens give (n - 1) // seq_len windows of seq_len predictions
    scored = (min(len(val), DEMO_VAL_TOKENS) - 1) // DEMO_SEQ_LEN * DEMO_SEQ_LEN
    assert scored == 32_512  # the held-out plays hold more than eval.tokens = 32,768 bytes
    assert (f"{scored // DEMO_SEQ_LEN} windows of {DEMO_SEQ_LEN + 1} bytes (the first {scored + 1:,} bytes of the "
            f"held-out plays") in report and f"{scored:,} predicted bytes" in report
    assert "wall time (s)" in report and "with 1 torch thread;" in report
    for label, _, tokens, _, val_bytes, bpb, ppl in rows:
        assert int(tokens.replace(",", "")) == 2 * 16 * 256 and int(val_bytes.replace(",", "")) == scored
        with (tmp_path / label / "metrics.csv").open(newline="") as f:
            last = list(csv.DictReader(f))[-1]
        assert float(bpb) == round(float(last["val_bpb"]), 4) and float(ppl) == round(float(last["val_ppl"]), 3)
        recomputed, count = _bits_per_byte(tmp_path / label, val, data.bytes_per_token("val"))
        assert count == scored and abs(recomputed - float(bpb)) < 1e-3, (label, recomputed, bpb)
        assert 0 < float(bpb) < 9
    assert (tmp_path / "loss_curves.png").stat().st_size > 10_000
    assert "val bits/byte" in capsys.readouterr().out
