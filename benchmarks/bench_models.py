"""Training throughput and decoding latency of every Titans variant against Transformer++ (CPU).

Each measurement runs in a fresh subprocess, so its peak RSS is its own.

    PYTHONPATH=. python benchmarks/bench_models.py            # the full sweep
    PYTHONPATH=. python benchmarks/bench_models.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_op import machine_info  # noqa: E402

from titanmem.models import TitansConfig, TitansForCausalLM  # noqa: E402
from titanmem.models.hf_compat import output_cache  # noqa: E402

MiB = 2**20


def _model(cfg: dict[str, Any]) -> TitansForCausalLM:
    torch.manual_seed(0)
    config = TitansConfig.from_preset(cfg["preset"], variant=cfg["variant"])
    return TitansForCausalLM(config).eval()


def train_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Forward + backward of the LM loss on ``[1, T]`` random bytes: tokens/s and peak RSS."""
    torch.set_num_threads(cfg["threads"])
    model = _model(cfg).train()
    ids = torch.randint(0, model.config.vocab_size, (1, cfg["T"]))
    times: list[float] = []
    start = time.perf_counter()
    for i in range(cfg["iters"] + 1):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        if i:  # the first iteration is the warm-up
            times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > cfg["max_seconds"] and times:
            break
    median = statistics.median(times)
    return {"median_s": median, "tokens_per_s": cfg["T"] / median,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MiB}


@torch.no_grad()
def decode_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Prefill ``context`` tokens with the cache (in pieces), then time single-token steps."""
    torch.set_num_threads(cfg["threads"])
    model = _model(cfg)
    vocab = model.config.vocab_size
    cache, done = None, 0
    while done < cfg["context"]:
        n = min(cfg["prefill_piece"], cfg["context"] - done)
        out = model(input_ids=torch.randint(0, vocab, (1, n)), cache=cache, use_cache=True)
        cache, done = output_cache(out), done + n
    token = torch.randint(0, vocab, (1, 1))
    times = []
    for i in range(cfg["steps"] + 2):
        t0 = time.perf_counter()
        out = model(input_ids=token, cache=cache, use_cache=True)
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t0)
        cache, token = output_cache(out), out.logits[:, -1:].argmax(-1)
    return {"ms_per_token": 1e3 * statistics.median(times),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MiB}


def _run(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(cfg)],
                          capture_output=True, text=True, timeout=cfg["timeout"])
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["unknown"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--preset", default="small")
    p.add_argument("--variants", nargs="+", default=["lmm", "mac", "mag", "mal", "swa", "transformer"])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--contexts", type=int, nargs="+", default=[1024, 16384, 65536])
    p.add_argument("--max-context-transformer", type=int, default=16384,
                   help="Transformer++ prefill is quadratic: longer contexts are skipped and reported so")
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-seconds", type=float, default=90.0)
    p.add_argument("--out-md", type=Path, default=ROOT / "benchmarks/results/bench_models.md")
    p.add_argument("--out-json", type=Path, default=ROOT / "benchmarks/results/bench_models.json")
    args = p.parse_args()
    if args.worker:
        kind, cfg = args.worker[0], json.loads(args.worker[1])
        print(json.dumps(train_worker(cfg) if kind == "train" else decode_worker(cfg)))
        return
    if args.quick:
        args.preset, args.lengths, args.contexts, args.iters, args.steps = "tiny", [256], [256, 1024], 1, 4
    base = {"preset": args.preset, "threads": args.threads, "iters": args.iters, "steps": args.steps,
            "max_seconds": args.max_seconds, "prefill_piece": 512, "timeout": 1800}
    train, decode = [], []
    for variant in args.variants:
        for T in args.lengths:
            row = {"variant": variant, "T": T, **_run("train", {**base, "variant": variant, "T": T})}
            train.append(row)
            print(f"train {variant} T={T}: {row}", file=sys.stderr, flush=True)
        for context in args.contexts:
            if variant == "transformer" and context > args.max_context_transformer:
                decode.append({"variant": variant, "context": context, "error": "skipped (quadratic prefill)"})
                continue
            row = {"variant": variant, "context": context,
                   **_run("decode", {**base, "variant": variant, "context": context})}
            decode.append(row)
            print(f"decode {variant} ctx={context}: {row}", file=sys.stderr, flush=True)
    info = machine_info(args.threads)
    lines = [f"# Model benchmark ({args.preset} preset, batch 1)", "",
             f"- machine: {info['cpu']}, {info['cores']} cores, {info['threads']} threads; torch {info['torch']}; "
             f"git {info['git']}; {info['date']}", "",
             "## Training (forward + backward of the LM loss)", "",
             "| variant | T | tokens/s | peak RSS MiB |", "|---|---|---|---|"]
    for r in train:
        lines.append(f"| {r['variant']} | {r['T']} | " + (f"error: {r['error']} | |" if "error" in r else
                     f"{r['tokens_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} |"))
    lines += ["", "## Decoding (median latency of one token after prefilling the context with the cache)", "",
              "| variant | context | ms / token | peak RSS MiB |", "|---|---|---|---|"]
    for r in decode:
        lines.append(f"| {r['variant']} | {r['context']} | " + (f"{r['error']} | |" if "error" in r else
                     f"{r['ms_per_token']:.1f} | {r['peak_rss_mib']:,.0f} |"))
    report = "\n".join(lines) + "\n"
    print(report)
    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    args.out_md.write_text(report)
    args.out_json.write_text(json.dumps({"machine": info, "preset": args.preset, "train": train,
                                         "decode": decode}, indent=2))


if __name__ == "__main__":
    main()
