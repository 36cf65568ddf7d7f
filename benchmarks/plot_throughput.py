"""Throughput vs sequence length: titanmem (both read modes), titans-pytorch and causal attention.

Reads the JSON of ``compare_peers.py`` (and, when present, the per-variant model training sweep of
``bench_models.py``) and writes a PNG annotated with machine, threads, torch and git revision.

    python benchmarks/plot_throughput.py                                   # benchmarks/results/peers.json
    python benchmarks/plot_throughput.py --peers benchmarks/results/peers_quick.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STYLE = {"titanmem": ("C0", "o"), "titanmem-compiled": ("C1", "D"), "titanmem-chunkread": ("C2", "s"),
         "titans-pytorch": ("C3", "^"), "attention": ("C7", "x")}
LABEL = {"titanmem": "titanmem NeuralMemory (read=token)",
         "titanmem-compiled": "titanmem NeuralMemory (read=token, compiled)",
         "titanmem-chunkread": "titanmem NeuralMemory (read=chunk)",
         "titans-pytorch": "titans-pytorch NeuralMemory", "attention": "Transformer++ attention (sdpa, causal)"}


def _style_axis(ax, title: str) -> None:
    """Log-log tokens/s against T, titled and gridded."""
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("tokens / s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def stamp(machine: dict, extra: str = "") -> str:
    return (f"{machine.get('cpu', '?')}, {machine.get('threads', '?')} thread(s); torch {machine.get('torch', '?')}; "
            f"git {machine.get('git', '?')}; {machine.get('date', '')[:10]}{extra}")


def save(fig, out: Path) -> None:
    """Write ``fig`` to ``out`` (creating its folder) and close it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    print(f"wrote {out}")


def plot_peers(data: dict, out: Path, models: dict | None) -> None:
    rows = [r for r in data["rows"] if "tokens_per_s" in r]
    sizes = sorted({r["size"] for r in data["rows"]})
    modes = [m for m in ("fwd", "fwd+bwd") if any(r["mode"] == m for r in data["rows"])]
    batches = sorted({r["B"] for r in data["rows"]})
    ncols = len(modes) + (1 if models else 0)
    fig, axes = plt.subplots(len(sizes), ncols, figsize=(5.2 * ncols, 4.2 * len(sizes)), squeeze=False)
    for i, size in enumerate(sizes):
        dims = data["sizes"][size]
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            for impl, (color, marker) in STYLE.items():
                for b_i, B in enumerate(batches):
                    pts = sorted((r["T"], r["tokens_per_s"]) for r in rows
                                 if r["impl"] == impl and r["size"] == size and r["mode"] == mode and r["B"] == B)
                    if pts:
                        ax.plot(*zip(*pts, strict=True), color=color, marker=marker,
                                linestyle="-" if b_i == 0 else "--", label=f"{LABEL[impl]}, B={B}")
            _style_axis(ax, f"({size}) dim {dims['dim']}, {dims['heads']}x{dims['head_dim']} heads: {mode}")
        if models and i == 0:
            ax = axes[0][-1]
            train = [r for r in models.get("train", []) if "tokens_per_s" in r]
            for k, variant in enumerate(sorted({r["variant"] for r in train})):
                pts = sorted((r["T"], r["tokens_per_s"]) for r in train if r["variant"] == variant)
                ax.plot(*zip(*pts, strict=True), marker="o", color=f"C{k}", label=variant)
            _style_axis(ax, f"models ({models.get('preset')} preset), training fwd+bwd, B=1")
            ax.legend(fontsize=7)
            ax.annotate(stamp(models["machine"]), (0.01, 0.01), xycoords="axes fraction", fontsize=6)
        elif models:
            axes[i][-1].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7)
    quick = " (quick run, contended machine)" if data.get("quick") else ""
    fig.suptitle("Neural memory layer throughput vs sequence length, CPU float32" + quick, fontsize=11)
    fig.text(0.5, 0.945, stamp(data["machine"], f"; titans-pytorch {data['machine'].get('titans_pytorch')}"),
             ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(labels) > 4), 1, 0.93))
    save(fig, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", type=Path, default=ROOT / "benchmarks/results/peers.json")
    p.add_argument("--models", type=Path, default=ROOT / "benchmarks/results/bench_models.json",
                   help="bench_models.py JSON for the per-variant panel ('none' to leave it out)")
    p.add_argument("--out", type=Path, default=None, help="PNG (default: beside --peers, _throughput.png)")
    args = p.parse_args()
    data = json.loads(args.peers.read_text())
    models = json.loads(args.models.read_text()) if str(args.models) != "none" and args.models.exists() else None
    out = args.out or args.peers.with_name(args.peers.stem + "_throughput.png")
    plot_peers(data, out, models)


if __name__ == "__main__":
    main()
