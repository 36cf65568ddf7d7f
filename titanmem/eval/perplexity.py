"""Long-document perplexity: each document streamed through the model in pieces, the cache carried.

A document of any length is read piece by piece (``piece`` tokens per forward) with one
:class:`~titanmem.models.TitansCache`, so the memory and attention states flow through the whole
document exactly as in one parallel forward (the models' tested invariant) while only one piece's
logits ``[1, piece, V]`` exist at a time; per token only its negative log-likelihood is kept.

Each document is read after ``prefix`` (default ``"\\n\\n"``, the separator training put between
documents), so every token of the document is scored, the first one included. Bits per byte are
``sum NLL / ln 2 / UTF-8 bytes``; by position they use each token's bytes (one per token for the byte
tokenizer; a document's mean bytes per token for other tokenizers). Positions are bucketed in octaves:
``[0, 1), [1, 2), [2, 4), [4, 8), ...``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..cli_args import nonneg_int, positive_int, report_error
from ..data.corpora import Document, load_corpus, split_documents
from ..data.shards import SEPARATOR
from ..data.tokenizers import ByteTokenizer, Tokenizer
from ..devices import autocast_context

__all__ = [
    "PerplexityResult", "StreamScores", "add_ppl_arguments", "corpus_documents", "evaluate_perplexity",
    "plot_by_position", "ppl_task", "run_ppl", "stream_nll", "stream_scores",
]

SPLITS = ("train", "val", "all")


class StreamScores(NamedTuple):
    """Per scored token: ``nll [N]`` (nats, float64, CPU) and ``greedy [N]`` (argmax == the token)."""

    nll: torch.Tensor
    greedy: torch.Tensor


def _check_piece(piece: object) -> int:
    if isinstance(piece, bool) or not isinstance(piece, int) or piece < 1:
        raise ValueError(f"piece must be an int >= 1 (tokens per forward), got {piece!r}")
    return piece


@torch.no_grad()
def stream_scores(
    model: torch.nn.Module, ids: Sequence[int] | torch.Tensor, *, context: Sequence[int] | torch.Tensor = (),
    piece: int = 512, autocast_dtype: torch.dtype | None = None,
) -> StreamScores:
    """Score ``ids`` token by token after ``context``, feeding ``context + ids`` in pieces of ``piece``.

    Every token of ``ids`` is scored when ``context`` is non-empty; without context the first token has
    nothing to be predicted from and the result has ``len(ids) - 1`` entries. The cache is local to the
    call. Logits are upcast to at least float32 before the softmax (float64 models stay float64).
    """
    from ..models import TitansCache

    piece = _check_piece(piece)
    device = next(model.parameters()).device
    context = torch.as_tensor(context, dtype=torch.long).reshape(-1)
    full = torch.cat([context, torch.as_tensor(ids, dtype=torch.long).reshape(-1)]).to(device)
    first = max(len(context), 1)  # index in full of the first scored token
    nll, greedy = [], []
    cache = TitansCache()
    for start in range(0, max(len(full) - 1, 0), piece):
        stop = min(start + piece, len(full) - 1)  # inputs full[start:stop] predict full[start + 1 : stop + 1]
        with autocast_context(device, autocast_dtype):
            logits = model(full[None, start:stop], cache=cache, use_cache=True).logits[0]
        lo = max(start + 1, first)
        if lo > stop:
            continue
        scored = logits[lo - 1 - start : stop - start]
        scored = scored.to(torch.promote_types(scored.dtype, torch.float32))
        target = full[lo : stop + 1]
        nll.append(F.cross_entropy(scored, target, reduction="none"))
        greedy.append(scored.argmax(dim=-1) == target)
    if not nll:
        return StreamScores(torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.bool))
    return StreamScores(torch.cat(nll).cpu().double(), torch.cat(greedy).cpu())


def stream_nll(model: torch.nn.Module, ids: Sequence[int] | torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Per-token NLL ``[N]`` (nats, float64) of :func:`stream_scores`."""
    return stream_scores(model, ids, **kwargs).nll


@dataclass
class PerplexityResult:
    """Totals of one model over a set of documents; ``bin_*[b]`` sum over positions ``[2**(b-1), 2**b)``."""

    label: str
    piece: int
    documents: int = 0
    tokens: int = 0
    bytes: float = 0.0
    nll: float = 0.0
    seconds: float = 0.0
    bin_tokens: list[int] = field(default_factory=list)
    bin_nll: list[float] = field(default_factory=list)
    bin_bytes: list[float] = field(default_factory=list)
    per_document: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bpb(self) -> float:
        """Bits per UTF-8 byte of the scored text."""
        return self.nll / math.log(2) / self.bytes if self.bytes else float("nan")

    @property
    def nats_per_token(self) -> float:
        return self.nll / self.tokens if self.tokens else float("nan")

    def add(self, name: str, positions: np.ndarray, nll: np.ndarray, token_bytes: np.ndarray) -> None:
        """Accumulate one document: ``positions, nll, token_bytes`` are ``[N]`` per scored token."""
        bins = np.frexp(positions.astype(np.float64))[1]  # 0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...
        size = int(bins.max()) + 1 if bins.size else 0
        if size > len(self.bin_tokens):
            grow = size - len(self.bin_tokens)
            self.bin_tokens += [0] * grow
            self.bin_nll += [0.0] * grow
            self.bin_bytes += [0.0] * grow
        for store, weights in ((self.bin_tokens, None), (self.bin_nll, nll), (self.bin_bytes, token_bytes)):
            counts = np.bincount(bins, weights=weights, minlength=size)
            for b in np.nonzero(counts)[0]:
                store[b] += int(counts[b]) if weights is None else float(counts[b])
        doc_nll, doc_bytes = float(nll.sum()), float(token_bytes.sum())
        self.documents += 1
        self.tokens += int(nll.size)
        self.bytes += doc_bytes
        self.nll += doc_nll
        self.per_document.append({"name": name, "tokens": int(nll.size), "bytes": doc_bytes,
                                  "bpb": doc_nll / math.log(2) / doc_bytes if doc_bytes else float("nan")})

    def by_position(self) -> dict[str, list[float]]:
        """Per non-empty bucket: ``start``, ``end`` (exclusive), ``tokens``, ``bpb``, ``nats_per_token``."""
        out: dict[str, list[float]] = {"start": [], "end": [], "tokens": [], "bpb": [], "nats_per_token": []}
        for b, count in enumerate(self.bin_tokens):
            if count:
                out["start"].append(0 if b == 0 else 2 ** (b - 1))
                out["end"].append(2**b)
                out["tokens"].append(count)
                out["bpb"].append(self.bin_nll[b] / math.log(2) / self.bin_bytes[b])
                out["nats_per_token"].append(self.bin_nll[b] / count)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: totals, ``by_position`` and ``per_document``."""
        return {"label": self.label, "piece": self.piece, "documents": self.documents, "tokens": self.tokens,
                "bytes": self.bytes, "bpb": self.bpb, "nats_per_token": self.nats_per_token,
                "seconds": self.seconds, "tokens_per_s": self.tokens / self.seconds if self.seconds else None,
                "by_position": self.by_position(), "per_document": self.per_document}


def _token_bytes(tokenizer: Tokenizer, text: str, ids: list[int], truncated: bool) -> np.ndarray:
    if isinstance(tokenizer, ByteTokenizer):
        return np.ones(len(ids))
    total = len((tokenizer.decode(ids) if truncated else text).encode("utf-8"))
    return np.full(len(ids), total / max(len(ids), 1))


def evaluate_perplexity(
    model: torch.nn.Module, tokenizer: Tokenizer, documents: Sequence[Document], *, piece: int = 512,
    prefix: str = SEPARATOR, max_tokens: int | None = None, autocast_dtype: torch.dtype | None = None,
    label: str = "model", progress: bool = False, windows: int = 1,
) -> PerplexityResult:
    """Stream every document (its first ``max_tokens`` tokens if set) and total the scores.

    Args:
        model: a causal LM taking ``cache=TitansCache`` (updated in place).
        tokenizer: the model's tokenizer (``encode``/``decode``).
        documents: the texts; empty ones are skipped.
        piece: tokens per forward; the result does not depend on it (up to float rounding).
        prefix: text read before each document (never scored); ``""`` leaves the first token unscored.
        windows: with ``max_tokens``, score up to this many windows of ``max_tokens`` tokens per document,
            their starts spread evenly from the first token to the last full window, each read from an
            empty state after ``prefix`` (named ``"<document>@<start token>"``). The by-position curve
            then averages over windows: positions count from each window's start. A document of at most
            ``max_tokens`` tokens gives one window; overlapping starts are dropped.

    Raises:
        ValueError: ``piece``, ``max_tokens`` or ``windows`` out of range (``windows > 1`` needs
            ``max_tokens``), or nothing to score.
    """
    _check_piece(piece)
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens must be None or an int >= 1, got {max_tokens!r}")
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise ValueError(f"windows must be an int >= 1, got {windows!r}")
    if windows > 1 and max_tokens is None:
        raise ValueError(f"windows > 1 needs max_tokens (the window length in tokens), got windows={windows} "
                         "and max_tokens=None")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__} ({prefix!r})")
    context = tokenizer.encode(prefix) if prefix else []
    result = PerplexityResult(label=label, piece=piece)
    began = time.perf_counter()
    for i, doc in enumerate(documents):
        all_ids = tokenizer.encode(doc.text)
        truncated = max_tokens is not None and len(all_ids) > max_tokens
        starts = _window_starts(len(all_ids), max_tokens, windows) if truncated else [0]
        for start in starts:
            ids = all_ids[start:start + max_tokens] if truncated else all_ids
            if not ids:
                continue
            nll = stream_nll(model, ids, context=context, piece=piece, autocast_dtype=autocast_dtype).numpy()
            token_bytes = _token_bytes(tokenizer, doc.text, ids, truncated)
            positions = np.arange(len(ids) - len(nll), len(ids))
            result.add(doc.name if len(starts) == 1 else f"{doc.name}@{start}", positions, nll,
                       token_bytes[len(ids) - len(nll):])
        if progress and all_ids:
            print(f"  [{label}] {i + 1}/{len(documents)} {doc.name}: {len(starts)} x {len(ids)} tokens, "
                  f"bpb {result.per_document[-1]['bpb']:.4f}", flush=True)
    if result.tokens == 0:
        raise ValueError(f"documents: nothing to score ({len(documents)} documents, none with tokens)")
    result.seconds = time.perf_counter() - began
    return result


def _window_starts(n_tokens: int, length: int, count: int) -> list[int]:
    """Up to ``count`` non-overlapping starts of ``length``-token windows spread evenly over ``n_tokens``."""
    last = n_tokens - length
    starts = sorted({round(last * k / (count - 1)) for k in range(count)}) if count > 1 else [0]
    kept = [starts[0]]
    for start in starts[1:]:
        if start >= kept[-1] + length:
            kept.append(start)
    return kept


def corpus_documents(
    corpus: str = "sotu", split: str = "val", *, corpus_path: str | None = None, val_fraction: float = 0.05,
    split_seed: int = 0, max_docs: int | None = None,
) -> list[Document]:
    """Documents of ``split`` (``train``, ``val`` or ``all``) of ``corpus``, split as training splits them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if max_docs is not None and (isinstance(max_docs, bool) or not isinstance(max_docs, int) or max_docs < 1):
        raise ValueError(f"max_docs must be None or an int >= 1, got {max_docs!r}")
    docs = load_corpus(corpus, corpus_path)
    if split != "all":
        train, val = split_documents(docs, val_fraction, split_seed)
        docs = val if split == "val" else train
    return docs[:max_docs] if max_docs is not None else docs


def plot_by_position(results: Sequence[PerplexityResult | Mapping[str, Any]], path: str | Path,
                     metric: str = "bpb", title: str | None = None) -> Path:
    """One line per model of ``metric`` (``bpb`` or ``nats_per_token``) against token position (log x)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    if metric not in ("bpb", "nats_per_token"):
        raise ValueError(f"metric must be 'bpb' or 'nats_per_token', got {metric!r}")
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for res in results:
        data = res.to_dict() if isinstance(res, PerplexityResult) else res
        pos = data["by_position"]
        # Each bucket drawn at its geometric middle; bucket [0, 1) at 0.5 on the log axis.
        x = [math.sqrt(max(s, 0.25) * e) if s else 0.5 for s, e in zip(pos["start"], pos["end"])]
        ax.plot(x, pos[metric], marker="o", markersize=3, label=f"{data['label']} ({data[metric]:.3f})")
    ax.set_xscale("log")
    ax.set_xlabel("token position in document (octave buckets)")
    ax.set_ylabel("bits per byte" if metric == "bpb" else "nats per token")
    ax.set_title(title or "loss by position")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def ppl_task(model: torch.nn.Module, tokenizer: Tokenizer, *, corpus: str = "sotu", split: str = "val",
             corpus_path: str | None = None, val_fraction: float = 0.05, split_seed: int = 0,
             max_docs: int | None = None, max_tokens: int | None = None, piece: int = 512,
             prefix: str = SEPARATOR, label: str = "model", windows: int = 1) -> dict[str, Any]:
    """Task runner for :mod:`titanmem.eval.compare`: scalars plus the ``bpb_by_position`` curve."""
    docs = corpus_documents(corpus, split, corpus_path=corpus_path, val_fraction=val_fraction,
                            split_seed=split_seed, max_docs=max_docs)
    res = evaluate_perplexity(model, tokenizer, docs, piece=piece, prefix=prefix, max_tokens=max_tokens, label=label,
                              windows=windows)
    pos = res.by_position()
    return {"bpb": res.bpb, "nats_per_token": res.nats_per_token, "documents": res.documents, "tokens": res.tokens,
            "tokens_per_s": res.tokens / res.seconds if res.seconds else float("nan"),
            "bpb_by_position": {"x": [0.5 if s == 0 else math.sqrt(s * e) for s, e in zip(pos["start"], pos["end"])],
                                "y": pos["bpb"], "xlabel": "token position in document", "ylabel": "bits per byte",
                                "xscale": "log"}}


def add_ppl_arguments(parser: Any) -> None:
    """Options of ``titanmem eval ppl`` on an ``argparse`` parser."""
    parser.add_argument("--model", action="append", required=True, metavar="PATH",
                        help="model folder, training checkpoint or run folder; repeat to compare models (required)")
    parser.add_argument("--corpus", default="sotu", help="corpus name (default sotu)")
    parser.add_argument("--corpus-path", default=None,
                        help="where the corpus is read from (default: the installed package)")
    parser.add_argument("--split", default="val", choices=SPLITS, help="document split (default val)")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="validation fraction of the split (default: the first model's training job, else 0.05)")
    parser.add_argument("--split-seed", type=nonneg_int, default=None,
                        help="split seed (default: as --val-fraction, else 0)")
    parser.add_argument("--max-docs", type=positive_int, default=None,
                        help="score only the first N documents (default: all)")
    parser.add_argument("--max-tokens", type=positive_int, default=None,
                        help="score only each document's first N tokens (default: all)")
    parser.add_argument("--windows", type=positive_int, default=1,
                        help="with --max-tokens: score up to N windows of that length spread evenly over each "
                             "document, each from an empty state (default 1: the first)")
    parser.add_argument("--piece", type=positive_int, default=512, help="tokens per forward (default 512)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto: CUDA if available)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on CUDA (default: float32)")
    parser.add_argument("--out", default="runs/eval/ppl",
                        help="folder for ppl.json, ppl.md and the plot (default runs/eval/ppl)")


def _split_settings(args: Any) -> tuple[float, int]:
    from .loading import resolve_source

    if args.val_fraction is not None and args.split_seed is not None:
        return args.val_fraction, args.split_seed
    data: dict[str, Any] = {}
    for path in args.model:
        job_data = (resolve_source(path).job or {}).get("data") or {}
        if job_data.get("corpus") == args.corpus:
            data = job_data
            break
    fraction = args.val_fraction if args.val_fraction is not None else data.get("val_fraction", 0.05)
    seed = args.split_seed if args.split_seed is not None else data.get("split_seed", 0)
    return float(fraction), int(seed)


def run_ppl(args: Any) -> int:
    """``titanmem eval ppl``: score each ``--model`` on the same documents; write JSON, markdown and a plot."""
    import json

    from ..data.documents import CorpusNotFoundError
    from ..train.checkpoint import CheckpointError
    from .loading import load_model, model_label

    try:
        fraction, seed = _split_settings(args)
        docs = corpus_documents(args.corpus, args.split, corpus_path=args.corpus_path, val_fraction=fraction,
                                split_seed=seed, max_docs=args.max_docs)
        print(f"{args.corpus}/{args.split}: {len(docs)} documents (val_fraction {fraction}, seed {seed})")
        results, labels = [], set()
        for path in args.model:
            label = model_label(path)
            while label in labels:
                label += "'"
            labels.add(label)
            model, tokenizer = load_model(path, device=args.device)
            res = evaluate_perplexity(model, tokenizer, docs, piece=args.piece, max_tokens=args.max_tokens,
                                      windows=args.windows,
                                      autocast_dtype=torch.bfloat16 if args.bf16 else None, label=label)
            print(f"{label}: {res.bpb:.4f} bits/byte, {res.nats_per_token:.4f} nats/token over {res.tokens} tokens "
                  f"({res.tokens / res.seconds:.0f} tokens/s)")
            results.append(res)
            del model
    except (ValueError, TypeError, CorpusNotFoundError, CheckpointError) as err:
        return report_error("eval ppl", err)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"corpus": args.corpus, "split": args.split, "val_fraction": fraction, "split_seed": seed,
                "documents": [d.name for d in docs], "piece": args.piece, "max_tokens": args.max_tokens,
                "windows": args.windows,
                "models": dict(zip((r.label for r in results), map(str, args.model)))}
    (out / "ppl.json").write_text(json.dumps({"settings": settings, "results": [r.to_dict() for r in results]},
                                             indent=2) + "\n", encoding="utf-8")
    lines = ["| model | bits/byte | nats/token | tokens | documents |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.label} | {r.bpb:.4f} | {r.nats_per_token:.4f} | {r.tokens} | {r.documents} |" for r in results]
    (out / "ppl.md").write_text(f"# Perplexity on {args.corpus}/{args.split}\n\n" + "\n".join(lines) + "\n",
                                encoding="utf-8")
    plot_by_position(results, out / "ppl_by_position.png", title=f"{args.corpus}/{args.split}: loss by position")
    print(f"wrote {out / 'ppl.json'}, {out / 'ppl.md'}, {out / 'ppl_by_position.png'}")
    return 0
