"""Train and evaluate a few-shot model on Omniglot episodes (``titanmem fewshot train|eval``).

Training runs through the library's one loop (:func:`titanmem.train.loop.train_steps`) with its
optimizer and schedule (:mod:`titanmem.train.optim`): each step draws ``batch_size`` episodes from
the training characters, each with a number of classes C from ``classes`` and a memory size from
``memory_sizes`` (one pair per step, drawn by the job's seed), dynamically binarised, and maximises
the ``samples``-sample importance-weighted bound (VIMCO for VMA's and VSM's address). Checkpoints
use the library's format (:mod:`titanmem.train.checkpoint`: safetensors weights, a manifest with
SHA-256, written atomically) and hold what resuming needs.

Evaluation draws a fixed set of episodes from the test characters (alphabets never seen in
training), binarised once with a fixed seed, and reports for each (C, memory size) the negative
bound in nats with ``samples`` importance samples (1,000 as in VMA's Table 1), and, for models with
an address, how often ``q(a | M, x)`` puts most mass on an entry of the query's class and
``KL(q(a | M, x) || p(a | M))``, the information gained from memory (at most ``log |M|``).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checks import check_int, check_real
from ..train.checkpoint import find_resumable, load_checkpoint, prune_checkpoints, save_checkpoint
from ..train.config import OptimConfig, ScheduleConfig
from ..train.loop import StepRecord, train_steps
from ..train.optim import build_optimizer, build_scheduler
from .episodes import EpisodeBatch, EpisodeSampler
from .models import MODELS, FewShotConfig, FewShotModel, build_model
from .omniglot import DEFAULT_SOURCES, DEFAULT_TEST_ALPHABETS, Omniglot, load_omniglot, split_by_alphabet

__all__ = ["FewShotJob", "evaluate", "evaluate_one_shot", "load_model", "load_splits", "train_fewshot", "write_json"]


@dataclass(frozen=True)
class FewShotJob:
    """One training run. ``model_config`` holds :class:`FewShotConfig` fields (the rest take their defaults)."""

    model: str = "vma"
    data: tuple[str, ...] = tuple(str(p) for p in DEFAULT_SOURCES)
    test_alphabets: tuple[str, ...] = DEFAULT_TEST_ALPHABETS
    classes: tuple[int, ...] = (1, 2)
    memory_sizes: tuple[int, ...] = (1, 2, 3, 4, 5, 10, 19)
    steps: int = 2000
    batch_size: int = 32
    samples: int = 4
    lr: float = 1e-3
    warmup_steps: int = 100
    grad_clip: float = 10.0
    seed: int = 0
    checkpoint_every: int = 500
    model_config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        for name in ("steps", "batch_size", "samples", "checkpoint_every"):
            check_int(name, getattr(self, name), 1)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_int("seed", self.seed, 0)
        check_real("lr", self.lr, 0.0, low_open=True)
        check_real("grad_clip", self.grad_clip, 0.0)
        if self.model in ("vma", "vsm") and self.samples < 2:
            raise ValueError(f"samples must be >= 2 for {self.model} (VIMCO's baseline needs another sample), "
                             f"got {self.samples}")
        for name in ("classes", "memory_sizes"):
            values = getattr(self, name)
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name} must be a non-empty list of ints >= 1, got {values!r}")
        if not any(c <= m for c in self.classes for m in self.memory_sizes):
            raise ValueError(f"no pair of classes {list(self.classes)} and memory_sizes {list(self.memory_sizes)} "
                             f"has classes <= memory size")
        self.config()  # unknown or bad model fields fail here, before any data is read

    def config(self) -> FewShotConfig:
        known = {f.name for f in fields(FewShotConfig)}
        unknown = sorted(set(self.model_config) - known)
        if unknown:
            raise ValueError(f"model_config has unknown field(s) {unknown}; known: {sorted(known)}")
        return FewShotConfig(**self.model_config)

    def to_dict(self) -> dict:
        return asdict(self)


def load_splits(data: tuple[str, ...] | list[str], test_alphabets: tuple[str, ...], image_size: int
                ) -> tuple[Omniglot, Omniglot]:
    """``(train, test)`` characters of the Omniglot ``data`` sources, the test split holding ``test_alphabets``."""
    return split_by_alphabet(load_omniglot(list(data), image_size=image_size), test_alphabets)


def _batches(job: FewShotJob, train: Omniglot, state: dict | None):
    """Endless training batches; each step's (C, memory size) drawn by the job's seed. Returns the
    iterator and a function giving the state to store in a checkpoint."""
    pairs = [(c, m) for c in job.classes for m in job.memory_sizes if c <= m]
    samplers = {pair: EpisodeSampler(train, *pair, binarize="dynamic", seed=job.seed * 1000 + i)
                for i, pair in enumerate(pairs)}
    rng = np.random.default_rng(job.seed)
    if state is not None:
        rng.bit_generator.state = state["rng"]
        for pair, sampler in samplers.items():
            sampler.load_state_dict(state["samplers"][str(pair)])

    def snapshot() -> dict:
        return {"rng": rng.bit_generator.state, "samplers": {str(p): s.state_dict() for p, s in samplers.items()}}

    def endless():
        while True:
            yield samplers[pairs[int(rng.integers(len(pairs)))]].sample(job.batch_size)

    return endless(), snapshot


def _negative_bound(samples: int):
    def loss(model: FewShotModel, batch: EpisodeBatch) -> torch.Tensor:
        return -model.surrogate(batch.memory, batch.query, samples).mean()

    return loss


def train_fewshot(job: FewShotJob, out: str | os.PathLike, progress: bool = True, resume: bool = False,
                  splits: tuple[Omniglot, Omniglot] | None = None) -> tuple[FewShotModel, list[dict]]:
    """Train ``job`` and write checkpoints under ``out/checkpoints``; returns the model and the loss history.

    ``history`` holds, every 10 steps and at the last, the mean training loss (negative bound, nats)
    since the previous entry. With ``resume``, the newest good checkpoint under ``out`` continues.

    Raises:
        FloatingPointError: the loss stops being finite.
        CheckpointError: ``resume`` and no checkpoint verifies.
    """
    out = Path(out)
    config = job.config()
    train, _ = splits if splits is not None else load_splits(job.data, job.test_alphabets, config.image_size)
    random.seed(job.seed)
    torch.manual_seed(job.seed)
    model = build_model(job.model, config)
    optim_cfg = OptimConfig(lr=job.lr, beta2=0.999, weight_decay=0.0, grad_clip=job.grad_clip)
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_scheduler(optimizer, ScheduleConfig(steps=job.steps, warmup_steps=min(job.warmup_steps, job.steps),
                                                          min_lr_ratio=0.1))
    start, state, history = 0, None, []
    checkpoints = out / "checkpoints"
    if resume:
        found = find_resumable(checkpoints)
        if found is not None:
            saved = load_checkpoint(found)
            model.load_state_dict(saved["weights"])
            optimizer.load_state_dict(saved["trainer"]["optimizer"])
            scheduler.load_state_dict(saved["trainer"]["scheduler"])
            torch.set_rng_state(saved["trainer"]["torch_rng"])
            start, state, history = saved["step"], saved["trainer"]["batches"], saved["trainer"]["history"]
    batches, snapshot = _batches(job, train, state)
    bar = tqdm(total=job.steps, initial=start, desc=f"fewshot {job.model}", disable=not progress)
    window: list[torch.Tensor] = []
    began = time.perf_counter()

    def save(step: int) -> None:
        trainer = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "batches": snapshot(),
                   "torch_rng": torch.get_rng_state(), "history": history}
        save_checkpoint(checkpoints, step, model.state_dict(), trainer, {"model": job.model, **config.to_dict()},
                        job.to_dict())
        prune_checkpoints(checkpoints, keep=2)

    def on_step(record: StepRecord) -> None:
        window.append(record.loss_sum)
        bar.update(1)
        if record.step % 10 == 0 or record.step == job.steps:
            loss = float(torch.stack(window).mean())
            window.clear()
            if not math.isfinite(loss):
                raise FloatingPointError(f"the training loss is not finite ({loss}) by step {record.step}")
            history.append({"step": record.step, "loss": loss, "lr": record.lr,
                            "seconds": round(time.perf_counter() - began, 2)})
            bar.set_postfix(nll=f"{loss:.2f}")
        if record.step % job.checkpoint_every == 0 or record.step == job.steps:
            save(record.step)

    train_steps(model, optimizer, scheduler, batches, _negative_bound(job.samples), steps=job.steps, start=start,
                grad_clip=job.grad_clip, on_step=on_step)
    bar.close()
    model.eval()
    return model, history


def load_model(checkpoint: str | os.PathLike) -> tuple[FewShotModel, dict]:
    """The model of a checkpoint folder (``out/checkpoints/step_*``) or of a run folder (its newest checkpoint),
    and the job it was trained with.

    Raises:
        CheckpointError: nothing verifies there. FileNotFoundError: the path does not exist.
    """
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not (path / "manifest.json").exists():
        found = find_resumable(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
        if found is None:
            raise FileNotFoundError(f"checkpoint: no checkpoint under {str(path)!r}")
        path = found
    saved = load_checkpoint(path)
    fields_ = dict(saved["model_config"])
    name = fields_.pop("model")
    model = build_model(name, FewShotConfig(**fields_))
    model.load_state_dict(saved["weights"])
    model.eval()
    return model, saved["job"]


@torch.no_grad()
def evaluate(model: FewShotModel, data: Omniglot, classes: int, memory_size: int, episodes: int = 200,
             samples: int = 1000, chunk: int = 250, batch_size: int = 50, seed: int = 1234) -> dict:
    """Held-out bound and addressing of ``model`` on ``episodes`` fixed episodes of ``data``.

    Returns:
        ``{"classes", "memory_size", "episodes", "samples", "nll", "nll_stderr"}`` (the negative
        ``samples``-sample bound, nats per image, and its standard error over episodes), plus, for
        models with ``address_posterior``, ``"address_accuracy"`` (argmax of q(a | M, x) on an entry
        of the query's class) and ``"address_kl"`` (mean KL(q(a | M, x) || uniform), nats).

    Raises:
        ValueError: bad counts, or an episode layout the data cannot give.
    """
    check_int("episodes", episodes, 1)
    check_int("batch_size", batch_size, 1)
    sampler = EpisodeSampler(data, classes, memory_size, binarize="fixed", seed=seed, binarize_seed=seed)
    state = torch.get_rng_state()
    torch.manual_seed(seed)  # the importance samples too: the same model gives the same numbers
    model.eval()
    bounds, right, kl = [], 0, []
    done = 0
    while done < episodes:
        batch = sampler.sample(min(batch_size, episodes - done))
        bounds.append(model.bound(batch.memory, batch.query, samples=samples, chunk=chunk))
        if hasattr(model, "address_posterior"):
            q = model.address_posterior(batch.memory, batch.query)
            picked = batch.memory_labels.gather(1, q.argmax(-1, keepdim=True)).squeeze(1)
            right += int((picked == batch.query_label).sum())
            kl.append((q * torch.log(q.clamp_min(1e-30))).sum(-1) + math.log(memory_size))
        done += batch.query.shape[0]
    torch.set_rng_state(state)
    nll = -torch.cat(bounds).double()
    result = {"classes": classes, "memory_size": memory_size, "episodes": episodes, "samples": samples,
              "nll": float(nll.mean()), "nll_stderr": float(nll.std() / math.sqrt(episodes)) if episodes > 1 else 0.0}
    if kl:
        result["address_accuracy"] = right / episodes
        result["address_kl"] = float(torch.cat(kl).mean())
    return result


@torch.no_grad()
def evaluate_one_shot(model: FewShotModel, runs: list[dict[str, torch.Tensor]], samples: int = 1000, chunk: int = 250,
                      seed: int = 1234) -> dict:
    """The 20 one-shot runs of Lake et al. (characters of the evaluation alphabets) as 400 episodes.

    Each test drawing is a query whose memory holds the run's 20 training drawings, one per character
    (C = 20, memory size 20); images are binarised once with ``seed``. Returns ``{"episodes", "samples",
    "nll", "nll_stderr"}`` and, for models with ``address_posterior``, ``"address_accuracy"``: how often
    the argmax of q(a | M, x) is the query's character, i.e. 20-way one-shot classification by the
    address posterior (chance 0.05), and ``"address_kl"``.
    """
    state = torch.get_rng_state()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.eval()
    bounds, right, kl = [], 0, []
    for run in runs:
        memory = torch.bernoulli(run["training"], generator=generator).unsqueeze(0).expand(run["test"].shape[0], -1, -1, -1)
        query = torch.bernoulli(run["test"], generator=generator)
        bounds.append(model.bound(memory, query, samples=samples, chunk=chunk))
        if hasattr(model, "address_posterior"):
            q = model.address_posterior(memory, query)
            right += int((q.argmax(-1) == run["answer"]).sum())
            kl.append((q * torch.log(q.clamp_min(1e-30))).sum(-1) + math.log(memory.shape[1]))
    torch.set_rng_state(state)
    nll = -torch.cat(bounds).double()
    result = {"episodes": int(nll.numel()), "samples": samples, "nll": float(nll.mean()),
              "nll_stderr": float(nll.std() / math.sqrt(nll.numel()))}
    if kl:
        result["address_accuracy"] = right / nll.numel()
        result["address_kl"] = float(torch.cat(kl).mean())
    return result


def write_json(data: object, path: str | os.PathLike) -> None:
    """Write ``data`` as JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
