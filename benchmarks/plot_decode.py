"""Decode latency vs context length from ``bench_decode.py``'s JSON (median, p10-p90 band).

    python benchmarks/plot_decode.py                                        # benchmarks/results/decode.json
    python benchmarks/plot_decode.py --decode benchmarks/results/decode_quick.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from plot_throughput import save, stamp  # noqa: E402


def plot_decode(data: dict, out: Path) -> None:
    """Write the figure of one ``bench_decode.py`` result to ``out``."""
    m = data["machine"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for k, r in enumerate(x for x in data["results"] if "rows" in x):
        ctx = [row["context"] for row in r["rows"]]
        med = [row["median_ms"] for row in r["rows"]]
        lo = [row["p10_ms"] for row in r["rows"]]
        hi = [row["p90_ms"] for row in r["rows"]]
        peer = r["impl"] != "titanmem"
        label = r["variant"] if not peer else "titans-pytorch MAC (sample, use_cache)"
        color = "C3" if peer else f"C{[0, 1, 2, 4, 5, 6, 8, 9][k % 8]}"
        ax.plot(ctx, med, marker="^" if peer else "o", color=color, linestyle="--" if peer else "-", label=label)
        ax.fill_between(ctx, lo, hi, color=color, alpha=0.12)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context (tokens already in the cache)")
    ax.set_ylabel("ms per generated token (median; band p10-p90)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    quick = ", quick run on a contended machine" if data.get("quick") else ""
    ax.set_title(f"Per-token decode latency vs context ({data.get('preset')} preset, batch 1{quick})", fontsize=10)
    fig.text(0.5, 0.005, stamp(m, f"; titans-pytorch {m.get('titans_pytorch')}"), ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    save(fig, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decode", type=Path, default=ROOT / "benchmarks/results/decode.json")
    p.add_argument("--out", type=Path, default=None, help="PNG (default: beside --decode, .png)")
    args = p.parse_args()
    plot_decode(json.loads(args.decode.read_text()), args.out or args.decode.with_suffix(".png"))


if __name__ == "__main__":
    main()
