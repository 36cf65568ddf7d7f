"""Throughput and memory benchmark of ``neural_memory_chunk`` on the CPU or a CUDA device (``--device``).

Every (rule, batch, length, read, mode) point runs in a fresh subprocess so its peak RSS (and, on CUDA,
its peak device memory) is its own. On CUDA the clock is read after ``torch.cuda.synchronize``.
Model FLOPs come from an analytic count of the chunk forward; fwd+bwd counts 3x the forward
(recomputation in the backward pass is not counted as useful work). The count is the Titans op's:
the other memory rules (``--rules``, run through ``neural_memory_family_chunk``) are reported by
their time against the Titans op's at the same point.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_op.py --quick
    PYTHONPATH=. .venv/bin/python benchmarks/bench_op.py --quick --rules titans moneta yaad memora atlas
    PYTHONPATH=. python3 benchmarks/bench_op.py --quick --device cuda --bf16 --out-md op_cuda.md --out-json op_cuda.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
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

from titanmem.devices import resolve_device  # noqa: E402
from titanmem.ops import NAMED_RULES, MemoryRule, MemoryState, neural_memory_chunk, neural_memory_family_chunk  # noqa: E402
from titanmem.ops.neural_memory.features import feature_dim  # noqa: E402

# "titans" runs neural_memory_chunk; every other name runs neural_memory_family_chunk with its rule
# ("titans-family" is the Titans rule through the family op, to separate the op's cost from the rule's).
RULES: dict[str, MemoryRule] = {"titans": NAMED_RULES["titans"], "titans-family": NAMED_RULES["titans"],
                                **{k: r for k, r in NAMED_RULES.items() if k != "titans"}}

FLOP_CONVENTION = "model FLOPs: analytic forward count; fwd+bwd = 3x forward (recomputation not counted)"
TARGET_RATIO, TARGET_BYTES = 0.20, 2 * 2**30
MiB = 2**20


def chunk_flops(n: int, dims: list[int], read: str) -> int:
    """Forward FLOPs of one chunk of ``n`` tokens for one (batch, head); ``dims = [Dk, hidden.., Dv]``."""
    layers = list(zip(dims[:-1], dims[1:]))
    flops = sum(2 * n * a * b for a, b in layers)  # key forward
    flops += sum(2 * n * b * c for (_, b), (_, c) in zip(layers[:-1], layers[1:]))  # hand backward
    flops += sum(2 * n * a * 2 * b for a, b in layers)  # carry to the next chunk
    flops += 2 * n**3 + 2 * n**2  # coefficient matmuls (Gamma = K P, c = K E), both read modes
    if read == "token":
        flops += sum(2 * n * a * 2 * b + 2 * n * n * a + 2 * n * n * b for a, b in layers)
    else:
        flops += sum(2 * n * a * b for a, b in layers)
    return flops


def op_flops(cfg: dict[str, Any]) -> int:
    """Model FLOPs of one call (forward, or 3x forward for fwd+bwd) over all chunks, batch and heads."""
    dims = [cfg["dk"], *[cfg["hidden"]] * (cfg["depth"] - 1), cfg["dv"]]
    full, rest = divmod(cfg["T"], cfg["chunk"])
    fwd = full * chunk_flops(cfg["chunk"], dims, cfg["read"])
    fwd += chunk_flops(rest, dims, cfg["read"]) if rest else 0
    return fwd * cfg["B"] * cfg["H"] * (3 if cfg["mode"] == "fwd+bwd" else 1)


def current_rss_kib() -> int:
    """Resident set size of this process now, in KiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/self/status")


def profiled_peak_bytes(fn: Callable[[], None]) -> int:
    """Peak bytes of tensors allocated above those live at the start, from torch.profiler's events."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    stack, allocs = list(prof.profiler.kineto_results.experimental_event_tree()), []
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation:
            allocs.append((event.start_time_ns, event.extra_fields.alloc_size))
    current = peak = 0
    for _, size in sorted(allocs):
        current += size
        peak = max(peak, current)
    return peak


def time_steps(step: Callable[[], None], iters: int, max_seconds: float,
               sync: Callable[[], None] = lambda: None) -> tuple[float, list[float]]:
    """One warm-up call, then up to ``iters`` timed calls (fewer once ``max_seconds`` have passed).

    ``sync`` runs after each call, before the clock is read (``torch.cuda.synchronize`` on CUDA, where
    calls return before the device has finished).

    Returns the warm-up's seconds and each timed call's seconds (at least one).
    """
    start = time.perf_counter()
    step()
    sync()
    warmup = time.perf_counter() - start
    times: list[float] = []
    while len(times) < iters:
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_seconds:
            break
    return warmup, times


def device_setup(cfg: dict[str, Any]) -> tuple[torch.device, Any, Callable[[], None]]:
    """A worker's device (``cfg["device"]``, default cpu), its autocast context (bfloat16 when
    ``cfg["bf16"]``; the memory state stays float32) and a synchronisation to call before reading
    the clock (a no-op on CPU)."""
    device = torch.device(cfg.get("device", "cpu"))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(cfg.get("bf16")))
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    return device, autocast, sync


def check_device_arg(parser: argparse.ArgumentParser, name: str) -> None:
    """Exit through ``parser.error`` when ``--device name`` is unknown or absent (titanmem.bench's check)."""
    from titanmem.bench import resolve_device

    try:
        resolve_device(name)
    except ValueError as err:
        parser.error(f"--device: {err}")


def run_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Time one configuration in this (fresh) process and measure its memory."""
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    device, autocast, sync = device_setup(cfg)
    B, T, H, dk, dv, hid = cfg["B"], cfg["T"], cfg["H"], cfg["dk"], cfg["dv"], cfg["hidden"]
    grad = cfg["mode"] == "fwd+bwd"

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=device)

    q = torch.nn.functional.normalize(randn(B, T, H, dk), dim=-1).requires_grad_(grad)
    k = torch.nn.functional.normalize(randn(B, T, H, dk), dim=-1).requires_grad_(grad)
    v = randn(B, T, H, dv).requires_grad_(grad)
    gates = [(0.05 * rand(B, T, H)), rand(B, T, H), 0.1 * rand(B, T, H)]
    gates = [g.requires_grad_(grad) for g in gates]
    name = cfg.get("rule", "titans")
    rule = RULES[name]
    dims = [feature_dim(dk, rule.feature_map, rule.feature_degree), *[hid] * (cfg["depth"] - 1), dv]
    weights = [(randn(B, H, a, b) / a**0.5).requires_grad_(grad) for a, b in zip(dims, dims[1:])]
    state = MemoryState(tuple(weights), tuple(torch.zeros_like(w) for w in weights))
    extra = {"recompute_chunks": cfg["recompute_chunks"]}
    leaves = [q, k, v, *gates, *weights]
    op = neural_memory_chunk
    if name != "titans":
        op = neural_memory_family_chunk
        extra["rule"] = rule
        if rule.window > 1:
            extra["gamma"] = rand(B, T, H).requires_grad_(grad)
            leaves.append(extra["gamma"])
        if rule.objective == "huber":
            extra["delta"] = rand(B, T, H).requires_grad_(grad)
            leaves.append(extra["delta"])

    def step() -> None:
        if not grad:
            with torch.no_grad(), autocast:
                op(q, k, v, *gates, state, chunk_size=cfg["chunk"], read=cfg["read"], **extra)
            return
        for t in leaves:
            t.grad = None
        with autocast:  # the forward under autocast, the backward outside it (torch's AMP recipe)
            y, st = op(q, k, v, *gates, state, chunk_size=cfg["chunk"], read=cfg["read"], **extra)
            loss = y.square().mean() + sum(w.mean() for w in st.weights)
        loss.backward()

    cuda = device.type == "cuda"
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        device_before = torch.cuda.memory_allocated(device)
    rss_before = current_rss_kib()
    _, times = time_steps(step, cfg["iters"], cfg["max_seconds"], sync)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "iters": len(times),
        "median_s": statistics.median(times),
        "peak_rss_bytes": peak_kib * 1024,
        "peak_extra_bytes": (peak_kib - rss_before) * 1024,
        "peak_device_extra_bytes": torch.cuda.max_memory_allocated(device) - device_before if cuda else None,
        "peak_tensor_bytes": profiled_peak_bytes(step) if cfg["profile_memory"] else None,
    }


def matmul_size(device: str) -> int:
    """Side of the square fp32 product :func:`matmul_gflops` times: 1024 on CPU, 4096 on CUDA (a 1024^3
    product does not fill a GPU)."""
    return 4096 if torch.device(device).type == "cuda" else 1024


def matmul_gflops(threads: int, runs: int = 10, size: int | None = None, device: str = "cpu") -> float:
    """Median fp32 ``torch.mm`` throughput (GFLOP/s) of a size^3 product on ``device`` (``threads``
    CPU threads; ``size`` default :func:`matmul_size`)."""
    torch.set_num_threads(threads)
    size = matmul_size(device) if size is None else size
    _, _, sync = device_setup({"device": device})
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    torch.mm(a, b)
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def git_revision() -> str:
    """Short HEAD hash (or 'no-commits'), with '-dirty' when the work tree has changes."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    rev = head.stdout.strip() if head.returncode == 0 else "no-commits"
    status = git("status", "--porcelain")
    return rev + ("-dirty" if status.returncode == 0 and status.stdout.strip() else "")


def machine_info(threads: int) -> dict[str, Any]:
    """CPU model, cores, threads, library versions, git revision and date."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {
        "cpu": cpu, "cores": os.cpu_count(), "threads": threads,
        "torch": torch.__version__, "python": platform.python_version(), "git": git_revision(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def targets(rows: list[dict[str, Any]], device: str = "cpu") -> list[str]:
    """Lines stating whether the two CPU targets (matmul share, peak memory) are met by the measured rows."""
    if torch.device(device).type != "cpu":
        return [f"the targets are CPU targets (matmul share, peak RSS): not judged on {device}"]

    def find(T: int, read: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["B"] == 4 and r["T"] == T and r["read"] == read
                     and r["mode"] == "fwd+bwd" and r.get("rule", "titans") == "titans" and "error" not in r), None)

    lines = []
    r = find(4096, "token")
    lines.append("(a) read=token fwd+bwd B=4 T=4096 >= 20% of matmul: " + (
        "not measured" if r is None else
        f"{100 * r['mm_ratio']:.1f}% -> {'MET' if r['mm_ratio'] >= TARGET_RATIO else 'NOT MET'}"))
    for read in ("token", "chunk"):
        big, mid = find(16384, read), find(4096, read)
        if big is None:
            lines.append(f"(b) read={read} fwd+bwd B=4 T=16384 peak memory < 2 GiB: not measured")
            continue
        ok = big["peak_extra_bytes"] < TARGET_BYTES
        ratio = big["peak_extra_bytes"] / mid["peak_extra_bytes"] if mid and mid["peak_extra_bytes"] > 0 else None
        lines.append(
            f"(b) read={read} fwd+bwd B=4 T=16384: peak extra {big['peak_extra_bytes'] / MiB:.0f} MiB "
            f"(absolute RSS {big['peak_rss_bytes'] / MiB:.0f} MiB) -> {'MET' if ok else 'NOT MET'} (< 2 GiB, "
            "judged on peak extra); growth T=16384/T=4096 = "
            + ("not measured" if ratio is None else f"{ratio:.2f} (linear ~4; {'OK' if ratio <= 5 else 'superlinear'})"))
    return lines


def render(info: dict[str, Any], mm: list[float], rows: list[dict[str, Any]]) -> str:
    """Markdown report: header, table, targets."""
    device = info.get("device", "cpu")
    size = matmul_size(device)
    out = [f"# neural_memory_chunk {'CPU' if device == 'cpu' else device} benchmark", "",
           f"- machine: {info['cpu']}, {info['cores']} cores, {info['threads']} threads used",
           f"- device: {device}" + (f" ({info['gpu']})" if info.get("gpu") else "")
           + (", bf16 autocast (memory state float32)" if info.get("bf16") else ""),
           f"- torch {info['torch']}, python {info['python']}, git {info['git']}, {info['date']}",
           f"- op: {info['op']}",
           f"- fp32 {size}^3 torch.mm on {device}: {mm[0]:.1f} GFLOP/s before, {mm[1]:.1f} after the sweep "
           f"(ratio column uses the larger)",
           f"- {FLOP_CONVENTION}",
           "- peak extra = peak RSS (ru_maxrss) minus RSS after inputs are allocated, before the warm-up;"
           " peak device = on CUDA, torch.cuda.max_memory_allocated minus the bytes allocated then;"
           " peak tensor = torch.profiler allocations (only with --profile-memory)", "",
           "- rules other than titans: GFLOP columns are left empty (the count is the Titans op's); "
           "x titans = median time / the titans row's at the same B, T, read, mode", "",
           "| rule | B | T | read | mode | iters | median s | x titans | tokens/s | GFLOP | GFLOP/s | % of mm "
           "| peak extra MiB | peak RSS MiB | peak device MiB | peak tensor MiB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rule = r.get("rule", "titans")
        head = f"| {rule} | {r['B']} | {r['T']} | {r['read']} | {r['mode']} "
        if "error" in r:
            out.append(head + f"| error: {r['error']} |" + " |" * 10)
            continue
        tensor = "-" if r["peak_tensor_bytes"] is None else f"{r['peak_tensor_bytes'] / MiB:.0f}"
        on_device = r.get("peak_device_extra_bytes")
        on_device = "-" if on_device is None else f"{on_device / MiB:.0f}"
        ratio = "-" if r.get("vs_titans") is None else f"{r['vs_titans']:.2f}"
        flops = ("| | | " if rule != "titans" else
                 f"| {r['gflop']:.2f} | {r['gflops']:.1f} | {100 * r['mm_ratio']:.1f} ")
        out.append(head + f"| {r['iters']} | {r['median_s']:.3f} | {ratio} | {r['tokens_per_s']:,.0f} "
                   + flops + f"| {r['peak_extra_bytes'] / MiB:.0f} | {r['peak_rss_bytes'] / MiB:.0f} | {on_device} "
                   f"| {tensor} |")
    return "\n".join(out + ["", "## Targets", "", *[f"- {line}" for line in targets(rows, device)], ""])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="smoke test: B=1, T in {256, 512}, 1 iteration")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--reads", nargs="+", choices=["token", "chunk"], default=["token", "chunk"])
    p.add_argument("--modes", nargs="+", choices=["fwd", "fwd+bwd"], default=["fwd", "fwd+bwd"])
    p.add_argument("--iters", type=int, default=3, help="timed iterations after 1 warm-up (median)")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="per config: stop timing once warm-up + iterations exceed this (>= 1 iteration)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--profile-memory", action="store_true",
                   help="also measure peak tensor memory with torch.profiler (one extra, slow iteration)")
    p.add_argument("--recompute-chunks", type=int, default=8,
                   help="neural_memory_chunk's recompute_chunks (0 keeps every intermediate)")
    p.add_argument("--rules", nargs="+", choices=list(RULES), default=["titans"],
                   help="memory rules to time (titans: neural_memory_chunk; others: neural_memory_family_chunk)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (the inputs are built there)")
    p.add_argument("--bf16", action="store_true", help="run the op under bfloat16 autocast (the state stays float32)")
    p.add_argument("--out-md", type=Path, default=ROOT / "benchmarks/results/bench_op.md")
    p.add_argument("--out-json", type=Path, default=ROOT / "benchmarks/results/bench_op.json")
    args = p.parse_args()
    check_device_arg(p, args.device)
    args.device = str(resolve_device(args.device))  # "auto" -> the device it names, for the workers
    if args.quick:
        args.batch, args.lengths, args.iters = [1], [256, 512], 1
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    info = machine_info(args.threads)
    info["device"], info["bf16"] = args.device, args.bf16
    if torch.device(args.device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    info["op"] = (f"H=4, Dk=Dv=64, depth 2, hidden 256, gelu, chunk {args.chunk}, float32"
                  f"{' under bf16 autocast' if args.bf16 else ''}, recompute_chunks={args.recompute_chunks}")
    info["rules"] = {name: repr(RULES[name]) for name in args.rules}
    mm = [matmul_gflops(args.threads, device=args.device)]
    rows = []
    points = [(rule, B, T, read, mode) for B in args.batch for T in args.lengths for read in args.reads
              for mode in args.modes for rule in args.rules]
    for rule, B, T, read, mode in points:
        cfg = {"B": B, "T": T, "read": read, "mode": mode, "H": 4, "dk": 64, "dv": 64,
               "hidden": 256, "depth": 2, "chunk": args.chunk, "threads": args.threads,
               "iters": args.iters, "max_seconds": args.max_seconds, "rule": rule,
               "profile_memory": args.profile_memory, "recompute_chunks": args.recompute_chunks,
               "device": args.device, "bf16": args.bf16}
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)],
                              capture_output=True, text=True)
        row = {k: cfg[k] for k in ("rule", "B", "T", "read", "mode")}
        if proc.returncode != 0:
            row["error"] = (proc.stderr.strip().splitlines() or ["unknown"])[-1]
        else:
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            row["gflop"] = op_flops(cfg) / 1e9
        rows.append(row)
        print(f"done rule={rule} B={B} T={T} read={read} mode={mode}: "
              + (row.get("error") or f"{row['median_s']:.3f} s"), file=sys.stderr, flush=True)
    mm.append(matmul_gflops(args.threads, device=args.device))
    titans = {(r["B"], r["T"], r["read"], r["mode"]): r["median_s"] for r in rows
              if r["rule"] == "titans" and "error" not in r}
    for row in rows:
        if "error" not in row:
            row["tokens_per_s"] = row["B"] * row["T"] / row["median_s"]
            row["gflops"] = row["gflop"] / row["median_s"]
            row["mm_ratio"] = row["gflops"] / max(mm)
            base = titans.get((row["B"], row["T"], row["read"], row["mode"]))
            row["vs_titans"] = None if base is None else row["median_s"] / base
    report = render(info, mm, rows)
    print(report)
    for path, text in ((args.out_md, report), (args.out_json, json.dumps(
            {"machine": info, "matmul_gflops": mm, "flop_convention": FLOP_CONVENTION,
             "rows": rows,
             "targets": targets(rows, args.device)}, indent=2))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    main()
