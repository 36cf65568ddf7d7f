"""Training throughput of the shipped configs (``configs/tiny`` and ``configs/small``) per variant.

Runs ``titanmem.train.train`` on the real job (Shakespeare bytes, the config's batch and sequence
length) for a few steps, each config in a fresh subprocess, and reports the median tokens/s of the
steps after the first (the training time only: validation and checkpoints are switched off).

    PYTHONPATH=. python benchmarks/bench_train.py              # tiny and small, every variant
    PYTHONPATH=. python benchmarks/bench_train.py --quick      # tiny only, 3 steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_op import machine_info  # noqa: E402

from titanmem.blocks import VARIANTS  # noqa: E402


def worker(size: str, variant: str, steps: int, threads: int, data_dir: str) -> dict[str, Any]:
    """Train ``configs/<size>/<variant>.toml`` for ``steps`` steps; per-step tokens/s from its metrics."""
    from titanmem.train import load_config, train
    from titanmem.train.metrics import read_metrics

    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(ROOT / "configs" / size / f"{variant}.toml", [
            f"--out_dir={out}/run", f"--data.data_dir={data_dir}", f"--schedule.steps={steps}",
            "--schedule.warmup_steps=1", "--log.every=1", "--log.progress=false", "--log.plot=false",
            "--eval.every=0", "--eval.tokens=1024", "--checkpoint.every=0", "--run.device=cpu",
            f"--run.threads={threads}"])
        result = train(cfg)
        rates = [r["tokens_per_s"] for r in read_metrics(Path(out) / "run" / "metrics.csv")][1:]
    return {"size": size, "variant": variant, "parameters": result.parameters, "steps": steps,
            "batch": cfg.data.batch_size, "seq_len": cfg.data.seq_len,
            "tokens_per_s": statistics.median(rates), "min_tokens_per_s": min(rates),
            "max_tokens_per_s": max(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="steps per config (default 6 tiny, 4 small)")
    parser.add_argument("--worker", nargs=3, metavar=("SIZE", "VARIANT", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_train"))
    args = parser.parse_args()
    if args.worker:
        size, variant, steps = args.worker
        print(json.dumps(worker(size, variant, int(steps), args.threads, args.data_dir)))
        return
    sizes = {"tiny": args.steps or (3 if args.quick else 6)}
    if not args.quick:
        sizes["small"] = args.steps or 4
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        for size, steps in sizes.items():
            for variant in VARIANTS:
                done = subprocess.run([sys.executable, __file__, "--worker", size, variant, str(steps),
                                       "--threads", str(args.threads), "--data-dir", data_dir],
                                      capture_output=True, text=True)
                if done.returncode:
                    rows.append({"size": size, "variant": variant, "error": done.stderr.strip().splitlines()[-1]})
                else:
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    info = machine_info(args.threads)
    lines = [f"# Training throughput of the shipped configs (CPU, {args.threads} threads)", "",
             f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}, Python {info['python']}; "
             f"git {info['git']}; {info['date']}", "",
             "| config | parameters | batch x seq | tokens/s (median) | min-max |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']}/{r['variant']} | | | error: {r['error']} | |")
        else:
            lines.append(f"| {r['size']}/{r['variant']} | {r['parameters']:,} | {r['batch']} x {r['seq_len']} | "
                         f"{r['tokens_per_s']:,.0f} | {r['min_tokens_per_s']:,.0f}-{r['max_tokens_per_s']:,.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
