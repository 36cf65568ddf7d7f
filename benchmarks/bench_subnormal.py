"""Training speed on the CPU with and without flushing subnormal floats to zero, side by side.

The training commands call ``titanmem.devices.prepare_cpu``, which turns on
``torch.set_flush_denormal``. This script runs one training job twice at the same time, each in its
own process with one thread: once as shipped, once with the flush left off (``prepare_cpu``
replaced by a version that only sets the threads). It prints the tokens/s logged every 10 steps by
each arm and their final training and validation losses, which must agree: the flush may change
only numbers below float32's smallest normal value (1.2e-38).

    PYTHONPATH=. python benchmarks/bench_subnormal.py                       # MAL on human DNA, 70 steps
    PYTHONPATH=. python benchmarks/bench_subnormal.py --config configs/tiny/lmm.toml --steps 60

The DNA config needs its corpus first (``titanmem data dna-human``; ``titanmem prepare --config
configs/dna/mal.toml``). The slowdown appears once the learning rate is up (after the warm-up).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_op import machine_info  # noqa: E402


def worker(config: str, steps: int, warmup: int, flush: bool, out: str) -> None:
    """Train ``config`` for ``steps`` steps in this process, with the subnormal flush on or off."""
    import torch

    from titanmem.train import load_config, train, trainer

    if not flush:
        def threads_only(threads: int) -> None:
            if threads:
                torch.set_num_threads(threads)
            torch.set_flush_denormal(False)

        trainer.prepare_cpu = threads_only
    cfg = load_config(ROOT / config, [
        f"--out_dir={out}", f"--schedule.steps={steps}", f"--schedule.warmup_steps={warmup}", "--log.every=10",
        "--log.progress=false", "--log.plot=false", "--eval.every=0", "--eval.tokens=65536",
        "--checkpoint.every=0", "--run.device=cpu", "--run.threads=1"])
    train(cfg)


def read_arm(out: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "tokens_per_s" in r]
    last = rows[-1]
    return {"tokens_per_s": {r["step"]: r["tokens_per_s"] for r in steps}, "elapsed_s": steps[-1]["elapsed_s"],
            "final_loss": steps[-1]["loss"], "val_loss": last.get("val_loss"), "val_bpb": last.get("val_bpb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/dna/mal.toml")
    parser.add_argument("--steps", type=int, default=70)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--worker", choices=("flush", "no-flush"), help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_subnormal"))
    args = parser.parse_args()
    if args.worker:
        worker(args.config, args.steps, args.warmup, args.worker == "flush", args.run_dir)
        return
    arms = ("no-flush", "flush")
    with tempfile.TemporaryDirectory() as tmp:
        procs = {arm: subprocess.Popen([sys.executable, __file__, "--worker", arm, "--config", args.config,
                                        "--steps", str(args.steps), "--warmup", str(args.warmup),
                                        "--run-dir", f"{tmp}/{arm}"], stderr=subprocess.PIPE, text=True)
                 for arm in arms}
        for arm, proc in procs.items():
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"{arm} arm failed: {err.strip().splitlines()[-1]}")
        results = {arm: read_arm(Path(tmp) / arm) for arm in arms}
    info = machine_info(1)
    steps = sorted(results["flush"]["tokens_per_s"])
    lines = [f"# Subnormal flush: {args.config}, {args.steps} steps (warm-up {args.warmup}), both arms at once, "
             "one thread each", "", f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}; git {info['git']}; "
             f"{info['date']}", "", "| step | tokens/s, flush off | tokens/s, flush on | on / off |",
             "|---:|---:|---:|---:|"]
    for s in steps:
        off, on = results["no-flush"]["tokens_per_s"][s], results["flush"]["tokens_per_s"][s]
        lines.append(f"| {s} | {off:,.0f} | {on:,.0f} | {on / off:.2f} |")
    for arm in arms:
        r = results[arm]
        lines.append(f"\n{arm}: {r['elapsed_s']:.1f} s of training, last logged loss {r['final_loss']!r}, "
                     f"validation {r['val_bpb']!r} bits per token")
    same = all(results["flush"][k] == results["no-flush"][k] for k in ("final_loss", "val_loss"))
    lines.append(f"\nlosses identical between the arms: {same}")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps({"machine": info, "config": args.config, "steps": args.steps,
                                                    "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
