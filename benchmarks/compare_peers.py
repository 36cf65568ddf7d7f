"""titanmem's NeuralMemory against titans-pytorch's NeuralMemory and causal attention, in one run (CPU).

Same inputs (``x ~ N(0, 1)`` of shape ``[B, T, dim]`` from one seed), same thread count, every
measurement in a fresh subprocess of the same interpreter (so titans-pytorch must be importable
there: run this script with the benchmark venv, see ``benchmarks/requirements-peers.txt``):

    python3 -m venv /work/benchvenv && /work/benchvenv/bin/pip install torch==2.13.0
    /work/benchvenv/bin/pip install -r benchmarks/requirements-peers.txt && /work/benchvenv/bin/pip install -e .
    /work/benchvenv/bin/python benchmarks/compare_peers.py --threads 2            # the full sweep
    /work/benchvenv/bin/python benchmarks/compare_peers.py --quick --threads 1    # smoke test
    /work/benchvenv/bin/python benchmarks/compare_peers.py --profile-op           # profile_op.txt

Implementations (``--impls``):

- ``titanmem``: ``titanmem.layers.NeuralMemory`` with its defaults (read="token": per-token gates,
  each token's gradient at its chunk-start weights, reads after each token's own update).
- ``titanmem-compiled``: the same with ``compiled=True`` (full chunks through ``torch.compile``;
  the compilation happens in the warm-up, which is not timed).
- ``titanmem-chunkread``: the same with ``read="chunk"`` (reads the chunk-start weights).
- ``titans-pytorch``: ``titans_pytorch.NeuralMemory`` 0.5.5 with its defaults except the sizes.
- ``attention``: ``titanmem.layers.Attention`` (Transformer++ attention: RoPE, full causal,
  ``F.scaled_dot_product_attention``) at the same width.

Peak memory: the subprocess's peak RSS (``ru_maxrss``) minus its RSS once the module and the
inputs exist, before the warm-up. Every implementation pays the same allocator and the same
measurement; interpreter and import overhead (titans-pytorch imports more) is subtracted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_op import check_device_arg, current_rss_kib, device_setup, machine_info, time_steps  # noqa: E402

MiB = 2**20
IMPLS = ("titanmem", "titanmem-compiled", "titanmem-chunkread", "titans-pytorch", "attention")
# Sizes (a) and (b): width, heads x 64, 2-layer memory MLP of hidden 4 * 64 = 256 per head.
SIZES = {"a": dict(dim=256, heads=4, head_dim=64), "b": dict(dim=512, heads=8, head_dim=64)}
MEMORY_DEPTH, MEMORY_EXPANSION = 2, 4

PEER_SEMANTICS = """\
titans-pytorch 0.5.5 `NeuralMemory(dim, chunk_size=64, dim_head=64, heads=H)` with every other
argument at its default computes (read from titans_pytorch/neural_memory.py):
- memory model: `MemoryMLP(dim_head, depth=2, expansion_factor=4.)` (per head 64x256 and 256x64,
  xavier-uniform, gelu between) wrapped in `ResidualNorm` (`mem_model_norm_add_residual=True`):
  M(x) = LayerNorm(MLP(x)) * (gamma + 1) + x; per-head learned initial weights.
- q, k, v: pre-RMSNorm of x, then bias-free linear maps, no activation, no convolution, no q/k norm
  (`activation=None`, `qk_rmsnorm=False`); output: per-head sigmoid gate, merge heads, linear.
- loss: mean over features of (M(k) - v)^2 (`default_loss_fn`; titanmem sums, so 64x larger).
- surprise: one gradient per chunk of 64 tokens, sum over the chunk of the per-token losses
  weighted by theta_t = sigmoid(.) * 1.0 (`default_step_transform_max_lr=1.`), taken by
  `torch.func.vmap(grad(...))` over (batch * heads * chunks) at the weights held in
  `state.weights`. With the default `batch_size=None` those are never refreshed: every chunk of a
  call, and of every later call that continues the state, takes its gradient at the memory's
  learned initial weights (checked: `state.weights` still equals the initial weights after two
  calls while `state.states` has moved on). `batch_size=N` splits a call every N tokens and
  refreshes the weights there.
- momentum and forgetting: per chunk, from gates computed on the chunk's mean-pooled input
  (eta = sigmoid(.), alpha = sigmoid(.)): S_n = eta_n S_{n-1} - u_n, W_n = (1 - alpha_n) W_{n-1}
  + S_n, by a pure-PyTorch associative scan over chunks (`use_accelerated_scan=False`, the
  default; the accelerated scan is a CUDA/Triton kernel). No torch.compile, no flex attention.
- read: token t reads the weights after the floor((t+1)/64) chunks completed by then (queries shifted
  by one position, chunk granularity): the last token of a chunk sees its own chunk's update, the
  others see none of it; never per-token updated weights.
titanmem's default computes per-token gates, every token's own gradient (at its chunk-start
weights) combined through the intra-chunk momentum/forgetting recurrence, and reads after each
token's own update (`read="token"`): more work per token for the paper's per-token semantics."""


# --------------------------------------------------------------------------------------------
# worker (one measurement per process)


def _watchdog(budget_bytes: int, base_kib: int) -> None:
    """Abort this process (exit 3, a JSON reason on stdout) once RSS grows past the budget."""
    def loop() -> None:
        while True:
            if (current_rss_kib() - base_kib) * 1024 > budget_bytes:
                print(json.dumps({"error": f"skipped: exceeded the memory budget of "
                                           f"{budget_bytes / 2**30:.1f} GiB"}), flush=True)
                os._exit(3)
            time.sleep(0.02)

    threading.Thread(target=loop, daemon=True).start()


def build_module(impl: str, size: dict[str, int], chunk: int) -> torch.nn.Module:
    dim, heads, head_dim = size["dim"], size["heads"], size["head_dim"]
    if impl in ("titanmem", "titanmem-compiled", "titanmem-chunkread"):
        from titanmem.layers import NeuralMemory

        return NeuralMemory(dim, heads, head_dim=head_dim, memory_depth=MEMORY_DEPTH,
                            memory_expansion=MEMORY_EXPANSION, chunk_size=chunk,
                            read="chunk" if impl == "titanmem-chunkread" else "token",
                            compiled=impl == "titanmem-compiled")
    if impl == "titans-pytorch":
        from titans_pytorch import NeuralMemory as PeerNeuralMemory

        return PeerNeuralMemory(dim=dim, chunk_size=chunk, dim_head=head_dim, heads=heads,
                                default_model_kwargs=dict(depth=MEMORY_DEPTH, expansion_factor=float(MEMORY_EXPANSION)))
    if impl == "attention":
        from titanmem.layers import Attention

        return Attention(dim, heads, head_dim=head_dim, impl="sdpa")
    raise ValueError(f"unknown impl {impl!r}")


def used_parameters(module: torch.nn.Module, impl: str) -> int:
    """Parameters the forward uses (titans-pytorch also registers its unused template MLP)."""
    skip = "memory_model." if impl == "titans-pytorch" else None
    return sum(p.numel() for n, p in module.named_parameters() if not (skip and n.startswith(skip)))


def run_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    device, autocast, sync = device_setup(cfg)
    cuda = device.type == "cuda"
    module = build_module(cfg["impl"], SIZES[cfg["size"]], cfg["chunk"]).to(device)
    grad = cfg["mode"] == "fwd+bwd"
    module.train(grad)
    gen = torch.Generator().manual_seed(1234)  # the same x for every implementation
    x = torch.randn(cfg["B"], cfg["T"], SIZES[cfg["size"]]["dim"], generator=gen).to(device).requires_grad_(grad)

    def step() -> None:
        if not grad:
            with torch.no_grad(), autocast:
                module(x)
        else:
            module.zero_grad(set_to_none=True)
            x.grad = None
            with autocast:  # the forward only: the backward runs in the dtypes the forward chose
                loss = module(x)[0].float().square().mean()
            loss.backward()
        sync()  # on CUDA: time the kernels, not their launch

    base = current_rss_kib()
    _watchdog(int(cfg["max_gib"] * 2**30), base)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base_alloc = torch.cuda.memory_allocated(device)
    warmup, times = time_steps(step, cfg["iters"], cfg["max_seconds"])
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"iters": len(times), "warmup_s": warmup, "median_s": statistics.median(times),
           "min_s": min(times), "peak_rss_mib": peak_kib / 1024,
           "peak_extra_mib": max(0, peak_kib - base) / 1024,
           "parameters": used_parameters(module, cfg["impl"])}
    if cuda:  # on a GPU the memory that counts is the device's: peak allocated above module + input
        out["peak_extra_mib"] = max(0, torch.cuda.max_memory_allocated(device) - base_alloc) / MiB
    if cfg.get("tensor_memory"):
        from bench_op import profiled_peak_bytes

        out["peak_tensor_mib"] = profiled_peak_bytes(step) / MiB
    return out


def run_one(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One measurement in a fresh interpreter; errors, timeouts and budget overruns become rows."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": str(cfg["threads"])})
    except subprocess.TimeoutExpired:
        return {"error": f"skipped: exceeded the time budget of {timeout:.0f} s", "budget": "time"}
    lines = proc.stdout.strip().splitlines()
    if lines:
        try:
            result = json.loads(lines[-1])
            if proc.returncode == 3:
                result["budget"] = "memory"
            if proc.returncode in (0, 3):
                return result
        except json.JSONDecodeError:
            pass
    tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    if proc.returncode < 0:
        tail = f"killed by signal {-proc.returncode} (out of memory?)"
    return {"error": f"error: {tail[:200]}", "budget": "memory" if proc.returncode < 0 else None}


# --------------------------------------------------------------------------------------------
# profile of the op


def profile_op(args: argparse.Namespace) -> None:
    """torch.profiler of neural_memory_chunk fwd+bwd at dim 256 (4 heads x 64), B=4, T=4096."""
    from torch.profiler import ProfilerActivity, profile

    from titanmem.ops import MemoryState, neural_memory_chunk

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T, H, D, hidden = args.profile_batch, args.profile_length, 4, 64, 256
    q = torch.nn.functional.normalize(torch.randn(B, T, H, D), dim=-1).requires_grad_()
    k = torch.nn.functional.normalize(torch.randn(B, T, H, D), dim=-1).requires_grad_()
    v = torch.randn(B, T, H, D).requires_grad_()
    gates = [(0.01 * torch.rand(B, T, H)).requires_grad_(), torch.rand(B, T, H).requires_grad_(),
             (0.1 * torch.rand(B, T, H)).requires_grad_()]
    weights = [(torch.randn(B, H, a, b) / a**0.5).requires_grad_() for a, b in ((D, hidden), (hidden, D))]
    state = MemoryState(tuple(weights), tuple(torch.zeros_like(w) for w in weights))
    leaves = [q, k, v, *gates, *weights]

    def step() -> None:
        for t in leaves:
            t.grad = None
        y, st = neural_memory_chunk(q, k, v, *gates, state, chunk_size=64, read="token")
        (y.square().mean() + sum(w.mean() for w in st.weights)).backward()

    step()
    t0 = time.perf_counter()
    step()
    plain = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    info = machine_info(args.threads)
    avg = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in avg)
    head = ["# neural_memory_chunk forward+backward profile (torch.profiler, CPU)",
            f"# B={B} T={T} H={H} Dk=Dv={D} depth 2 hidden {hidden} chunk 64 read=token gelu float32, "
            f"recompute_chunks=8 (default), {args.threads} thread(s)",
            f"# machine: {info['cpu']}; torch {info['torch']}; git {info['git']}; {info['date']}",
            f"# one step without the profiler: {plain:.3f} s ({B * T / plain:,.0f} tokens/s); "
            f"self CPU time under the profiler: {total_self / 1e6:.3f} s", "",
            "## Top ops by self CPU time", "",
            avg.table(sort_by="self_cpu_time_total", row_limit=args.profile_rows), "",
            "## Top (op, input shapes) by self CPU time", "",
            prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                               row_limit=args.profile_rows)]
    text = "\n".join(head) + "\n"
    args.profile_out.parent.mkdir(parents=True, exist_ok=True)
    args.profile_out.write_text(text)
    print("\n".join(head[:6]))
    print(avg.table(sort_by="self_cpu_time_total", row_limit=15))
    print(f"wrote {args.profile_out}")


# --------------------------------------------------------------------------------------------
# sweep and report


def _fmt(row: dict[str, Any] | None, key: str, spec: str) -> str:
    if row is None:
        return "-"
    if "error" in row:
        return "skip"
    return format(row[key], spec)


def _ratio(ours: dict[str, Any] | None, other: dict[str, Any] | None) -> str:
    if not ours or not other or "error" in ours or "error" in other:
        return "-"
    return f"{ours['tokens_per_s'] / other['tokens_per_s']:.2f}x"


def render(info: dict[str, Any], rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    impls = [i for i in IMPLS if i in args.impls]
    by = {(r["impl"], r["size"], r["B"], r["T"], r["mode"]): r for r in rows}
    lines = [f"# NeuralMemory: titanmem vs titans-pytorch vs causal attention ({info.get('device', 'cpu')}{', quick' if args.quick else ''})",
             "",
             f"- machine: {info['cpu']}, {info['cores']} cores, {info['threads']} thread(s) used; "
             f"torch {info['torch']}, python {info['python']}; titans-pytorch {info.get('titans_pytorch', 'n/a')}; "
             f"git {info['git']}; {info['date']}; device {info.get('device', 'cpu')}"
             f"{', bfloat16 autocast' if info.get('bf16') else ', float32'}",
             "- sizes: (a) dim 256, 4 heads x 64; (b) dim 512, 8 heads x 64. Memory MLP per head 64 -> 256 -> 64 "
             "(titanmem memory_depth=2, memory_expansion=4; titans-pytorch MemoryMLP depth=2, expansion_factor=4), "
             "chunk 64, float32. Attention: titanmem.layers.Attention (RoPE, full causal, sdpa), same width.",
             f"- each cell: median of up to {args.iters} timed iterations after 1 warm-up, fresh subprocess; "
             "tokens/s = B*T / median; peak = peak RSS minus RSS once module and inputs exist (MiB). "
             "fwd runs under no_grad; fwd+bwd backpropagates mean(y^2) to the parameters and x.",
             f"- budgets per measurement: {args.timeout:.0f} s, {args.max_gib:.1f} GiB extra RSS; 'skip' rows say "
             "why in the JSON and below.",
             ""]
    for mode in args.modes:
        lines += [f"## {mode}", "",
                  "| size | B | T | " + " | ".join(f"{i} tok/s" for i in impls)
                  + " | titanmem / titans-pytorch | titanmem / attention | "
                  + " | ".join(f"{i} peak MiB" for i in impls) + " |",
                  "|" + "---|" * (3 + 2 * len(impls) + 2)]
        for size in args.sizes:
            for B in args.batch:
                for T in args.lengths:
                    cells = [by.get((i, size, B, T, mode)) for i in impls]
                    if all(c is None for c in cells):
                        continue
                    tm = by.get(("titanmem", size, B, T, mode))
                    ratios = [_ratio(tm, by.get((other, size, B, T, mode)))
                              for other in ("titans-pytorch", "attention")]
                    lines.append(f"| {size} | {B} | {T} | " + " | ".join(_fmt(c, "tokens_per_s", ",.0f") for c in cells)
                                 + f" | {ratios[0]} | {ratios[1]} | "
                                 + " | ".join(_fmt(c, "peak_extra_mib", ",.0f") for c in cells) + " |")
        lines.append("")
    skipped = [r for r in rows if "error" in r]
    if skipped:
        lines += ["## Skipped or failed", ""]
        lines += [f"- {r['impl']} size {r['size']} B={r['B']} T={r['T']} {r['mode']}: {r['error']}" for r in skipped]
        lines.append("")
    params = {}
    for r in rows:
        if "parameters" in r:
            params[(r["impl"], r["size"])] = r["parameters"]
    if params:
        lines += ["## Parameters used by the forward", "",
                  "| impl | size | parameters |", "|---|---|---|"]
        lines += [f"| {i} | {s} | {n:,} |" for (i, s), n in sorted(params.items())]
        lines.append("")
    cross = crossover(rows, args)
    if cross:
        lines += ["## Where titanmem becomes cheaper than attention", "", *[f"- {c}" for c in cross], ""]
    lines += ["## What titans-pytorch computes", "", PEER_SEMANTICS, ""]
    return "\n".join(lines)


def crossover(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """First measured T at which titanmem's tokens/s reaches attention's, per (size, B, mode)."""
    out = []
    by = {(r["impl"], r["size"], r["B"], r["T"], r["mode"]): r for r in rows if "error" not in r}
    for mode in args.modes:
        for size in args.sizes:
            for B in args.batch:
                pts = [(T, by.get(("titanmem", size, B, T, mode)), by.get(("attention", size, B, T, mode)))
                       for T in sorted(args.lengths)]
                pts = [(T, a["tokens_per_s"] / b["tokens_per_s"]) for T, a, b in pts if a and b]
                if not pts:
                    continue
                first = next((T for T, r in pts if r >= 1.0), None)
                trail = ", ".join(f"T={T}: {r:.2f}x" for T, r in pts)
                where = f"from T={first}" if first else "not within the measured T"
                out.append(f"{mode}, size {size}, B={B}: " + where
                           + f" (titanmem / attention tokens/s: {trail})")
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="smoke test: B=1, T in {512, 1024}, 2 iterations")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every measurement (default 2)")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=sorted(SIZES))
    p.add_argument("--batch", type=int, nargs="+", default=None, help="default 1 4 (quick: 1)")
    p.add_argument("--lengths", type=int, nargs="+", default=None, help="default 1024 4096 16384 (quick: 512 1024)")
    p.add_argument("--modes", nargs="+", choices=["fwd", "fwd+bwd"], default=["fwd", "fwd+bwd"])
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]; on CUDA peak = allocated device memory")
    p.add_argument("--bf16", action="store_true", help="run every implementation under bfloat16 autocast")
    p.add_argument("--iters", type=int, default=None,
                   help="timed iterations after 1 warm-up, median (default 3; quick 2)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop timing a config after this (>= 1 iteration)")
    p.add_argument("--timeout", type=float, default=600.0, help="per-measurement wall-clock budget (s)")
    p.add_argument("--max-gib", type=float, default=12.0, help="per-measurement budget of extra RSS (GiB)")
    p.add_argument("--tensor-memory", action="store_true", help="also the torch.profiler peak of live tensors")
    p.add_argument("--out", type=Path, default=None, help="output stem (default benchmarks/results/peers[_quick])")
    p.add_argument("--profile-op", action="store_true", help="profile neural_memory_chunk fwd+bwd and exit")
    p.add_argument("--profile-batch", type=int, default=4)
    p.add_argument("--profile-length", type=int, default=4096)
    p.add_argument("--profile-rows", type=int, default=30)
    p.add_argument("--profile-out", type=Path, default=ROOT / "benchmarks/results/profile_op.txt")
    args = p.parse_args()
    if args.batch is None:
        args.batch = [1] if args.quick else [1, 4]
    if args.lengths is None:
        args.lengths = [512, 1024] if args.quick else [1024, 4096, 16384]
    if args.iters is None:
        args.iters = 2 if args.quick else 3
    if args.quick:
        args.timeout = min(args.timeout, 180.0)
    check_device_arg(p, args.device)
    if args.out is None:
        suffix = ("_quick" if args.quick else "") + ("" if args.device == "cpu" else "_cuda") + ("_bf16" if args.bf16 else "")
        args.out = ROOT / "benchmarks/results" / f"peers{suffix}"
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    if args.profile_op:
        profile_op(args)
        return
    info = machine_info(args.threads)
    info["device"] = args.device if args.device == "cpu" else f"{args.device} ({torch.cuda.get_device_name(args.device)})"
    info["bf16"] = args.bf16
    try:
        from importlib.metadata import version

        info["titans_pytorch"] = version("titans-pytorch")
    except Exception:  # noqa: BLE001 - not installed: its rows are skipped below
        info["titans_pytorch"] = None
        if "titans-pytorch" in args.impls:
            print("titans-pytorch is not importable by this interpreter: its rows are skipped "
                  "(run with the benchmark venv, see benchmarks/requirements-peers.txt)", file=sys.stderr)
    print(f"command: {' '.join([sys.executable, *sys.argv])}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for mode in args.modes:
        for size in args.sizes:
            for B in args.batch:
                for impl in args.impls:
                    last: dict[str, Any] | None = None
                    for T in sorted(args.lengths):
                        row = {"impl": impl, "size": size, **SIZES[size], "B": B, "T": T, "mode": mode}
                        if impl == "titans-pytorch" and info["titans_pytorch"] is None:
                            row["error"] = "skipped: titans-pytorch not installed in this interpreter"
                        elif last is not None and last.get("budget"):
                            row.update(error=f"skipped: T={last['T']} already exceeded the {last['budget']} budget",
                                       budget=last["budget"])
                        elif last is not None and "median_s" in last:
                            power = 2 if impl == "attention" else 1
                            predicted = last["median_s"] * (T / last["T"]) ** power * (1 + args.iters)
                            if predicted > args.timeout:
                                row.update(error=f"skipped: predicted {predicted:.0f} s > time budget "
                                                 f"{args.timeout:.0f} s", budget="time")
                        if "error" not in row:
                            cfg = {"impl": impl, "size": size, "B": B, "T": T, "mode": mode, "chunk": args.chunk,
                                   "threads": args.threads, "iters": args.iters, "max_seconds": args.max_seconds,
                                   "max_gib": args.max_gib, "tensor_memory": args.tensor_memory,
                                   "device": args.device, "bf16": args.bf16}
                            row.update(run_one(cfg, args.timeout))
                            if "median_s" in row:
                                row["tokens_per_s"] = B * T / row["median_s"]
                        rows.append(row)
                        last = row
                        print(f"{mode} {size} B={B} T={T} {impl}: "
                              + (row["error"] if "error" in row else
                                 f"{row['tokens_per_s']:,.0f} tok/s, peak +{row['peak_extra_mib']:,.0f} MiB"),
                              file=sys.stderr, flush=True)
    report = render(info, rows, args)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "command": " ".join([Path(sys.executable).as_posix(), *sys.argv]),
         "quick": args.quick, "sizes": SIZES, "chunk": args.chunk, "iters": args.iters,
         "timeout_s": args.timeout, "max_gib": args.max_gib, "peer_semantics": PEER_SEMANTICS,
         "crossover": crossover(rows, args), "rows": rows}, indent=2))
    print(f"wrote {args.out.with_suffix('.md')} and .json", file=sys.stderr)
    from plot_throughput import plot_peers

    models = ROOT / "benchmarks/results/bench_models.json"
    plot_peers(json.loads(args.out.with_suffix(".json").read_text()),
               args.out.with_name(args.out.name + "_throughput.png"),
               json.loads(models.read_text()) if models.exists() else None)


if __name__ == "__main__":
    main()
