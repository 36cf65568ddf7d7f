"""Streaming: push N tokens through a model in pieces, the state carried, no gradients.

Reports the throughput and the resident memory (``VmRSS`` of ``/proc/self/status``) sampled over
time. A Titans model's state is bounded (memory weights and momentum, less than one chunk of
pending tokens, window-sized attention caches), so the resident memory must stay flat however
many tokens go through: the check is ``max resident after the first piece <= (1 + max_growth) *
resident after the first piece``, the resident memory read after each piece once the allocator's
free pages are returned to the OS (glibc ``malloc_trim``). Without that step the RSS after a
piece swings by tens of MiB with how much of the last piece's temporaries glibc keeps cached,
which says nothing about the state; the raw RSS and the transient peak within pieces are
reported beside it.

    titanmem bench stream --tokens 2000000                 # once wired into the CLI
    python benchmarks/bench_stream.py --tokens 2000000     # the same from the benchmark script
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..blocks import VARIANTS
from ..cli_args import CommandError, nonneg_float, nonneg_int, positive_int
from ..devices import autocast_context, resolve_device

if TYPE_CHECKING:  # the annotation of build_stream_model only
    from ..models import TitansForCausalLM

__all__ = [
    "StreamResult", "add_stream_arguments", "build_stream_model", "release_free_memory", "resolve_device", "rss_kib",
    "run_stream", "stream_tokens",
]



def rss_kib() -> int:
    """Resident set size of this process now, in KiB: ``/proc/self/status``, else psutil, else the peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        import psutil  # type: ignore[import-not-found]

        return psutil.Process().memory_info().rss // 1024
    except ImportError:  # last resort: the peak, which can only overstate growth
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS (glibc ``malloc_trim(0)``); False where unavailable."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - raises AttributeError off glibc
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC is False:
        return False
    _LIBC.malloc_trim(0)
    return True


_LIBC: Any = None


@dataclass
class StreamResult:
    """What :func:`stream_tokens` measured (memory in MiB).

    ``samples`` are ``(tokens done, seconds since start, resident MiB, raw MiB)`` after every piece:
    ``raw`` is the RSS as the piece left it, ``resident`` the RSS after returning the allocator's
    free pages to the OS (glibc ``malloc_trim``; equal to raw where that is unavailable or
    ``trim=False``), i.e. what the model and its state really keep. ``growth`` (the pass/fail
    figure) compares the largest resident sample after the first piece with the first one.
    ``peak_*`` come from a background sampler reading the RSS during pieces as well: the
    transient working set of a piece, compared between the first and second halves of the stream.
    """

    tokens: int
    piece: int
    batch: int
    trimmed: bool
    seconds: float
    tokens_per_s: float
    tokens_per_s_after_first: float
    rss_start_mib: float
    rss_after_first_mib: float
    rss_end_mib: float
    rss_max_after_first_mib: float
    growth: float
    max_growth: float
    flat: bool
    slope_kib_per_1k_tokens: float
    raw_max_after_first_mib: float
    peak_first_half_mib: float
    peak_second_half_mib: float
    samples: list[tuple[int, float, float, float]] = field(default_factory=list)
    device: str = "cpu"
    # CUDA only: allocated device memory (torch.cuda.memory_allocated) after each piece, its growth
    # after the first piece (part of ``flat``), and the largest allocation peak within a piece.
    device_samples_mib: list[float] = field(default_factory=list)
    device_growth: float | None = None
    device_peak_mib: float | None = None

    def summary(self) -> str:
        kind = "resident after malloc_trim" if self.trimmed else "RSS"
        return (f"{self.tokens:,} tokens x {self.batch} in {self.seconds:.1f} s: {self.tokens_per_s:,.0f} tokens/s "
                f"({self.tokens_per_s_after_first:,.0f} after the first piece)\n"
                f"{kind}: {self.rss_after_first_mib:,.1f} MiB after the first piece, max after it "
                f"{self.rss_max_after_first_mib:,.1f}, at the end {self.rss_end_mib:,.1f}: growth "
                f"{100 * self.growth:+.2f}% (limit {100 * self.max_growth:.0f}%: "
                f"{'flat' if self.flat else 'NOT flat'}); "
                f"slope over the second half {self.slope_kib_per_1k_tokens:+.3f} KiB per 1K tokens\n"
                f"raw RSS after pieces: max {self.raw_max_after_first_mib:,.1f} MiB; transient peak within pieces: "
                f"{self.peak_first_half_mib:,.1f} MiB (first half) vs "
                f"{self.peak_second_half_mib:,.1f} MiB (second half)"
                + ("" if self.device_growth is None else
                   f"\n{self.device} memory allocated: {self.device_samples_mib[0]:,.1f} MiB after the first piece, "
                   f"max after it {max(self.device_samples_mib):,.1f} ({100 * self.device_growth:+.2f}%); "
                   f"peak within pieces {self.device_peak_mib:,.1f} MiB"))


def build_stream_model(
    preset: str = "tiny", variant: str = "mac", seed: int = 0, **overrides: Any
) -> TitansForCausalLM:
    """``TitansForCausalLM`` of a preset (random weights, eval mode); ``overrides`` are config fields."""
    import torch

    from ..models import TitansConfig, TitansForCausalLM

    torch.manual_seed(seed)
    config = TitansConfig.from_preset(preset, variant=variant, **overrides)
    return TitansForCausalLM(config).eval()


class _Sampler:
    """Reads the RSS every ``interval`` seconds in a daemon thread; keeps the maximum since ``reset``."""

    def __init__(self, interval: float) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_kib())

    def __enter__(self) -> _Sampler:
        if self.interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def reset(self, value: int) -> None:
        self.peak = value


def _slope(samples: list[tuple[int, float, float, float]], piece: int) -> float:
    """Least-squares slope of the resident KiB against tokens over the second half of the full
    pieces (a shorter last piece leaves less behind), per 1K tokens."""
    full = [s for s, prev in zip(samples, [(0,), *samples[:-1]], strict=True) if s[0] - prev[0] == piece]
    pts = full[len(full) // 2:]
    if len(pts) < 2:
        return 0.0
    n = len(pts)
    mx = sum(p[0] for p in pts) / n
    my = sum(p[2] * 1024 for p in pts) / n
    var = sum((p[0] - mx) ** 2 for p in pts)
    return 0.0 if var == 0 else 1000 * sum((p[0] - mx) * (p[2] * 1024 - my) for p in pts) / var


def stream_tokens(
    model: TitansForCausalLM,
    tokens: int,
    piece: int = 4096,
    batch: int = 1,
    seed: int = 0,
    max_growth: float = 0.05,
    sample_interval: float = 0.25,
    trim: bool = True,
    all_logits: bool = False,
    progress: Any = None,
    device: Any = "cpu",
    autocast_dtype: Any = None,
) -> StreamResult:
    """Feed ``tokens`` random token ids per row through ``model`` in pieces of ``piece``, carrying its cache.

    Token ids are drawn per piece (nothing of length ``tokens`` is ever allocated). Only the last
    position's logits are computed unless ``all_logits``. With ``trim`` the allocator's free pages
    are returned after each piece before the resident memory is read (see :class:`StreamResult`).
    ``progress(done, seconds, resident_mib)`` is called after every piece when given. On a CUDA
    ``device`` (where the model already is) each piece is synchronised before it is timed and the
    allocated device memory is tracked as well; ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs
    the pieces under autocast (the memory state stays float32).
    """
    import torch

    from ..models import TitansCache

    if tokens < 1 or piece < 1 or batch < 1:
        raise ValueError(f"tokens, piece and batch must be >= 1, got {tokens}, {piece}, {batch}")
    device = resolve_device(str(device))
    cuda = device.type == "cuda"
    device_mib: list[float] = []
    device_peak = 0.0
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    cache, done = TitansCache(), 0  # updated in place by every piece
    samples: list[tuple[int, float, float, float]] = []
    peaks: list[int] = []
    trimmed = trim and release_free_memory()
    rss_start = rss_kib()
    first_piece_s = 0.0
    start = time.perf_counter()
    with _Sampler(sample_interval) as sampler:
        while done < tokens:
            n = min(piece, tokens - done)
            ids = torch.randint(0, vocab, (batch, n), generator=gen).to(device)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            with torch.no_grad(), autocast_context(device, autocast_dtype):
                out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=0 if all_logits else 1)
            done += n
            del out, ids
            if cuda:
                torch.cuda.synchronize(device)
                device_mib.append(torch.cuda.memory_allocated(device) / 2**20)
                device_peak = max(device_peak, torch.cuda.max_memory_allocated(device) / 2**20)
            raw = rss_kib()
            resident = rss_kib() if trimmed and release_free_memory() else raw
            now = time.perf_counter() - start
            peaks.append(max(sampler.peak, raw))
            sampler.reset(resident)
            if not samples:
                first_piece_s = now
            samples.append((done, now, resident / 1024, raw / 1024))
            if progress is not None:
                progress(done, now, resident / 1024)
        seconds = time.perf_counter() - start
    first = samples[0][2]
    later = samples[1:] or samples
    top = max(s[2] for s in later)
    half = len(peaks) // 2
    rest_tokens = (tokens - samples[0][0]) * batch
    growth = (top - first) / first
    device_growth = (max(device_mib[1:] or device_mib) - device_mib[0]) / max(device_mib[0], 1e-9) if cuda else None
    flat = growth <= max_growth and (device_growth is None or device_growth <= max_growth)
    return StreamResult(
        tokens=tokens, piece=piece, batch=batch, trimmed=trimmed, seconds=seconds,
        tokens_per_s=tokens * batch / seconds,
        tokens_per_s_after_first=rest_tokens / (seconds - first_piece_s) if rest_tokens else float("nan"),
        rss_start_mib=rss_start / 1024, rss_after_first_mib=first, rss_end_mib=samples[-1][2],
        rss_max_after_first_mib=top, growth=growth, max_growth=max_growth, flat=flat,
        slope_kib_per_1k_tokens=_slope(samples, piece), raw_max_after_first_mib=max(s[3] for s in later),
        peak_first_half_mib=max(peaks[1:half] or peaks[:1]) / 1024,
        peak_second_half_mib=max(peaks[max(half, 1):] or peaks) / 1024, samples=samples, device=str(device),
        device_samples_mib=device_mib, device_growth=device_growth, device_peak_mib=device_peak if cuda else None)


def add_stream_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``titanmem bench stream`` (also used by ``benchmarks/bench_stream.py``)."""
    parser.add_argument("--tokens", type=positive_int, default=2_000_000,
                        help="tokens per sequence (default 2,000,000)")
    parser.add_argument("--piece", type=positive_int, default=4096, help="tokens per forward call (default 4096)")
    parser.add_argument("--batch", type=positive_int, default=1, help="sequences streamed side by side (default 1)")
    parser.add_argument("--preset", default="tiny", help="TitansConfig preset (default tiny: 4 layers, width 128)")
    parser.add_argument("--variant", default="mac", choices=VARIANTS, help="architecture (default mac)")
    parser.add_argument("--hidden-size", type=positive_int, default=None,
                        help="override the preset's width (default: the preset's)")
    parser.add_argument("--layers", type=positive_int, default=None,
                        help="override the preset's number of layers (default: the preset's)")
    parser.add_argument("--heads", type=positive_int, default=None,
                        help="override the preset's number of heads (default: the preset's)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--bf16", action="store_true", help="run the pieces under bfloat16 autocast (default: float32)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the weights and the token ids (default 0)")
    parser.add_argument("--max-growth", type=nonneg_float, default=0.05,
                        help="allowed RSS growth after the first piece, as a fraction (default 0.05)")
    parser.add_argument("--sample-interval", type=nonneg_float, default=0.25,
                        help="seconds between background RSS samples (0: after each piece only; default 0.25)")
    parser.add_argument("--no-trim", action="store_true",
                        help="read the raw RSS after each piece, without returning the allocator's free pages first "
                             "(default: return them, glibc malloc_trim)")
    parser.add_argument("--all-logits", action="store_true",
                        help="compute the logits of every position (default: the last only)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the result (with every sample) here (default: not written)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines (default: about 20 of them)")
    return parser


def run_stream(args: argparse.Namespace) -> int:
    """Run the streaming benchmark described by ``args``; 0 when the memory stayed flat, 1 otherwise.

    A bad ``--device``, ``--preset`` or size raises :class:`~titanmem.cli_args.CommandError` (a ``ValueError``),
    which ``titanmem`` prints as one line."""
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in (("hidden_size", args.hidden_size), ("num_hidden_layers", args.layers),
                                   ("num_attention_heads", args.heads)) if v is not None}
    if "hidden_size" in overrides and "intermediate_size" not in overrides:
        overrides["intermediate_size"] = 3 * overrides["hidden_size"]
    try:  # --device, --preset and the size overrides are checked here, by the code that uses them
        device = resolve_device(args.device)
        model = build_stream_model(args.preset, args.variant, args.seed, **overrides).to(device)
    except (ValueError, TypeError) as err:
        raise CommandError(str(err)) from err
    params = sum(p.numel() for p in model.parameters())
    print(f"stream: {args.variant} ({args.preset}{', ' + str(overrides) if overrides else ''}, {params:,} parameters), "
          f"{args.tokens:,} tokens x batch {args.batch} in pieces of {args.piece}, "
          f"on {device}{' (bf16 autocast)' if args.bf16 else ''}, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}", flush=True)
    every = max(1, args.tokens // args.piece // 20)
    count = [0]

    def progress(done: int, seconds: float, rss: float) -> None:
        count[0] += 1
        if not args.quiet and (count[0] % every == 0 or done == args.tokens):
            print(f"  {done:>12,} tokens  {seconds:8.1f} s  {done * args.batch / seconds:>10,.0f} tokens/s  "
                  f"RSS {rss:,.1f} MiB", flush=True)

    result = stream_tokens(model, args.tokens, piece=args.piece, batch=args.batch, seed=args.seed,
                           max_growth=args.max_growth, sample_interval=args.sample_interval,
                           trim=not args.no_trim, all_logits=args.all_logits, progress=progress, device=device,
                           autocast_dtype=torch.bfloat16 if args.bf16 else None)
    print(result.summary(), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"variant": args.variant, "preset": args.preset, "bf16": args.bf16, "overrides": overrides, "parameters": params,
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "pid": os.getpid(),
                  **asdict(result)}
        args.json.write_text(json.dumps(record, indent=2))
    return 0 if result.flat else 1
