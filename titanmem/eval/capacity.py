"""Associative-memory capacity of each memory rule, measured on the bare op (``titanmem eval capacity``).

No model and no outer training. One head's memory reads ``N`` random unit key->value pairs
(``passes`` times over, in one order), one inner step per token with constant gates (forgetting
``alpha = 0``, window gates 1); then the weights are frozen (``theta = eta = alpha = 0``) and every
key is read back, in another order. A pair is **recalled** when its read-out is nearer (cosine) to its
own value than to any other of the ``N`` (chance ``1 / N``).

The inner learning rate ``theta`` and the momentum gate ``eta`` (and, for the Huber objective, the
threshold ``delta``) are chosen per rule, memory and ``N`` from one grid on two draws of pairs (the
tuning seeds; the highest mean recall, ties broken by the read-outs' mean cosine to their own values),
then scored on other draws (the test seeds): every rule gets the same tuning budget,
and no reported number is the draw it was tuned on. Chunk size 1 by default, so each token takes its
gradient at the weights the previous token left (the papers' per-token rules, not the chunk-parallel
approximation of their training).

What it tests: ATLAS's claim that polynomial features raise a memory's capacity (a linear memory of
``d``-dimensional keys stores about ``d`` pairs exactly; degree 2 lifts the keys to
``d + d(d + 1) / 2`` dimensions), and whether the MIRAS objectives and retentions, the Omega window
and the Muon step store more or fewer pairs than the Titans rule, at the op and without training.
All hyperparameter grids and seeds of every row run as one batch per (rule, depth, N).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..cli_args import CommandError, nonneg_int, positive_int
from ..devices import prepare_cpu
from ..ops import NAMED_RULES, MemoryRule, MemoryState, neural_memory_family_chunk
from ..ops.neural_memory.features import feature_dim

__all__ = ["THETAS", "ETAS", "DELTAS", "CapacitySetting", "add_capacity_arguments", "capacity_table",
           "measure_capacity", "recall_rows", "run_capacity"]

# The grid every rule is tuned on (inner learning rate, momentum gate, Huber threshold).
THETAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
ETAS = (0.0, 0.5, 0.9)
DELTAS = (0.25, 1.0)


@dataclass(frozen=True)
class CapacitySetting:
    """One cell: ``pairs`` random unit pairs in ``dim`` dimensions written ``passes`` times into a
    memory of ``depth`` layers (hidden width ``hidden``; depth 1 is linear and starts at zero) under
    ``rule``; tuned on the draws ``seed ... seed + tune_seeds - 1``, scored on the ``test_seeds``
    draws after them."""

    rule: str
    pairs: int
    dim: int = 32
    depth: int = 1
    hidden: int = 64
    passes: int = 1
    chunk_size: int = 1
    seed: int = 0
    tune_seeds: int = 2
    test_seeds: int = 5

    def __post_init__(self) -> None:
        if self.rule not in NAMED_RULES:
            raise ValueError(f"rule must be one of {sorted(NAMED_RULES)}, got {self.rule!r}")
        for name, low in (("pairs", 2), ("dim", 1), ("depth", 1), ("hidden", 1), ("passes", 1), ("chunk_size", 1),
                          ("seed", 0), ("tune_seeds", 1), ("test_seeds", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")

    @property
    def memory_rule(self) -> MemoryRule:
        return NAMED_RULES[self.rule]


def _grid(rule: MemoryRule) -> list[dict[str, float]]:
    deltas = DELTAS if rule.objective == "huber" else (None,)
    return [dict(theta=t, eta=e, delta=d) for t, e, d in itertools.product(THETAS, ETAS, deltas)]


def _pairs(s: CapacitySetting, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    keys = F.normalize(torch.randn(s.pairs, s.dim, generator=g, dtype=torch.float64), dim=-1)
    values = F.normalize(torch.randn(s.pairs, s.dim, generator=g, dtype=torch.float64), dim=-1)
    return keys, values, torch.randperm(s.pairs, generator=g)


def _initial_weights(s: CapacitySetting) -> list[torch.Tensor]:
    """``[1, 1, d_in, d_out]`` per layer: zero for a linear memory, small random weights (drawn from
    the tuning seed, shared by every row) for a deeper one, so that gradients reach every layer."""
    d_in = feature_dim(s.dim, s.memory_rule.feature_map, s.memory_rule.feature_degree)
    if s.depth == 1:
        return [torch.zeros(1, 1, d_in, s.dim, dtype=torch.float64)]
    g = torch.Generator().manual_seed(10_000 + s.seed)
    dims = [d_in] + [s.hidden] * (s.depth - 1) + [s.dim]
    return [torch.randn(1, 1, a, b, generator=g, dtype=torch.float64) * (0.5 / a**0.5)
            for a, b in zip(dims[:-1], dims[1:])]


def _op_inputs(s: CapacitySetting, grid: Sequence[dict[str, float]], seeds: Sequence[int]):
    """The family op's arguments for every (seed, grid point) row: writes, then reads with every gate 0.

    Returns ``(args, kwargs, draws, n_write)``: ``neural_memory_family_chunk(*args, **kwargs)`` runs it.
    """
    rule = s.memory_rule
    draws = [_pairs(s, seed) for seed in seeds]
    n_write = s.pairs * s.passes
    k_rows, v_rows, gates = [], [], []
    for keys, values, order in draws:
        k = torch.cat([keys.repeat(s.passes, 1), keys[order]])
        v = torch.cat([values.repeat(s.passes, 1), torch.zeros_like(values)])
        for point in grid:
            k_rows.append(k)
            v_rows.append(v)
            gates.append(point)
    batch, length = len(k_rows), n_write + s.pairs
    k = torch.stack(k_rows)[:, :, None]  # [B, T, 1, D]
    v = torch.stack(v_rows)[:, :, None]
    writing = torch.cat([torch.ones(n_write), torch.zeros(s.pairs)]).to(torch.float64)  # 0 while reading

    def gate(name: str) -> torch.Tensor:
        return torch.tensor([p[name] for p in gates], dtype=torch.float64)[:, None, None] * writing[None, :, None]

    alpha = torch.zeros(batch, length, 1, dtype=torch.float64)
    weights = [w.expand(batch, -1, -1, -1).clone() for w in _initial_weights(s)]
    state = MemoryState(tuple(weights), tuple(torch.zeros_like(w) for w in weights))
    kwargs = dict(chunk_size=s.chunk_size, read="token", rule=rule,
                  gamma=torch.ones(batch, length, 1, dtype=torch.float64),
                  delta=gate("delta") if rule.objective == "huber" else None)
    return (k, k, v, gate("theta"), gate("eta"), alpha, state), kwargs, draws, n_write


def recall_rows(s: CapacitySetting, grid: Sequence[dict[str, float]],
                seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Recall (fraction of pairs) and mean cosine of each read-out to its own value, each
    ``[len(seeds), len(grid)]``: every seed's draw under every grid point.

    All rows run as one batch of the family op (``neural_memory_family_chunk``, float64, no grad).
    """
    args, kwargs, draws, n_write = _op_inputs(s, grid, seeds)
    with torch.no_grad():
        y, _ = neural_memory_family_chunk(*args, **kwargs)
    read_out = F.normalize(y[:, n_write:, 0].float(), dim=-1)  # [B, N, D]
    recall, cosine = torch.empty(len(seeds), len(grid)), torch.empty(len(seeds), len(grid))
    for i, (_, values, order) in enumerate(draws):
        rows = read_out[i * len(grid):(i + 1) * len(grid)]
        similarity = rows @ values.float().T  # [grid, N queries, N values]
        recall[i] = (similarity.argmax(dim=-1) == order).float().mean(dim=-1)
        cosine[i] = similarity.gather(-1, order.expand(len(grid), -1)[..., None])[..., 0].mean(dim=-1)
    return recall, cosine


def measure_capacity(s: CapacitySetting) -> dict[str, Any]:
    """Tune on ``s.tune_seeds`` draws from ``s.seed`` on, score the chosen point on ``s.test_seeds`` others.

    Returns ``{"setting", "best" (the grid point), "tuning_recall", "test_seeds", "test_recall" (per
    test seed), "recall" (their mean), "test_cosine", "cosine" (the mean cosine of each read-out to its
    own value: 1 when the pairs are stored exactly, where recall only asks for the nearest), "seconds"}``.
    """
    start = time.perf_counter()
    grid = _grid(s.memory_rule)
    tuning, tuning_cosine = (t.mean(dim=0) for t in recall_rows(s, grid, range(s.seed, s.seed + s.tune_seeds)))
    # the highest recall; among equal recalls the highest cosine (the pairs stored most exactly)
    best = max(range(len(grid)), key=lambda i: (float(tuning[i]), float(tuning_cosine[i])))
    tests = list(range(s.seed + s.tune_seeds, s.seed + s.tune_seeds + s.test_seeds))
    recall, cosine = recall_rows(s, [grid[best]], tests)
    return {"setting": vars(s).copy(), "best": grid[best], "tuning_recall": float(tuning[best]),
            "test_seeds": tests, "test_recall": recall[:, 0].tolist(), "recall": float(recall.mean()),
            "test_cosine": cosine[:, 0].tolist(), "cosine": float(cosine.mean()), "seconds": time.perf_counter() - start}


def capacity_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per rule and depth, one column per number of pairs; each cell the mean test
    recall with the chosen ``theta``/``eta`` (and ``delta``) under it."""
    pairs = sorted({r["setting"]["pairs"] for r in results})
    cells: dict[tuple[str, int], dict[int, str]] = {}
    for r in results:
        st, b = r["setting"], r["best"]
        chosen = f"θ {b['theta']:g}, η {b['eta']:g}" + ("" if b.get("delta") is None else f", δ {b['delta']:g}")
        cells.setdefault((st["rule"], st["depth"]), {})[st["pairs"]] = f"{100 * r['recall']:.0f}% ({chosen})"
    lines = ["| rule | depth | " + " | ".join(f"{n} pairs" for n in pairs) + " |",
             "|---|---:|" + "---|" * len(pairs)]
    for (rule, depth), row in cells.items():
        lines.append(f"| {rule} | {depth} | " + " | ".join(row.get(n, "-") for n in pairs) + " |")
    return "\n".join(lines) + "\n"


def add_capacity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Associative-memory capacity of each memory rule on the bare op: write N random unit "
                          "key->value pairs, read every key back, count the pairs whose read-out is nearest its "
                          "own value. theta/eta (and the Huber delta) are tuned per cell on one draw and scored on "
                          "others. No model, no outer training; seconds to minutes on a CPU.")
    parser.add_argument("--rules", nargs="+", choices=sorted(NAMED_RULES), default=["titans", "atlas"],
                        help="memory rules (default: titans atlas)")
    parser.add_argument("--pairs", nargs="+", type=positive_int, default=[16, 32, 64, 128],
                        help="numbers of pairs N (default 16 32 64 128)")
    parser.add_argument("--depths", nargs="+", type=positive_int, default=[1], help="memory depths (default 1)")
    parser.add_argument("--dim", type=positive_int, default=32, help="key and value width d (default 32)")
    parser.add_argument("--hidden", type=positive_int, default=64, help="hidden width of deep memories (default 64)")
    parser.add_argument("--passes", type=positive_int, default=1, help="times each pair is written (default 1)")
    parser.add_argument("--chunk-size", type=positive_int, default=1,
                        help="op chunk size (default 1: the per-token rule)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="the first tuning draw (default 0)")
    parser.add_argument("--tune-seeds", type=positive_int, default=2, help="draws tuned on: seed ... (default 2)")
    parser.add_argument("--test-seeds", type=positive_int, default=5,
                        help="draws scored after tuning, the ones after the tuning draws (default 5)")
    parser.add_argument("--threads", type=positive_int, default=0, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also write every cell as JSON to this file")


def run_capacity(args: argparse.Namespace) -> int:
    prepare_cpu(args.threads)
    results = []
    try:
        settings = [CapacitySetting(rule=r, pairs=n, dim=args.dim, depth=d, hidden=args.hidden, passes=args.passes,
                                    chunk_size=args.chunk_size, seed=args.seed, tune_seeds=args.tune_seeds,
                                    test_seeds=args.test_seeds)
                    for r in args.rules for d in args.depths for n in args.pairs]
    except ValueError as err:
        raise CommandError(err) from err
    for s in settings:
        r = measure_capacity(s)
        results.append(r)
        print(f"{s.rule:9s} depth {s.depth}  {s.pairs:4d} pairs  recall {r['recall']:6.1%}  cosine {r['cosine']:.3f}  "
              f"(tuning {r['tuning_recall']:.1%}, {r['best']})  {r['seconds']:.1f} s", flush=True)
    print()
    print(capacity_table(results), end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"dim": args.dim, "passes": args.passes, "chunk_size": args.chunk_size,
                                              "grid": {"theta": THETAS, "eta": ETAS, "delta": DELTAS},
                                              "results": results}, indent=2) + "\n")
    return 0
