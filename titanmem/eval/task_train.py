"""Train a tiny model on a synthetic task at a short length, then score it at 1x-16x that length.

A job is a TOML file (``configs/tasks/*.toml``; a ``base`` file may hold shared values) with sections

- ``[model]``: ``preset``, ``variant`` and any :class:`~titanmem.models.TitansConfig` field;
- ``[task]``: ``name`` (see :data:`~titanmem.eval.tasks.TASK_NAMES`), ``tokenizer`` and the task's
  own parameters (``digits``, ``num_pairs``, ``qa``, ...);
- ``[train]``: :class:`TrainSettings`; ``[eval]``: :class:`EvalSettings`;
- top level ``name`` and ``out_dir``.

The loss is the cross-entropy of the answer tokens only (labels ``-100`` elsewhere); for ``mqar``
``train.loss_on = "all_answers"`` also scores every in-context query answer (Zoology's setting).
Outputs under ``out_dir``: ``model/`` (``save_pretrained``, with ``task_job.json``), ``train_log.csv``,
``loss_curve.png``, ``results.json``, ``accuracy_vs_length.png`` and, for needle tasks,
``heatmap.png``. ``results.json``'s ``accuracy`` scores the last answer by greedy decoding; for tasks
with several answers (MQAR) ``query_accuracy`` also scores every query teacher-forced
(:func:`answer_span_accuracy`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.tokenizers import Tokenizer
from ..devices import prepare_cpu, resolve_device
from ..train.config import (OptimConfig, ScheduleConfig, check_train_section, job_tables, merge_tables,
                            parse_overrides, read_toml, split_model_table, typed_section)
from ..train.loop import StepRecord, train_steps
from ..train.metrics import plot_loss_history
from ..train.optim import build_optimizer, build_scheduler
from .tasks import Example, Task, make_task

__all__ = [
    "EvalSettings", "ModelSettings", "TaskJob", "TaskSettings", "TrainSettings", "answer_span_accuracy",
    "build_model", "load_task_job", "make_batch", "run_task_job", "task_job_from_dict", "train_on_task",
]


@dataclass
class ModelSettings:
    """A :class:`TitansConfig` preset and variant, and any other config fields (``fields``).

    ``init``: a saved :class:`TitansForCausalLM` folder (``save_pretrained``; a task job's ``model/``)
    whose weights the model starts from instead of a fresh initialisation, e.g. a curriculum over
    tasks (MQAR at 32 pairs, then 64). The job's own config still builds the model, so its sizes must
    be the folder's; "" starts fresh.
    """

    preset: str = "tiny"
    variant: str = "mac"
    fields: dict[str, Any] = field(default_factory=dict)
    init: str = ""


@dataclass
class TaskSettings:
    """The task's name, tokenizer spec and its own parameters (``params``)."""

    name: str = "passkey"
    tokenizer: str = "byte"
    params: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Task:
        return make_task(self.name, tokenizer=self.tokenizer, **self.params)


@dataclass
class TrainSettings:
    """AdamW on freshly generated train-split examples of ``length`` tokens, ``batch_size`` per step.

    The optimizer, schedule and loop are language modelling's (:mod:`titanmem.train.optim`,
    :mod:`titanmem.train.loop`): ``weight_decay`` applies to matrices (embeddings included), not to
    norms, biases or persistent tokens; ``lr`` warms up linearly over ``warmup_steps`` then decays by
    cosine to ``min_lr_ratio * lr``.
    ``loss_on``: ``"answer"`` or ``"all_answers"`` (every span in ``meta["answer_spans"]``, MQAR).
    ``threads``: torch intra-op threads (0 keeps torch's setting).
    ``mixed_lengths``: when not empty, step ``s`` trains on examples of ``mixed_lengths[s % n]`` tokens
    (a fixed cycle, so every variant sees the same data); ``length``, which must be one of them, stays
    the length that ``eval.multipliers`` scale. Empty: every step at ``length``.
    ``mixed_from``: a curriculum. Steps before it train at ``length`` only, and the cycle of
    ``mixed_lengths`` starts at that step (``mixed_lengths[(s - mixed_from) % n]``). For a model that
    must first learn the task at one length (MAC learns the pass-key between steps 350 and 520 at
    256 tokens, and not at all on the cycle from step 0: docs/results.md). 0: the cycle from step 0.
    """

    length: int = 256
    mixed_lengths: list[int] = field(default_factory=list)
    mixed_from: int = 0
    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    loss_on: str = "answer"
    device: str = "cpu"
    threads: int = 0
    log_every: int = 25


def train_length(t: TrainSettings, step: int) -> int:
    """Context length in tokens of training step ``step`` (0-based): ``length``, or the cycle of
    ``mixed_lengths`` from step ``mixed_from`` on (see :class:`TrainSettings`)."""
    if not t.mixed_lengths or step < t.mixed_from:
        return t.length
    return t.mixed_lengths[(step - t.mixed_from) % len(t.mixed_lengths)]


@dataclass
class EvalSettings:
    """Scoring at ``multipliers`` x the training length, ``samples`` test examples per (length, depth)."""

    multipliers: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    depths: list[float] = field(default_factory=lambda: [0.0, 25.0, 50.0, 75.0, 100.0])
    samples: int = 20
    batch_size: int = 8
    seed: int = 0


@dataclass
class TaskJob:
    """A whole task-training job."""

    name: str = "task"
    out_dir: str = "runs/task"
    model: ModelSettings = field(default_factory=ModelSettings)
    task: TaskSettings = field(default_factory=TaskSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"] = {"preset": self.model.preset, "variant": self.model.variant, **self.model.fields}
        if self.model.init:
            out["model"]["init"] = self.model.init
        out["task"] = {"name": self.task.name, "tokenizer": self.task.tokenizer, **self.task.params}
        return out


def task_job_from_dict(raw: Mapping[str, Any]) -> TaskJob:
    """Build and check a :class:`TaskJob` from a nested dict (a parsed TOML file); ``ValueError`` names the key."""
    raw = job_tables(raw, "a task job")
    preset, variant, model = split_model_table(raw.get("model", {}))
    init = model.pop("init", "")
    if not isinstance(init, str):
        raise ValueError(f"model.init must be a path string ('' for none), got {init!r}")
    if init and not (Path(init) / "config.json").is_file():
        raise ValueError(f"model.init must be a saved model folder (with config.json, e.g. a task job's "
                         f"model/), got {init!r}")
    task = dict(raw.get("task", {}))
    job = TaskJob(
        name=str(raw.get("name", "task")), out_dir=str(raw.get("out_dir", f"runs/{raw.get('name', 'task')}")),
        model=ModelSettings(preset, variant, model, init),
        task=TaskSettings(task.pop("name", "passkey"), task.pop("tokenizer", "byte"), task),
        train=typed_section("train", TrainSettings, raw.get("train", {})),
        eval=typed_section("eval", EvalSettings, raw.get("eval", {})),
    )
    t, e = job.train, job.eval
    check_train_section(t, (("train.length", t.length, 1), ("train.steps", t.steps, 1),
                            ("train.batch_size", t.batch_size, 1), ("train.warmup_steps", t.warmup_steps, 0),
                            ("train.log_every", t.log_every, 1), ("train.threads", t.threads, 0),
                            ("train.mixed_from", t.mixed_from, 0),
                            ("eval.samples", e.samples, 1), ("eval.batch_size", e.batch_size, 1)))
    if not isinstance(t.mixed_lengths, list) or not all(isinstance(n, int) and n >= 1 for n in t.mixed_lengths):
        raise ValueError(f"train.mixed_lengths must be a list of ints >= 1, got {t.mixed_lengths!r}")
    if t.mixed_lengths and t.length not in t.mixed_lengths:
        # a changed train.length would otherwise be silently ignored by the cycle
        raise ValueError(f"train.length {t.length} must be one of train.mixed_lengths {t.mixed_lengths} "
                         "(set train.mixed_lengths=[] to train at train.length only)")
    if t.mixed_from and not (t.mixed_lengths and t.mixed_from < t.steps):
        # either setting would leave the curriculum without its second phase, silently
        raise ValueError(f"train.mixed_from {t.mixed_from} needs a non-empty train.mixed_lengths (got "
                         f"{t.mixed_lengths}) and must be below train.steps {t.steps}")
    if t.loss_on not in ("answer", "all_answers"):
        raise ValueError(f"train.loss_on must be 'answer' or 'all_answers', got {t.loss_on!r}")
    if not all(isinstance(m, int) and m >= 1 for m in e.multipliers) or not e.multipliers:
        raise ValueError(f"eval.multipliers must be a non-empty list of ints >= 1, got {e.multipliers!r}")
    if not all(isinstance(d, (int, float)) and 0 <= d <= 100 for d in e.depths):
        raise ValueError(f"eval.depths must be numbers in [0, 100], got {e.depths!r}")
    try:
        build_model(job, job.task.build().tokenizer, meta=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"invalid [model] or [task] section: {err}") from err
    return job


def load_task_job(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TaskJob:
    """The job of TOML file ``path`` (defaults if None) with ``--section.key=value`` ``overrides``."""
    raw = read_toml(Path(path)) if path is not None else {}
    return task_job_from_dict(merge_tables(raw, parse_overrides(overrides)))


def build_model(job: TaskJob, tokenizer: Tokenizer, meta: bool = False) -> torch.nn.Module:
    """The job's :class:`TitansForCausalLM` (on the meta device with ``meta=True``: only checks the config),
    with the weights of ``job.model.init`` when it names a saved model.

    Raises:
        ValueError: the config is invalid, or ``model.init``'s weights do not fit the job's model.
    """
    from ..models import TitansConfig, TitansForCausalLM

    fields = {"vocab_size": tokenizer.vocab_size, **job.model.fields}
    config = TitansConfig.from_preset(job.model.preset, variant=job.model.variant, **fields)
    if meta:
        with torch.device("meta"):
            return TitansForCausalLM(config)
    model = TitansForCausalLM(config)
    if job.model.init:
        saved = TitansForCausalLM.from_pretrained(job.model.init).state_dict()
        try:
            model.load_state_dict(saved, strict=True)
        except RuntimeError as err:
            raise ValueError(f"model.init {job.model.init!r} does not fit the job's model (variant "
                             f"{job.model.variant!r}, fields {job.model.fields}): {err}") from err
    return model


def _encode_answer_spans(ex: Example, tokenizer: Tokenizer, loss_on: str) -> tuple[list[int], list[tuple[int, int]]]:
    """An example's token ids and the ``[start, end)`` token range of each scored answer span."""
    spans = list(ex.meta.get("answer_spans", [])) if loss_on == "all_answers" else []
    spans = spans or [(len(ex.context), len(ex.text))]
    ids: list[int] = []
    ranges, cursor = [], 0
    for start, end in spans:
        ids += tokenizer.encode(ex.text[cursor:start])
        answer = tokenizer.encode(ex.text[start:end])
        ranges.append((len(ids), len(ids) + len(answer)))
        ids += answer
        cursor = end
    return ids, ranges


def make_batch(examples: Sequence[Example], tokenizer: Tokenizer, loss_on: str = "answer"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, labels)``, both ``[B, T]``: each example's text, right-padded with token 0.

    Labels are the answer tokens (``loss_on="answer"``) or every ``meta["answer_spans"]`` span
    (``"all_answers"``) and ``-100`` elsewhere, padding included; right padding cannot change the
    earlier positions of a causal model.
    """
    rows, labels = [], []
    for ex in examples:
        ids, ranges = _encode_answer_spans(ex, tokenizer, loss_on)
        lab = [-100] * len(ids)
        for start, end in ranges:
            lab[start:end] = ids[start:end]
        rows.append(ids)
        labels.append(lab)
    return _right_pad(rows, 0), _right_pad(labels, -100)


def _right_pad(rows: Sequence[list[int]], fill: int) -> torch.Tensor:
    """``[len(rows), longest row]`` long tensor of ``rows``, each right-padded with ``fill``."""
    width = max(map(len, rows))
    return torch.tensor([r + [fill] * (width - len(r)) for r in rows], dtype=torch.long)


@torch.no_grad()
def answer_span_accuracy(model: torch.nn.Module, examples: Sequence[Example], tokenizer: Tokenizer,
                         batch_size: int = 8) -> dict[str, Any]:
    """Teacher-forced accuracy over every answer span of ``examples`` (every query of MQAR; Zoology's metric).

    One forward pass per batch reads each example whole; a span counts as correct when the argmax
    prediction of each of its tokens (from the true tokens before it) is that token. Examples without
    ``meta["answer_spans"]`` contribute their one answer. Unlike greedy decoding of the last answer,
    this scores all of an MQAR example's queries, ``num_queries`` times as many per example.

    Returns:
        ``{"n": spans scored, "correct": spans right, "accuracy": correct / n, "token_accuracy": the
        fraction of answer tokens right}``.

    Raises:
        ValueError: ``examples`` is empty, ``batch_size < 1``, or an answer opens an example's text.
    """
    if not examples:
        raise ValueError("examples must hold at least one example, got none")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    n = correct = n_tokens = correct_tokens = 0
    for i in range(0, len(examples), batch_size):
        encoded = [_encode_answer_spans(ex, tokenizer, "all_answers") for ex in examples[i:i + batch_size]]
        opening = [i + j for j, (_, ranges) in enumerate(encoded) if ranges[0][0] < 1]
        if opening:  # token 0 has no prediction before it to score
            raise ValueError(f"examples[{opening[0]}]: an answer must start after the text's first token, "
                             f"got one at token 0")
        batch = _right_pad([ids for ids, _ in encoded], 0).to(device)
        # position t predicts token t + 1; right padding cannot change earlier positions
        predicted = model(batch, use_cache=False).logits.argmax(-1).cpu()
        for row, (ids, ranges) in enumerate(encoded):
            target = torch.tensor(ids)
            for start, end in ranges:
                hits = predicted[row, start - 1:end - 1] == target[start:end]
                n, correct = n + 1, correct + int(hits.all())
                n_tokens, correct_tokens = n_tokens + hits.numel(), correct_tokens + int(hits.sum())
    return {"n": n, "correct": correct, "accuracy": correct / n, "token_accuracy": correct_tokens / max(n_tokens, 1)}


def train_on_task(job: TaskJob, log: Callable[[str], None] | None = print
                  ) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Train the job's model on its task; returns the model (eval mode) and the loss log rows.

    Through the library's one training loop (:func:`titanmem.train.loop.train_steps`) with its
    optimizer and schedule (:mod:`titanmem.train.optim`): AdamW with the same decay rule as language
    modelling, linear warmup then cosine to ``min_lr_ratio``, clipping at ``grad_clip``. The data is
    a stream of freshly generated train-split examples; the loss is the answers' cross-entropy.

    Raises:
        FloatingPointError: the loss is not finite (the message says which settings to lower).
    """
    t = job.train
    prepare_cpu(t.threads)
    task = job.task.build()
    torch.manual_seed(t.seed)
    device = resolve_device(t.device)
    model = build_model(job, task.tokenizer).to(device)
    optimizer = build_optimizer(model, OptimConfig(lr=t.lr, weight_decay=t.weight_decay, grad_clip=t.grad_clip))
    scheduler = build_scheduler(optimizer, ScheduleConfig(steps=t.steps, warmup_steps=t.warmup_steps,
                                                          min_lr_ratio=t.min_lr_ratio))

    def batches():
        for step in range(t.steps):
            length = train_length(t, step)
            examples = task.examples(t.batch_size, length, "train", t.seed, start=step * t.batch_size)
            ids, labels = make_batch(examples, task.tokenizer, t.loss_on)
            yield ids.to(device), labels.to(device)

    def answer_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, labels = batch
        return model(ids, labels=labels, use_cache=False).loss

    history: list[dict[str, float]] = []
    start = time.perf_counter()

    def on_step(record: StepRecord) -> None:
        loss = float(record.loss_sum)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {record.step}: lower train.lr or model.max_lr "
                                     "(the memory's inner learning rate), or raise train.warmup_steps")
        history.append({"step": record.step, "loss": loss, "lr": record.lr, "elapsed_s": time.perf_counter() - start,
                        "skipped": record.skipped})
        if log is not None and (record.step % t.log_every == 0 or record.step == t.steps):
            log(f"step {record.step}/{t.steps}  loss {loss:.4f}  {history[-1]['elapsed_s']:.0f}s")

    train_steps(model, optimizer, scheduler, batches(), answer_loss, steps=t.steps, grad_clip=t.grad_clip,
                device=device, on_step=on_step)
    model.eval()
    return model, history


def run_task_job(job: TaskJob, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train, save, score at every multiple of the training length, write results and plots; returns results."""
    from .scoring import ModelAnswerer, evaluate_task, plot_accuracy_vs_length, plot_heatmap, write_json

    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, history = train_on_task(job, log)
    task = job.task.build()
    model.save_pretrained(out / "model")
    write_json(out / "model" / "task_job.json", job.to_dict())
    # What titanmem.eval.loading reads to find the tokenizer of an exported model.
    write_json(out / "model" / "training_job.json",
               {"data": {"tokenizer": job.task.tokenizer}, "task_job": job.to_dict()})
    (out / "train_log.csv").write_text("step,loss,lr,elapsed_s\n" + "".join(
        f"{h['step']},{h['loss']:.6f},{h['lr']:.6g},{h['elapsed_s']:.3f}\n" for h in history))
    lengths = [job.train.length * m for m in job.eval.multipliers]
    start = time.perf_counter()
    rows, records = evaluate_task(task, ModelAnswerer(model, task.tokenizer), lengths, job.eval.depths,
                                  job.eval.samples, job.eval.seed, "test", job.eval.batch_size)
    results = {"job": job.to_dict(), "task": task.params() | {"name": task.name},
               "parameters": sum(p.numel() for p in model.parameters()),
               "train_seconds": history[-1]["elapsed_s"], "final_loss": history[-1]["loss"],
               "skipped_steps": [h["step"] for h in history if h["skipped"]],
               "eval_seconds": time.perf_counter() - start, "accuracy": rows, "records": records}
    if "answer_spans" in task.example(job.train.length, "test", job.eval.seed, 0).meta:
        # Every query of each scored example, teacher-forced, beside the greedy score of its last one.
        results["query_accuracy"] = [
            {"task": task.name, "length": n} | answer_span_accuracy(
                model, task.examples(job.eval.samples, n, "test", job.eval.seed), task.tokenizer, job.eval.batch_size)
            for n in lengths]
    write_json(out / "results.json", results)
    title = f"{job.model.variant} on {task.name} (trained at {job.train.length} tokens)"
    plot_accuracy_vs_length(rows, out / "accuracy_vs_length.png", title)
    plot_loss_history(history, out / "loss_curve.png", title)
    if task.uses_depth:
        plot_heatmap(rows, out / "heatmap.png", title)
    if log is not None:
        for r in rows:
            log(f"length {r['length']:>6}  depth {r['depth'] if r['depth'] is not None else '-':>5}  "
                f"accuracy {r['accuracy']:.2f} ({r['correct']}/{r['n']})")
        for r in results.get("query_accuracy", []):
            log(f"length {r['length']:>6}  every query  accuracy {r['accuracy']:.2f} ({r['correct']}/{r['n']})")
    return results
