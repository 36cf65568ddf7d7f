"""Matmul FLOPs per token of titanmem's NeuralMemory and of titans-pytorch's, counted, not timed.

Explains the forward+backward gap in ``compare_peers.py``: each layer runs once on the same input
under ``torch.utils.flop_counter.FlopCounterMode`` (forward, then forward + backward of
``mean(y^2)``), which counts every matmul the layer actually executes, titanmem's recomputation in
the backward pass included. Elementwise work is not counted. The op's analytic count
(``bench_op.chunk_flops``) is printed beside the counted one as a check.

    /work/benchvenv/bin/python benchmarks/flop_model.py [--length 1024] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_op import chunk_flops  # noqa: E402
from compare_peers import IMPLS, MEMORY_EXPANSION, SIZES, build_module  # noqa: E402


PEER = "titans-pytorch"


def counted_flops(impl: str, size: str, length: int, backward: bool) -> int:
    """Matmul FLOPs of one call of the layer on ``[1, length, dim]`` (and its backward)."""
    torch.manual_seed(0)
    module = build_module(impl, SIZES[size], 64)
    x = torch.randn(1, length, SIZES[size]["dim"], requires_grad=True)
    # Grad mode on in both counts: the counter's module hooks need outputs with a grad_fn, and the
    # forward runs the same matmuls either way.
    with FlopCounterMode(display=False) as counter:
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        if backward:
            out.square().mean().backward()
    return counter.get_total_flops()


def table(size: str, length: int, impls: list[str]) -> str:
    """Markdown table of counted FLOPs per token (whole layer: projections and memory)."""
    counts = {impl: [counted_flops(impl, size, length, b) / length for b in (False, True)] for impl in impls}
    head_dim = SIZES[size]["head_dim"]
    dims = [head_dim, head_dim * MEMORY_EXPANSION, head_dim]
    heads = SIZES[size]["heads"]
    out = [
        f"size {size} ({SIZES[size]}), T = {length}, batch 1; matmul FLOPs per token of the whole layer",
        "",
        "| implementation | forward | forward+backward | backward / forward | fwd / peer | fwd+bwd / peer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    peer = counts.get(PEER)
    for impl, (fwd, both) in counts.items():
        ratios = f" {fwd / peer[0]:.2f}x | {both / peer[1]:.2f}x |" if peer else " - | - |"
        out.append(f"| {impl} | {fwd / 1e6:.2f} M | {both / 1e6:.2f} M | {(both - fwd) / fwd:.2f} |{ratios}")
    out += [
        "",
        f"Op alone, analytic (`bench_op.chunk_flops`, {heads} heads): forward "
        f"{heads * chunk_flops(64, dims, 'token') / 64 / 1e6:.2f} M per token (read=token), "
        f"{heads * chunk_flops(64, dims, 'chunk') / 64 / 1e6:.2f} M (read=chunk).",
    ]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=sorted(SIZES))
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=["titanmem", "titans-pytorch", "titanmem-chunkread"])
    p.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = p.parse_args()
    text = "\n\n".join(table(size, args.length, args.impls) for size in args.sizes)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
