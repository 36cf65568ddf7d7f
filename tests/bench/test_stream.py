"""The streaming benchmark: 100K tokens through a small model keep the resident memory flat, and
the measurement does catch a model whose memory grows with the tokens it has seen."""

from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

import pytest
import torch

from titanmem.bench import add_stream_arguments, run_stream, stream_tokens


def _args(*argv: str) -> argparse.Namespace:
    return add_stream_arguments(argparse.ArgumentParser()).parse_args(list(argv))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident memory read from /proc, trimmed with glibc")
def test_stream_100k_tokens_memory_stays_flat(tmp_path, capsys):
    # MAL: a memory layer and a sliding-window attention cache in every block, the two kinds of state.
    out = tmp_path / "stream.json"
    code = run_stream(_args("--tokens", "100000", "--piece", "4096", "--variant", "mal", "--hidden-size", "64",
                            "--layers", "2", "--json", str(out), "--quiet"))
    record = json.loads(out.read_text())
    assert code == 0, capsys.readouterr().out
    assert record["flat"] and record["growth"] <= 0.05
    assert record["tokens"] == 100_000 and record["samples"][-1][0] == 100_000
    assert len(record["samples"]) == 25  # 24 pieces of 4096 and one of 1696
    # A state that grew by even 64 bytes per token would add ~6 MiB over the stream: the slope
    # of the resident memory over the second half stays far below that.
    assert abs(record["slope_kib_per_1k_tokens"]) < 64
    assert record["tokens_per_s"] > 0


class _LeakyModel(torch.nn.Module):
    """Keeps 4 KiB per token it has seen, like a cache that is never bounded."""

    config = SimpleNamespace(vocab_size=256)

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[torch.Tensor] = []

    def forward(self, input_ids, cache, use_cache=True, logits_to_keep=0):
        self.kept.append(torch.ones(input_ids.shape[1], 1024))
        return SimpleNamespace()


def test_stream_measurement_catches_growing_memory():
    result = stream_tokens(_LeakyModel(), tokens=40 * 1024, piece=1024, sample_interval=0)
    # 40 MiB kept over the stream, on top of a few hundred MiB of interpreter and libraries.
    assert not result.flat and result.growth > 0.05
    assert 3000 < result.slope_kib_per_1k_tokens < 5000  # 4 KiB per token = 4096 KiB per 1K tokens


def test_stream_device_errors_name_the_device():
    from titanmem.bench import resolve_device

    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda'.*is_available"):
            run_stream(_args("--tokens", "10", "--device", "cuda", "--quiet"))


def test_stream_bf16_autocast_on_cpu(tmp_path):
    out = tmp_path / "stream.json"
    run_stream(_args("--tokens", "1500", "--piece", "512", "--variant", "mag", "--hidden-size", "32",
                     "--layers", "1", "--bf16", "--json", str(out), "--quiet", "--sample-interval", "0"))
    record = json.loads(out.read_text())
    assert record["bf16"] and record["device"] == "cpu" and record["device_growth"] is None
    assert [s[0] for s in record["samples"]] == [512, 1024, 1500]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs where one is present)")
def test_stream_on_cuda_tracks_device_memory(tmp_path):
    out = tmp_path / "stream.json"
    code = run_stream(_args("--tokens", "50000", "--piece", "4096", "--variant", "mal", "--device", "cuda",
                            "--json", str(out), "--quiet"))
    record = json.loads(out.read_text())
    assert code == 0 and record["device"].startswith("cuda")
    assert len(record["device_samples_mib"]) == len(record["samples"])
    assert record["device_growth"] <= 0.05
