"""Tables and sample grids of few-shot runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["format_comparison", "format_table", "save_sample_grid"]


def format_table(results: Sequence[dict], name: str = "") -> str:
    """A markdown table: one row per (C, memory size), the negative bound ± its standard error in nats and,
    where present, the address accuracy and KL(q(a) || p(a))."""
    addressed = any("address_accuracy" in r for r in results)
    head = "| model | C | memory size | episodes | samples | NLL bound (nats) |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if addressed:
        head += " address accuracy | KL(q(a) ‖ p(a)) (nats) |"
        rule += "---:|---:|"
    lines = [head, rule]
    for r in results:
        row = (f"| {name} | {r['classes']} | {r['memory_size']} | {r['episodes']} | {r['samples']} | "
               f"{r['nll']:.2f} ± {r['nll_stderr']:.2f} |")
        if addressed:
            row += (f" {r['address_accuracy']:.3f} | {r['address_kl']:.3f} |" if "address_accuracy" in r else " | |")
        lines.append(row)
    return "\n".join(lines)


def format_comparison(results: dict[str, Sequence[dict]]) -> str:
    """A markdown table comparing models: one row per (C, memory size), the negative bound (nats) of each
    model (``results``: model name -> its :func:`~titanmem.fewshot.train.evaluate` results), then the
    address accuracy and KL of the models that have them."""
    names = list(results)
    cells = sorted({(r["classes"], r["memory_size"]) for rows in results.values() for r in rows})
    by = {n: {(r["classes"], r["memory_size"]): r for r in rows} for n, rows in results.items()}
    addressed = [n for n in names if any("address_accuracy" in r for r in results[n])]
    head = "| C | memory size | " + " | ".join(f"{n} NLL" for n in names)
    head += "".join(f" | {n} acc. | {n} KL" for n in addressed) + " |"
    lines = [head, "|" + "---:|" * (2 + len(names) + 2 * len(addressed))]
    for cell in cells:
        row = [str(cell[0]), str(cell[1])]
        row += [f"{by[n][cell]['nll']:.1f} ± {by[n][cell]['nll_stderr']:.1f}" if cell in by[n] else "" for n in names]
        for n in addressed:
            r = by[n].get(cell, {})
            row += [f"{r['address_accuracy']:.2f}" if "address_accuracy" in r else "",
                    f"{r['address_kl']:.2f}" if "address_kl" in r else ""]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def save_sample_grid(memory: torch.Tensor, samples: torch.Tensor, path: str | os.PathLike, title: str = "") -> Path:
    """Write a PNG: one row per episode, its memory entries on the left, generated samples on the right.

    Args:
        memory: ``[E, M, S, S]`` images in [0, 1] (ink 1), drawn dark on white.
        samples: ``[E, N, S, S]`` pixel probabilities of the generated images.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes, m = memory.shape[:2]
    n = samples.shape[1]
    columns = m + 1 + n
    fig, axes = plt.subplots(episodes, columns, figsize=(0.6 * columns, 0.6 * episodes + (0.4 if title else 0)),
                             squeeze=False)
    for row in range(episodes):
        for col in range(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < m:
                image = memory[row, col]
            elif col == m:
                continue  # a blank column between the memory and the samples
            else:
                image = samples[row, col - m - 1]
            ax.imshow(1.0 - image.detach().cpu().numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    if episodes:
        axes[0, 0].set_title("memory", fontsize=7, loc="left")
        axes[0, m + 1].set_title("samples", fontsize=7, loc="left")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
