"""Benchmarks that ship with the package (``titanmem bench ...``); the sweeps live in ``benchmarks/``."""

from .stream import (
    StreamResult,
    add_stream_arguments,
    build_stream_model,
    release_free_memory,
    resolve_device,
    rss_kib,
    run_stream,
    stream_tokens,
)

__all__ = [
    "StreamResult", "add_stream_arguments", "build_stream_model", "release_free_memory", "resolve_device", "rss_kib",
    "run_stream", "stream_tokens",
]
