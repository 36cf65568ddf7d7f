"""Small jobs for the training tests: the repository's tiny configs, shrunk so a step takes milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from titanmem.train import JobConfig, load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

# A 2-block model of width 32: the same code paths as the tiny preset at a fraction of the cost.
SHRINK = ["--model.hidden_size=32", "--model.num_hidden_layers=2", "--model.num_attention_heads=2",
          "--model.intermediate_size=64", "--model.chunk_size=8", "--model.segment_size=8", "--model.window=8",
          "--model.n_persistent=2"]


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """A small text corpus (12 documents of a few KB, with structure a model can pick up quickly)."""
    root = tmp_path_factory.mktemp("corpus")
    words = "the memory learns what surprises it and forgets what it no longer needs".split()
    for d in range(12):
        lines = [" ".join(words[(i + d) % len(words):] + words[:(i + d) % len(words)]) for i in range(40)]
        (root / f"doc{d:02d}.txt").write_text("\n".join(lines) + "\n")
    return root


def small_job(tmp_path: Path, variant: str = "lmm", *overrides: str, corpus: Path | None = None) -> JobConfig:
    """configs/tiny/<variant>.toml, shrunk, on ``corpus`` (a text folder) or Shakespeare, writing under tmp_path."""
    data = (["--data.corpus=text", f"--data.corpus_path={corpus}", "--data.val_fraction=0.2"]
            if corpus is not None else [])
    args = [*SHRINK, *data, f"--out_dir={tmp_path / 'run'}", f"--data.data_dir={tmp_path / 'data'}",
            "--data.seq_len=32", "--data.batch_size=4", "--schedule.steps=8", "--schedule.warmup_steps=2",
            "--log.every=1", "--log.progress=false", "--log.plot=false", "--eval.tokens=512", "--eval.every=4",
            "--checkpoint.every=4", "--run.device=cpu", *overrides]
    return load_config(CONFIGS / "tiny" / f"{variant}.toml", args)
