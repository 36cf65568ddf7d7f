"""Streaming benchmark: N tokens through a 4-layer tiny model in pieces, state carried, no grad.

Each variant runs in a fresh process (``titanmem.bench.stream``, the code behind
``titanmem bench stream``), so its resident memory is its own. Reports tokens/s and the resident
memory after every piece; the memory must stay flat (growth <= 5% after the first piece).

    PYTHONPATH=. python benchmarks/bench_stream.py --threads 2                  # 2M tokens, lmm mac mag mal
    PYTHONPATH=. python benchmarks/bench_stream.py --quick --threads 1          # 100K tokens
    PYTHONPATH=. python benchmarks/bench_stream.py --variants mac --tokens 2000000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_op import machine_info  # noqa: E402

from titanmem.bench.stream import VARIANTS, add_stream_arguments, run_stream  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=["lmm", "mac", "mag", "mal"])
    p.add_argument("--quick", action="store_true", help="100K tokens per variant")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per variant")
    p.add_argument("--out", type=Path, default=None, help="output stem (default benchmarks/results/stream[_quick])")
    add_stream_arguments(p)
    args = p.parse_args()
    if args.worker:
        return run_stream(args)
    if args.quick:
        args.tokens = 100_000
    out = args.out or ROOT / "benchmarks/results" / ("stream_quick" if args.quick else "stream")
    threads = args.threads if args.threads is not None else 2
    info = machine_info(threads)
    forward = ["--piece", str(args.piece), "--batch", str(args.batch), "--preset", args.preset,
               "--seed", str(args.seed), "--max-growth", str(args.max_growth),
               "--sample-interval", str(args.sample_interval), "--device", args.device]
    for flag, value in (("--hidden-size", args.hidden_size), ("--layers", args.layers), ("--heads", args.heads)):
        forward += [flag, str(value)] if value is not None else []
    forward += [flag for flag, on in (("--no-trim", args.no_trim), ("--all-logits", args.all_logits),
                                      ("--quiet", args.quiet), ("--bf16", args.bf16)) if on]
    results = []
    for variant in args.variants:
        with tempfile.TemporaryDirectory() as tmp:
            record = Path(tmp) / "result.json"
            cmd = [sys.executable, __file__, "--worker", "--variant", variant, "--tokens", str(args.tokens),
                   "--threads", str(threads), "--json", str(record), *forward]
            print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
            try:
                proc = subprocess.run(cmd, timeout=args.timeout, stdout=sys.stderr)
                row = json.loads(record.read_text()) if record.exists() else {
                    "variant": variant, "error": f"exit code {proc.returncode}"}
            except subprocess.TimeoutExpired:
                row = {"variant": variant, "error": f"skipped: exceeded {args.timeout:.0f} s"}
        results.append(row)
    lines = [f"# Streaming benchmark ({args.preset} preset, batch {args.batch}, pieces of {args.piece} tokens, no grad"
             f", {args.device}{', bf16 autocast' if args.bf16 else ''}{', quick' if args.quick else ''})", "",
             f"- machine: {info['cpu']}, {info['cores']} cores, {threads} thread(s); torch {info['torch']}; "
             f"git {info['git']}; {info['date']}",
             "- resident = RSS after each piece once glibc's free pages are returned (malloc_trim); growth = "
             "largest resident after the first piece vs the first; raw = RSS as the piece left it; transient = "
             "peak RSS sampled during pieces (0.25 s).", "",
             "| variant | parameters | tokens | seconds | tokens/s | resident after 1st piece MiB | max after MiB | "
             "growth | flat (<= 5%) | slope KiB / 1K tokens | raw max MiB | transient peak 1st / 2nd half MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['error']} |" + " |" * 10)
            continue
        lines.append(f"| {r['variant']} | {r['parameters']:,} | {r['tokens']:,} | {r['seconds']:.1f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['rss_after_first_mib']:,.1f} | "
                     f"{r['rss_max_after_first_mib']:,.1f} | {100 * r['growth']:+.2f}% | "
                     f"{'yes' if r['flat'] else 'NO'} | {r['slope_kib_per_1k_tokens']:+.2f} | "
                     f"{r['raw_max_after_first_mib']:,.1f} | "
                     f"{r['peak_first_half_mib']:,.1f} / {r['peak_second_half_mib']:,.1f} |")
        if r.get("device_growth") is not None:
            lines.append(f"| {r['variant']} on {r['device']}: allocated {r['device_samples_mib'][0]:,.1f} MiB after the "
                         f"1st piece, max {max(r['device_samples_mib']):,.1f} ({100 * r['device_growth']:+.2f}%), "
                         f"peak {r['device_peak_mib']:,.1f} |" + " |" * 10)
    report = "\n".join(lines) + "\n"
    print(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(report)
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "command": " ".join(sys.argv),
                                                    "results": results}, indent=2))
    return 0 if all(r.get("flat") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
