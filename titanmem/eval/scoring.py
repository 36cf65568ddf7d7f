"""Scoring synthetic tasks by exact match: greedy decoding, accuracy tables, JSON and plots.

An *answerer* is any callable ``(contexts: Sequence[str], max_new_tokens: int) -> Sequence[str]`` that
returns each context's continuation; :class:`ModelAnswerer` wraps a causal LM (prefill in pieces
with the cache, then greedy decoding token by token). Stubs (an oracle, random noise) use the same
interface.

Exact match (:func:`exact_match`): the continuation, leading whitespace removed, must start with the
answer, whitespace stripped: every character of the answer, in order, from the first generated one.
What follows the answer is not scored: a model trained with the loss on the answer alone never
learns where to stop, so ``" 71432. Remember"`` and ``" 714329"`` both give ``" 71432"``, while
``" 7143"`` or ``" 71433"`` do not. The model decodes as many tokens as the answer has, plus
``extra_tokens`` (default 2) of slack for tokenizers that split the answer differently.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.tokenizers import Tokenizer, get_tokenizer
from ..models import TitansCache
from .tasks.base import Example, Task

__all__ = [
    "Answerer", "ModelAnswerer", "accuracy_table", "evaluate_task", "exact_match", "greedy_decode",
    "plot_accuracy_vs_length", "plot_heatmap", "score_examples", "write_json",
]

Answerer = Callable[[Sequence[str], int], Sequence[str]]


def exact_match(prediction: str, answer: str) -> bool:
    """Whether continuation ``prediction`` starts with ``answer`` (both whitespace-stripped; module docstring)."""
    if not isinstance(prediction, str) or not isinstance(answer, str):
        raise TypeError(f"prediction and answer must be str, got {type(prediction).__name__} and "
                        f"{type(answer).__name__}")
    ans = answer.strip()
    return bool(ans) and prediction.lstrip().startswith(ans)


@torch.no_grad()
def greedy_decode(model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int,
                  prefill_chunk: int = 2048) -> torch.Tensor:
    """Greedy continuation ``[B, max_new_tokens]`` of ``input_ids [B, T]`` (T >= 1).

    The prompt is read in pieces of ``prefill_chunk`` tokens into the model's cache (memory stays
    bounded by the piece and the cache), then one token per step with the cache.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must be [B, T] with T >= 1, got shape {tuple(input_ids.shape)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if isinstance(prefill_chunk, bool) or not isinstance(prefill_chunk, int) or prefill_chunk < 1:
        raise ValueError(f"prefill_chunk must be an int >= 1, got {prefill_chunk!r}")
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    cache, logits = TitansCache(), None  # updated in place by every call
    for start in range(0, input_ids.shape[1], prefill_chunk):
        logits = model(input_ids[:, start : start + prefill_chunk], cache=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1]
    tokens = []
    for step in range(max_new_tokens):
        nxt = logits.argmax(dim=-1)
        tokens.append(nxt)
        if step + 1 < max_new_tokens:
            logits = model(nxt[:, None], cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    return torch.stack(tokens, dim=1)


class ModelAnswerer:
    """A causal LM as an answerer: contexts of equal token length are decoded as one batch."""

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer | str = "byte", prefill_chunk: int = 2048) -> None:
        self.model = model
        self.tokenizer = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.prefill_chunk = prefill_chunk

    def __call__(self, contexts: Sequence[str], max_new_tokens: int) -> list[str]:
        ids = [self.tokenizer.encode(c) for c in contexts]
        groups: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(ids):
            groups[len(row)].append(i)
        out: list[str] = [""] * len(contexts)
        was_training = self.model.training
        self.model.eval()
        try:
            for members in groups.values():
                batch = torch.tensor([ids[i] for i in members], dtype=torch.long)
                gen = greedy_decode(self.model, batch, max_new_tokens, self.prefill_chunk)
                for i, row in zip(members, gen.tolist()):
                    out[i] = self.tokenizer.decode(row)
        finally:
            self.model.train(was_training)
        return out


def score_examples(examples: Sequence[Example], answerer: Answerer, tokenizer: Tokenizer | str | None = None,
                   batch_size: int = 8, extra_tokens: int = 2) -> list[dict[str, Any]]:
    """One record per example: its meta (spans left out), ``answer``, ``prediction`` and ``correct``.

    Examples are sent to ``answerer`` in batches of at most ``batch_size`` contexts of equal token
    length (``tokenizer``: the answerer's, else bytes), each asking for the batch's longest answer in
    tokens plus ``extra_tokens``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not callable(answerer):
        raise TypeError(f"answerer must be callable (contexts, max_new_tokens) -> continuations, got "
                        f"{type(answerer).__name__}")
    tok = tokenizer if tokenizer is not None else getattr(answerer, "tokenizer", None) or "byte"
    tok = get_tokenizer(tok) if isinstance(tok, str) else tok
    groups: dict[int, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        if not isinstance(ex, Example):
            raise TypeError(f"examples[{i}] must be an Example, got {type(ex).__name__}")
        groups[len(tok.encode(ex.context))].append(i)
    predictions: list[str] = [""] * len(examples)
    for members in groups.values():
        for s in range(0, len(members), batch_size):
            chunk = members[s : s + batch_size]
            budget = max(len(tok.encode(examples[i].answer)) for i in chunk) + extra_tokens
            preds = list(answerer([examples[i].context for i in chunk], budget))
            if len(preds) != len(chunk):
                raise ValueError(f"answerer returned {len(preds)} continuations for {len(chunk)} contexts")
            for i, p in zip(chunk, preds):
                predictions[i] = p
    records = []
    for ex, pred in zip(examples, predictions):
        meta = {k: v for k, v in ex.meta.items() if k not in ("answer_spans", "fact_chars")}
        records.append({**meta, "answer": ex.answer, "prediction": pred, "correct": exact_match(pred, ex.answer)})
    return records


def accuracy_table(records: Iterable[dict[str, Any]], keys: Sequence[str] = ("task", "length", "depth")
                   ) -> list[dict[str, Any]]:
    """Accuracy per distinct value of ``keys``: rows ``{*keys, n, correct, accuracy}``, sorted."""
    cells: dict[tuple, list[bool]] = defaultdict(list)
    for r in records:
        cells[tuple(r.get(k) for k in keys)].append(bool(r["correct"]))
    rows = [{**dict(zip(keys, key)), "n": len(v), "correct": sum(v), "accuracy": sum(v) / len(v)}
            for key, v in cells.items()]
    return sorted(rows, key=lambda r: tuple((r[k] is None, r[k] if r[k] is not None else 0) for k in keys))


def evaluate_task(task: Task, answerer: Answerer, lengths: Sequence[int], depths: Sequence[float] | None = None,
                  samples: int = 10, seed: int = 0, split: str = "test", batch_size: int = 8,
                  extra_tokens: int = 2) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Score ``samples`` examples of ``task`` per length (and depth, for needle tasks).

    Returns ``(rows, records)``: :func:`accuracy_table` rows keyed by task, length and depth, and the
    per-example records. ``depths`` is ignored (None) by tasks without a needle depth.
    """
    cells = [(n, d) for n in lengths for d in (depths if task.uses_depth and depths else [None])]
    examples = [ex for n, d in cells for ex in task.examples(samples, n, split, seed, d)]
    records = score_examples(examples, answerer, task.tokenizer, batch_size, extra_tokens)
    return accuracy_table(records), records


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON (creating folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_heatmap(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Accuracy heatmap, depth (rows) by length (columns), of :func:`accuracy_table` rows of one task."""
    lengths = sorted({r["length"] for r in rows})
    depths = sorted({r["depth"] for r in rows if r.get("depth") is not None})
    if not lengths or not depths:
        raise ValueError("rows must hold accuracies with a length and a depth to draw a heatmap")
    grid = [[math.nan] * len(lengths) for _ in depths]
    for r in rows:
        if r.get("depth") is not None:
            grid[depths.index(r["depth"])][lengths.index(r["length"])] = r["accuracy"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(lengths), 1.2 + 0.6 * len(depths)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for i, row in enumerate(grid):
        for j, acc in enumerate(row):
            if not math.isnan(acc):
                ax.text(j, i, f"{acc:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:g}%" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="exact-match accuracy")
    return _save(fig, plt, path)


def plot_accuracy_vs_length(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "",
                            group: str = "task") -> Path:
    """Accuracy against length, one line per value of ``group``, averaged over any other key."""
    sums: dict[Any, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in rows:
        cell = sums[r.get(group)][r["length"]]
        cell[0] += r["correct"]
        cell[1] += r["n"]
    if not sums:
        raise ValueError("rows must not be empty")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_len in sorted(sums.items(), key=lambda kv: str(kv[0])):
        xs = sorted(by_len)
        ax.plot(xs, [by_len[x][0] / by_len[x][1] for x in xs], marker="o", label=str(name))
    ax.set_xscale("log", base=2)
    ticks = sorted({n for by_len in sums.values() for n in by_len})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("exact-match accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
