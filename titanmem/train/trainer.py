"""The training loop: data, model, optimizer, validation, metrics and checkpoints for one job.

One function, :func:`train`, runs a :class:`~titanmem.train.config.JobConfig` alone or under
``torchrun``. Resuming restores weights, optimizer, schedule, data position and RNG states, so on the
CPU the losses after a resume are bit-identical to those of a run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import BatchLoader, TokenDataset, get_tokenizer, prepare_dataset
from ..devices import prepare_cpu
from ..models import TitansCache, TitansConfig, TitansForCausalLM
from .checkpoint import find_resumable, list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint
from .config import JobConfig
from .loop import StepRecord, train_steps
from .distributed import (
    DistInfo, all_reduce_sum, full_optimizer_state, load_optimizer_state, setup_distributed,
    teardown_distributed, wrap_model,
)
from .metrics import MetricsWriter, plot_curves
from .optim import build_optimizer, build_scheduler
from .validate import ValidationResult, validate
from .weights import load_weights, weights_to_save

__all__ = [
    "CarriedStates", "TrainResult", "build_model_config", "detach_state", "lm_loss", "map_state_tensors", "prepare_job_data",
    "reverse_complement_rows", "train",
]


@dataclass
class TrainResult:
    """What a run did: per-step training losses (mean over processes) and the last validation."""

    out_dir: Path
    start_step: int
    steps: int
    tokens: int
    elapsed_s: float
    losses: list[float] = field(default_factory=list)
    validation: ValidationResult | None = None
    parameters: int = 0
    skipped_steps: list[int] = field(default_factory=list)


def build_model_config(cfg: JobConfig, vocab_size: int) -> TitansConfig:
    """The model's config: the preset, the variant, the ``[model]`` fields, and the tokenizer's vocabulary."""
    fields = dict(cfg.model.fields)
    fields.setdefault("vocab_size", vocab_size)
    if fields["vocab_size"] < vocab_size:
        raise ValueError(f"model.vocab_size must be >= the tokenizer's vocabulary ({vocab_size}), "
                         f"got {fields['vocab_size']}")
    return TitansConfig.from_preset(cfg.model.preset, variant=cfg.model.variant, **fields)


def prepare_job_data(cfg: JobConfig, progress: bool = True) -> Path:
    """Tokenize the job's corpus into its data folder (once: later calls return at once); the folder."""
    tokenizer = get_tokenizer(cfg.data.tokenizer, cfg.data.tokenizer_cache)
    return prepare_dataset(cfg.resolved_data_dir(), cfg.data.corpus, tokenizer.name, corpus_path=cfg.data.corpus_path,
                           val_fraction=cfg.data.val_fraction, seed=cfg.data.split_seed, progress=progress)


def map_state_tensors(state: Any, fn: Any) -> Any:
    """``state`` (a block state: tensors in dataclasses, tuples, lists, dicts) with ``fn`` applied to every tensor."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return dataclasses.replace(state, **{f.name: map_state_tensors(getattr(state, f.name), fn)
                                             for f in dataclasses.fields(state) if f.init})
    if isinstance(state, (list, tuple)):
        return type(state)(map_state_tensors(s, fn) for s in state)
    if isinstance(state, dict):
        return {k: map_state_tensors(v, fn) for k, v in state.items()}
    return state


def detach_state(state: Any) -> Any:
    """A block state with every tensor detached (truncated backprop between sequences)."""
    return map_state_tensors(state, torch.Tensor.detach)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather_states(cache: TitansCache | None, info: DistInfo) -> list[Any] | None:
    """Every process's carried block states (truncated backprop), gathered for the checkpoint."""
    # On the CPU: the checkpoint is written from there, and gathering objects needs no device.
    local = None if cache is None else {"states": map_state_tensors(cache.states, lambda t: t.detach().cpu()),
                                        "seen": cache.seen_tokens}
    if not info.distributed:
        return [local]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, local)
    return gathered


def _restore_cache(saved: list[Any] | None, info: DistInfo) -> TitansCache | None:
    """This process's carried block states from a checkpoint (loaded on the CPU), on the training device."""
    if not saved or saved[info.rank] is None:
        return None
    cache = TitansCache()
    cache.states = {int(k): map_state_tensors(v, lambda t: t.detach().to(info.device))
                    for k, v in saved[info.rank]["states"].items()}
    cache.seen_tokens = saved[info.rank]["seen"]
    return cache


def _check_same_model(saved: dict[str, Any], config: TitansConfig, source: Path) -> None:
    current = json.loads(json.dumps(config.to_dict()))  # as the checkpoint stored it (JSON keys are strings)
    diffs = sorted(k for k in set(saved) | set(current)
                   if k not in ("transformers_version", "architectures") and saved.get(k) != current.get(k))
    if diffs:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs config {current.get(k)!r}" for k in diffs)
        raise ValueError(f"cannot resume from {str(source)!r}: the model config differs ({detail})")


class _Run:
    """The objects of one training run; methods are the loop's steps."""

    def __init__(self, cfg: JobConfig, info: DistInfo) -> None:
        self.cfg, self.info = cfg, info
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        data_dir = cfg.resolved_data_dir()
        if info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            prepare_job_data(cfg, progress=cfg.log.progress)
        if info.distributed:
            dist.barrier()
        self.data = TokenDataset(data_dir)
        if self.data.meta["splits"]["val"]["tokens"] == 0:
            raise ValueError(f"data: the validation split of {str(data_dir)!r} is empty; the corpus needs at least two "
                             "documents (data.val_fraction splits whole documents)")
        torch.manual_seed(cfg.run.seed)  # identical initial weights on every process and in every run
        self.model_config = build_model_config(cfg, self.data.vocab_size)
        self.model = TitansForCausalLM(self.model_config)
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.autocast = torch.bfloat16 if cfg.run.precision == "bf16" else None

    def tokens_per_step(self) -> int:
        c = self.cfg
        return c.optim.grad_accum * c.data.batch_size * self.info.world_size * c.data.seq_len


class CarriedStates:
    """The block states carried from batch to batch under truncated backprop (``run.tbptt``)."""

    def __init__(self, cache: TitansCache | None) -> None:
        self.cache = cache


def lm_loss(model: nn.Module, batch: torch.Tensor, carried: CarriedStates | None = None) -> torch.Tensor:
    """Next-token cross-entropy (nats per token) of ``batch [B, T + 1]``: inputs ``[:, :-1]``, targets ``[:, 1:]``.

    With ``carried`` (truncated backprop) the forward continues the states in ``carried.cache`` and
    leaves them there detached: the next batch starts where this one stopped, without a graph into it.
    """
    if carried is None:
        logits = model(input_ids=batch[:, :-1], use_cache=False).logits
    else:
        carried.cache = carried.cache if carried.cache is not None else TitansCache()
        logits = model(input_ids=batch[:, :-1], cache=carried.cache, use_cache=True).logits
        # This loss's graph is held by the logits; the stored states need none.
        carried.cache.states = {i: detach_state(st) for i, st in carried.cache.states.items()}
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def reverse_complement_rows(batch: torch.Tensor, complement: torch.Tensor) -> torch.Tensor:
    """``batch [B, T]`` of nucleotide ids with each row, with probability 1/2, read from the other strand.

    A flipped row is reversed and mapped through ``complement`` (``table[i]`` = the pairing base's id).
    The draw uses torch's global generator, whose state the checkpoints keep, so a resumed run flips
    the same rows.
    """
    flip = torch.rand(batch.shape[0]) < 0.5
    out = batch.clone()
    out[flip] = complement[batch[flip].flip(-1)].to(batch.dtype)
    return out


def _log(info: DistInfo, message: str) -> None:
    if info.is_main:
        tqdm.write(message)


def train(cfg: JobConfig, *, resume: bool | str | Path = False, stop_at: int | None = None) -> TrainResult:
    """Run job ``cfg`` to ``schedule.steps`` optimizer steps and return what happened.

    ``resume``: True continues from the newest good checkpoint in ``<out_dir>/checkpoints`` (a fresh
    start if there is none); a path continues from that checkpoint. ``stop_at``: return after that
    many steps without the final validation and checkpoint, as a killed run would (for tests).
    """
    info = setup_distributed(cfg.run.device)
    try:
        return _train(cfg, info, resume, stop_at)
    finally:
        teardown_distributed()


def _train(cfg: JobConfig, info: DistInfo, resume: bool | str | Path, stop_at: int | None) -> TrainResult:
    prepare_cpu(cfg.run.threads)
    run = _Run(cfg, info)
    model = run.model
    start_step, checkpoint = 0, None
    carried = CarriedStates(None)
    if resume:
        path = find_resumable(run.ckpt_dir) if resume is True else Path(resume)
        if path is None:
            _log(info, f"no checkpoint in {run.ckpt_dir}: starting from scratch")
        else:
            checkpoint = load_checkpoint(path)
            _check_same_model(checkpoint["model_config"], run.model_config, path)
            load_weights(model, checkpoint["weights"], path)
            start_step = checkpoint["step"]
            _log(info, f"resuming from {path} at step {start_step}")
    elif list_checkpoints(run.ckpt_dir):
        newest = list_checkpoints(run.ckpt_dir)[0].name
        raise ValueError(f"out_dir {str(run.out_dir)!r} already has checkpoints ({newest}): pass --resume to continue "
                         "that run, or choose another out_dir")
    model.to(info.device)
    wrapped = wrap_model(model, info, cfg.run.distributed)
    optimizer = build_optimizer(wrapped, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    loader = BatchLoader(run.data.split("train"), cfg.data.batch_size, cfg.data.seq_len, mode=cfg.data.sampling,
                         seed=cfg.run.seed, rank=info.rank, world_size=info.world_size)
    if checkpoint is not None:
        trainer_state = checkpoint["trainer"]
        load_optimizer_state(wrapped, optimizer, trainer_state["optimizer"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        loader.load_state_dict(trainer_state["loader"])
        _set_rng_state(trainer_state["rng"])
        carried.cache = _restore_cache(trainer_state.get("tbptt_states"), info)
    writer = MetricsWriter(run.out_dir, csv_file=cfg.log.csv, jsonl=cfg.log.jsonl,
                           tensorboard=cfg.log.tensorboard) if info.is_main else None
    if writer is not None:
        writer.truncate_after(start_step)
    val_tokens = run.data.split("val")
    shard_eval = cfg.run.distributed != "fsdp"

    def run_validation() -> ValidationResult:
        # DDP's wrapper syncs buffers on forward; validation needs no collective but the final sum.
        target = wrapped.module if isinstance(wrapped, nn.parallel.DistributedDataParallel) else wrapped
        return validate(target, val_tokens, seq_len=cfg.data.seq_len, batch_size=cfg.eval.batch_size,
                        max_tokens=cfg.eval.tokens, bytes_per_token=run.data.bytes_per_token("val"), info=info,
                        shard=shard_eval, autocast_dtype=run.autocast)

    def save(step: int) -> None:
        weights = weights_to_save(wrapped, run.model_config)
        optim_state = full_optimizer_state(wrapped, optimizer)
        states = _gather_states(carried.cache, info) if cfg.run.tbptt else None
        if info.is_main:
            trainer_state = {"step": step, "optimizer": optim_state, "scheduler": scheduler.state_dict(),
                             "loader": loader.state_dict(), "rng": _rng_state(), "tbptt_states": states}
            save_checkpoint(run.ckpt_dir, step, weights, trainer_state, run.model_config.to_dict(), cfg.to_dict())
            prune_checkpoints(run.ckpt_dir, cfg.checkpoint.keep)
        if info.distributed:
            dist.barrier()

    _log(info, f"{cfg.name}: {cfg.model.variant} ({cfg.model.preset}), {run.parameters:,} parameters, "
               f"{info.world_size} process(es) on {info.device}, {run.tokens_per_step():,} tokens per step")
    result = TrainResult(out_dir=run.out_dir, start_step=start_step, steps=start_step, tokens=0, elapsed_s=0.0,
                         parameters=run.parameters)
    end = cfg.schedule.steps if stop_at is None else min(stop_at, cfg.schedule.steps)
    bar = tqdm(total=cfg.schedule.steps, initial=start_step, disable=not (info.is_main and cfg.log.progress),
               desc=cfg.name, unit="step", dynamic_ncols=True)
    t_start = time.perf_counter()
    clock = {"mark": t_start, "busy": 0.0, "tokens": 0}  # tokens/s counts training time only, not validation
    last: tuple[float | None, ...] = (None, None, None, None)  # loss, lr, grad norm, tokens/s of the last row

    complement = None
    if cfg.data.reverse_complement:
        complement = torch.from_numpy(get_tokenizer(cfg.data.tokenizer).complement_table())

    def batches():
        while True:
            if cfg.run.tbptt and loader.starts_new_pass(loader.step):
                carried.cache = None  # a new pass over the data: the lanes restart, so do their states
            batch = next(loader)
            if complement is not None:
                batch = reverse_complement_rows(batch, complement)
            yield batch.to(info.device)

    def loss_fn(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return lm_loss(model, batch, carried if cfg.run.tbptt else None)

    def on_step(record: StepRecord) -> None:
        nonlocal last
        done = record.step
        # float() waits for the device: the step's queued kernels are done when the clock is read.
        step_loss = float(all_reduce_sum(record.loss_sum, info)) / (cfg.optim.grad_accum * info.world_size)
        clock["busy"] += time.perf_counter() - clock["mark"]
        if record.skipped:
            result.skipped_steps.append(done)
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"training loss became {step_loss} at step {done}; lower optim.lr or "
                                     "set optim.grad_clip")
        result.losses.append(step_loss)
        clock["tokens"] += run.tokens_per_step()
        bar.update(1)
        val = None
        if cfg.eval.every and done % cfg.eval.every == 0 and done != cfg.schedule.steps:
            val = run_validation()
        if done % cfg.log.every == 0 or val is not None or done == end:
            rate = clock["tokens"] / max(clock["busy"], 1e-9)
            clock["tokens"], clock["busy"] = 0, 0.0
            bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{rate:,.0f}")
            last = (step_loss, record.lr, float(record.grad_norm), rate)
            if writer is not None and done != cfg.schedule.steps:  # the last row waits for the final validation
                writer.write(_record(done, run, *last, time.perf_counter() - t_start, val))
        if cfg.checkpoint.every and done % cfg.checkpoint.every == 0 and done != cfg.schedule.steps:
            save(done)
        clock["mark"] = time.perf_counter()

    train_steps(wrapped, optimizer, scheduler, batches(), loss_fn, steps=end, start=min(start_step, end),
                grad_accum=cfg.optim.grad_accum, grad_clip=cfg.optim.grad_clip, device=info.device,
                autocast=run.autocast, on_step=on_step, max_skipped=cfg.optim.max_skipped)
    bar.close()
    result.steps = end
    result.tokens = end * run.tokens_per_step()
    result.elapsed_s = time.perf_counter() - t_start
    if stop_at is not None and end < cfg.schedule.steps:
        if writer is not None:
            writer.close()
        return result
    if end > start_step or checkpoint is None:
        result.validation = run_validation()
        if writer is not None:
            writer.write(_record(end, run, *last, result.elapsed_s, result.validation))
        save(end)
    if info.is_main:
        _finish(cfg, run, result)
    if writer is not None:
        writer.close()
    return result


def _record(step: int, run: _Run, loss: float | None, lr: float | None, grad_norm: float | None,
            rate: float | None, elapsed: float, val: ValidationResult | None) -> dict[str, Any]:
    record = {"step": step, "tokens": step * run.tokens_per_step(), "loss": loss, "lr": lr, "grad_norm": grad_norm,
              "tokens_per_s": rate, "elapsed_s": elapsed}
    if val is not None:
        record.update(val_loss=val.loss, val_bpb=val.bpb, val_ppl=val.ppl)
    return record


def _finish(cfg: JobConfig, run: _Run, result: TrainResult) -> None:
    summary = {"name": cfg.name, "variant": cfg.model.variant, "preset": cfg.model.preset,
               "parameters": run.parameters, "steps": result.steps, "tokens": result.tokens,
               "elapsed_s": result.elapsed_s, "skipped_steps": result.skipped_steps}
    if result.validation is not None:
        summary.update(val_loss=result.validation.loss, val_bpb=result.validation.bpb, val_ppl=result.validation.ppl)
        tqdm.write(f"{cfg.name}: validation {result.validation.bpb:.4f} bits per byte, "
                   f"perplexity {result.validation.ppl:.3f} ({result.validation.tokens:,} tokens)")
    (run.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if cfg.log.plot and cfg.log.csv and (run.out_dir / "metrics.csv").exists():
        plot_curves({cfg.name: run.out_dir / "metrics.csv"}, run.out_dir / "loss_curve.png", title=cfg.name)
