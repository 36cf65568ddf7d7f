"""Per-token decode latency with the cache at long contexts (1K, 64K, 1M tokens), CPU.

For each Titans variant (``TitansConfig.from_preset(preset, variant=...)``, random weights, batch
1, no grad) one fresh process prefills the context through the cache in pieces (the real state at
that offset: the same numbers as one parallel call, as the model tests check), timing the
prefill; at every requested context it deep-copies the cache. Then it decodes greedily from every
copy, the contexts interleaved in blocks of ``--block`` steps (machine noise hits all contexts
alike), each step timed alone. Contexts are multiples of the chunk/segment size (64), so every
copy is at the same phase of the chunk: a memory layer's step cost depends on how many tokens of
the unfinished chunk it replays, and ``--steps`` (default 128 = 2 chunks) covers every phase.

titans-pytorch (``MemoryAsContextTransformer.sample(..., use_cache=True)``'s loop, timed step by
step) runs where the interpreter has it, at the contexts its one-call prefill fits in the budget.

    /work/benchvenv/bin/python benchmarks/bench_decode.py --threads 2                 # full
    /work/benchvenv/bin/python benchmarks/bench_decode.py --quick --threads 1         # smoke test
    PYTHONPATH=. .venv/bin/python benchmarks/bench_decode.py --no-peer --threads 2    # titanmem only
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_op import check_device_arg, current_rss_kib, device_setup, machine_info  # noqa: E402
from compare_peers import _watchdog  # noqa: E402

from titanmem.bench.stream import release_free_memory  # noqa: E402

TARGET_SPREAD = 0.15  # LMM/MAG/MAL: per-token latency within 15% between the smallest and the largest context
TARGET_VARIANTS = ("lmm", "mag", "mal")


def _percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def time_interleaved(states: dict[int, Any], step: Callable[[Any], Any], steps: int, block: int,
                     warmup: int = 2) -> dict[int, list[float]]:
    """Seconds of each single-token step per context, the contexts visited in turn ``block`` steps at a time."""
    times: dict[int, list[float]] = {c: [] for c in states}
    for c in states:
        for _ in range(warmup):
            states[c] = step(states[c])
    while any(len(t) < steps for t in times.values()):
        for c in states:
            for _ in range(min(block, steps - len(times[c]))):
                t0 = time.perf_counter()
                states[c] = step(states[c])
                times[c].append(time.perf_counter() - t0)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ms = [1e3 * t for t in times]
    return {"steps": len(ms), "median_ms": statistics.median(ms), "mean_ms": statistics.fmean(ms),
            "min_ms": min(ms), "p10_ms": _percentile(ms, 0.1), "p90_ms": _percentile(ms, 0.9), "max_ms": max(ms)}


def snapshot_cache(cache: Any) -> Any:
    """An independent copy of a TitansCache to decode from (block states own their tensors, so a
    deep copy holds the state only, not the last prefill piece)."""
    return copy.deepcopy(cache)


@torch.no_grad()
def titanmem_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    from titanmem.models import TitansConfig, TitansForCausalLM
    from titanmem.models.hf_compat import output_cache

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    device, autocast, sync = device_setup(cfg)
    model = TitansForCausalLM(TitansConfig.from_preset(cfg["preset"], variant=cfg["variant"])).eval().to(device)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    _watchdog(int(cfg["max_gib"] * 2**30), current_rss_kib())
    cache, done, snapshots, prefill = None, 0, {}, {}
    start = time.perf_counter()
    for context in sorted(set(cfg["contexts"])):
        while done < context:
            n = min(cfg["prefill_piece"], context - done)
            with autocast:
                out = model(input_ids=torch.randint(0, vocab, (1, n), generator=gen).to(device),
                            cache=cache, use_cache=True, logits_to_keep=1)
            cache, done = output_cache(out), done + n
        sync()
        elapsed = time.perf_counter() - start
        token = out.logits[:, -1:].argmax(-1)
        del out
        snapshots[context] = (snapshot_cache(cache), token)
        release_free_memory()
        prefill[context] = {"prefill_s": elapsed, "prefill_tokens_per_s": context / elapsed,
                            "rss_mib": current_rss_kib() / 1024}
        print(f"  {cfg['variant']}: prefilled {context:,} tokens in {elapsed:.1f} s", file=sys.stderr, flush=True)

    def step(state):
        cache, token = state
        with autocast:
            out = model(input_ids=token, cache=cache, use_cache=True)
        token = out.logits[:, -1:].argmax(-1)
        sync()
        return output_cache(out), token

    times = time_interleaved(snapshots, step, cfg["steps"], cfg["block"])
    rows = [{"context": c, **prefill[c], **_summary(times[c])} for c in sorted(times)]
    return {"impl": "titanmem", "variant": cfg["variant"], "parameters": sum(p.numel() for p in model.parameters()),
            "rows": rows, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def peer_model():
    """titans-pytorch's MAC at about the tiny preset's size (see PEER_CONFIG)."""
    from titans_pytorch import MemoryAsContextTransformer

    return MemoryAsContextTransformer(**PEER_CONFIG)


PEER_CONFIG = dict(num_tokens=256, dim=128, depth=4, segment_len=64, num_persist_mem_tokens=4,
                   num_longterm_mem_tokens=0, heads=4, dim_head=32,
                   neural_memory_kwargs=dict(heads=4, dim_head=32))
PEER_NOTE = ("titans-pytorch 0.5.5 MemoryAsContextTransformer(num_tokens=256, dim=128, depth=4, segment_len=64, "
             "num_persist_mem_tokens=4, num_longterm_mem_tokens=0, heads=4, dim_head=32, "
             "neural_memory_kwargs=dict(heads=4, dim_head=32)); everything else default (memory in every layer, "
             "chunk = segment 64, 4 hyper-connection residual streams, no flex attention on CPU). Decoding is the "
             "loop of its sample(use_cache=True): the prompt in one forward call (no prefill in pieces exists), "
             "then one forward per token that re-embeds the whole sequence so far and slices the new position.")


@torch.no_grad()
def peer_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    device, autocast, sync = device_setup(cfg)
    model = peer_model().eval().to(device)
    gen = torch.Generator().manual_seed(0)
    _watchdog(int(cfg["max_gib"] * 2**30), current_rss_kib())
    total = max(cfg["contexts"]) + cfg["steps"] + 4 * cfg["block"] + 8
    seq_len_with_mem = model.seq_len_with_longterm_mem(total)
    axial_dims = model.axial_pos_emb.maybe_derive_outer_dim(seq_len_with_mem, (model.neural_memory_segment_len,))
    factorized = model.axial_pos_emb(axial_dims, return_factorized=True)
    snapshots, prefill = {}, {}
    for context in sorted(set(cfg["contexts"])):
        prompt = torch.randint(0, 256, (1, context), generator=gen).to(device)
        t0 = time.perf_counter()
        with autocast:
            logits, cache = model(prompt, disable_flex_attn=True, cache=None, return_cache=True,
                                  factorized_pos_emb=factorized)
        sync()
        elapsed = time.perf_counter() - t0
        prefill[context] = {"prefill_s": elapsed, "prefill_tokens_per_s": context / elapsed,
                            "rss_mib": current_rss_kib() / 1024}
        snapshots[context] = (torch.cat((prompt, logits[:, -1:].argmax(-1)), dim=-1), cache)
        del logits
        release_free_memory()
        prefill[context]["rss_mib"] = current_rss_kib() / 1024
        print(f"  titans-pytorch: prefilled {context:,} tokens in {elapsed:.1f} s", file=sys.stderr, flush=True)

    def step(state):
        out, cache = state
        with autocast:
            logits, cache = model(out, disable_flex_attn=True, cache=cache, return_cache=True,
                                  factorized_pos_emb=factorized)
        out = torch.cat((out, logits[:, -1:].argmax(-1)), dim=-1)
        sync()
        return out, cache

    times = time_interleaved(snapshots, step, cfg["steps"], cfg["block"])
    rows = [{"context": c, **prefill[c], **_summary(times[c])} for c in sorted(times)]
    return {"impl": "titans-pytorch", "variant": "mac (titans-pytorch)",
            "parameters": sum(p.numel() for p in model.parameters()), "rows": rows,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run(kind: str, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(cfg)], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": str(cfg["threads"])})
    except subprocess.TimeoutExpired:
        return {"error": f"skipped: exceeded the time budget of {timeout:.0f} s"}
    sys.stderr.write(proc.stderr[-2000:] if proc.returncode else "")
    lines = proc.stdout.strip().splitlines()
    if lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return {"error": f"error: {tail[:200]}"}


def _split_contexts(contexts: list[int], max_context: int) -> tuple[list[int], list[int]]:
    return [c for c in contexts if c <= max_context], [c for c in contexts if c > max_context]


def targets(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        if r.get("impl") != "titanmem" or "rows" not in r or len(r["rows"]) < 2:
            continue
        lo, hi = r["rows"][0], r["rows"][-1]
        spread = hi["median_ms"] / lo["median_ms"] - 1
        mean_spread = hi["mean_ms"] / lo["mean_ms"] - 1
        p10_spread = hi["p10_ms"] / lo["p10_ms"] - 1
        tag = ""
        if r["variant"] in TARGET_VARIANTS:
            verdict = "MET" if abs(spread) <= TARGET_SPREAD else "NOT MET"
            tag = f" -> {verdict} (target within {TARGET_SPREAD:.0%})"
        lines.append(f"{r['variant']}: median {lo['median_ms']:.2f} ms at {lo['context']:,} -> "
                     f"{hi['median_ms']:.2f} ms "
                     f"at {hi['context']:,} ({spread:+.1%}; mean {mean_spread:+.1%}, p10 {p10_spread:+.1%}){tag}")
    return lines


def render(info: dict[str, Any], results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"# Decode latency vs context ({args.preset} preset, batch 1, CPU{', quick' if args.quick else ''})", "",
             f"- machine: {info['cpu']}, {info['cores']} cores, {info['threads']} thread(s); torch {info['torch']}; "
             f"titans-pytorch {info.get('titans_pytorch') or 'n/a'}; git {info['git']}; {info['date']}; "
             f"device {args.device}{', bf16 autocast' if args.bf16 else ''}",
             f"- titanmem: prefill through the cache in pieces of {args.prefill_piece} tokens (logits of the last "
             f"position only), deep copy of the cache at each context; then {args.steps} greedy single-token steps "
             f"per context after 2 warm-up steps, contexts interleaved {args.block} steps at a time. Resident = RSS "
             "after the prefill once glibc's free pages are returned (malloc_trim), caches of all contexts alive.",
             f"- titans-pytorch: {PEER_NOTE}", "",
             "| impl | variant | context | prefill s | prefill tok/s | ms/token median | mean | p10 | p90 "
             "| resident MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "rows" not in r and "error" in r:
            lines.append(f"| {r.get('impl')} | {r.get('variant')} | {r.get('contexts', '')} | {r['error']} |"
                         + " |" * 6)
        for row in r.get("rows", []):
            lines.append(f"| {r['impl']} | {r['variant']} | {row['context']:,} | {row['prefill_s']:.1f} | "
                         f"{row['prefill_tokens_per_s']:,.0f} | {row['median_ms']:.2f} | {row['mean_ms']:.2f} | "
                         f"{row['p10_ms']:.2f} | {row['p90_ms']:.2f} | {row['rss_mib']:,.0f} |")
        for c, reason in r.get("skipped", {}).items():
            lines.append(f"| {r['impl']} | {r['variant']} | {int(c):,} | {reason} |" + " |" * 6)
    lines += ["", "## Targets", "", *[f"- {t}" for t in targets(results)], ""]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="contexts 1K and 8K, 64 steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--variants", nargs="+", default=["lmm", "mag", "mal", "mac"])
    p.add_argument("--contexts", type=int, nargs="+", default=None,
                   help="default 1024 65536 1048576 (quick: 1024 8192)")
    p.add_argument("--prefill-piece", type=int, default=8192)
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per context (default 128 = 2 chunks of 64; quick 64)")
    p.add_argument("--block", type=int, default=16, help="steps per visit when interleaving contexts")
    p.add_argument("--no-peer", action="store_true", help="skip titans-pytorch")
    p.add_argument("--peer-max-context", type=int, default=65536,
                   help="titans-pytorch prefills in one call: longer contexts are skipped with that reason")
    p.add_argument("--max-context-full-attention", type=int, default=65536,
                   help="longest context for --variants transformer (quadratic prefill, growing KV cache)")
    p.add_argument("--timeout", type=float, default=5400.0, help="seconds per worker (one variant, all contexts)")
    p.add_argument("--max-gib", type=float, default=12.0, help="extra RSS budget per worker (GiB)")
    p.add_argument("--out", type=Path, default=None, help="output stem (default benchmarks/results/decode[_quick])")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--bf16", action="store_true", help="prefill and decode under bfloat16 autocast")
    args = p.parse_args()
    check_device_arg(p, args.device)
    if args.contexts is None:
        args.contexts = [1024, 8192] if args.quick else [1024, 65536, 1048576]
    if args.steps is None:
        args.steps = 64 if args.quick else 128
    if args.quick:
        args.timeout = min(args.timeout, 900.0)
        args.peer_max_context = min(args.peer_max_context, 8192)
    if args.out is None:
        args.out = ROOT / "benchmarks/results" / ("decode_quick" if args.quick else "decode")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        kind, cfg = args.worker[0], json.loads(args.worker[1])
        print(json.dumps(titanmem_worker(cfg) if kind == "titanmem" else peer_worker(cfg)))
        return
    info = machine_info(args.threads)
    try:
        from importlib.metadata import version

        info["titans_pytorch"] = version("titans-pytorch")
    except Exception:  # noqa: BLE001
        info["titans_pytorch"] = None
    print(f"command: {' '.join([sys.executable, *sys.argv])}", file=sys.stderr)
    base = {"threads": args.threads, "preset": args.preset, "contexts": args.contexts, "steps": args.steps,
            "block": args.block, "prefill_piece": args.prefill_piece, "max_gib": args.max_gib,
            "device": args.device, "bf16": args.bf16}
    results = []
    for variant in args.variants:
        contexts, too_long = args.contexts, []
        if variant == "transformer":  # full attention: the KV cache and the prefill grow with the context
            contexts, too_long = _split_contexts(args.contexts, args.max_context_full_attention)
        print(f"{variant}: contexts {contexts}", file=sys.stderr, flush=True)
        r = _run("titanmem", {**base, "variant": variant, "contexts": contexts}, args.timeout) if contexts else {}
        r.setdefault("impl", "titanmem")
        r.setdefault("variant", variant)
        if too_long:
            r["skipped"] = {str(c): f"skipped: full attention above --max-context-full-attention "
                                    f"{args.max_context_full_attention:,}" for c in too_long}
        results.append(r)
    if not args.no_peer:
        keep, skipped = _split_contexts(args.contexts, args.peer_max_context)
        if info["titans_pytorch"] is None:
            results.append({"impl": "titans-pytorch", "variant": "mac (titans-pytorch)",
                            "error": "skipped: titans-pytorch not installed in this interpreter"})
        else:
            # Its one-call prefill may exceed the budget at the longest contexts: drop the longest
            # that failed and try again with the rest, recording why.
            reasons = {c: (f"skipped: above --peer-max-context {args.peer_max_context:,} (its prompt is prefilled "
                           "in one call that materialises per-chunk memory weights)") for c in skipped}
            r = {"error": "no context within --peer-max-context"}
            while keep:
                r = _run("peer", {**base, "contexts": keep}, args.timeout)
                if "rows" in r:
                    break
                reasons[keep[-1]] = r["error"]
                keep = keep[:-1]
            r.setdefault("impl", "titans-pytorch")
            r.setdefault("variant", "mac (titans-pytorch)")
            r["contexts"] = keep
            r["skipped"] = {str(c): reasons[c] for c in sorted(reasons)}
            results.append(r)
    report = render(info, results, args)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "command": " ".join(sys.argv), "quick": args.quick, "preset": args.preset,
         "config": {k: v for k, v in base.items()}, "peer_config": PEER_NOTE, "targets": targets(results),
         "results": results}, indent=2))
    print(f"wrote {args.out.with_suffix('.md')} and .json", file=sys.stderr)
    from plot_decode import plot_decode

    plot_decode(json.loads(args.out.with_suffix(".json").read_text()), args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
