"""Fine-tune and score a :class:`~titanmem.models.TitansForSequenceClassification` on a Genomic Benchmarks folder.

A job is a TOML file (``configs/dna/finetune/*.toml``; a ``base`` file may hold shared values):

- ``[model]``: ``preset``, ``variant``, ``init`` (a DNA pretraining run folder, one of its checkpoints,
  or a Hugging Face folder; empty: from scratch) and any :class:`~titanmem.models.TitansConfig` field;
- ``[task]``: ``path`` (a folder of the Genomic Benchmarks layout, e.g. written by ``titanmem dna
  tasks``), ``tokenizer`` (``dna`` or ``dna-kmer:<k>``), ``max_train`` (0: every training sequence),
  ``val_fraction`` and ``val_seed`` (a validation split cut from the training sequences, see
  :func:`validation_split`; 0: none);
- ``[train]``: :class:`FinetuneTrain`; ``[eval]``: :class:`FinetuneEval`;
- top level ``name`` and ``out_dir``.

Training runs through the library's one loop (:func:`titanmem.train.loop.train_steps`) with its
optimizer and schedule. The model does not support padding, so a batch holds sequences of one
token length: sequences are grouped by length and each step draws its batch from one group (chosen
in proportion to the groups' sizes). Outputs under ``out_dir``: ``model/`` (``save_pretrained`` plus
``finetune_job.json``), ``train_log.csv``, ``loss_curve.png`` and ``results.json`` (test accuracy, per class too).

Choices such as the number of steps or the learning rate are made on the validation split, never on
the test split: with ``task.val_fraction > 0`` the job scores the held-out training sequences every
``train.eval_every`` steps and at the end (``results.json["validation"]``), and ``train.keep_best``
ends the job with the weights of the step that scored best there (Hugging Face's
``load_best_model_at_end``), which are then scored on the test split.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.genomes import reverse_complement
from ..data.tokenizers import Tokenizer, get_tokenizer
from ..devices import prepare_cpu, resolve_device
from ..train.config import (OptimConfig, ScheduleConfig, check_train_section, job_tables, merge_tables,
                            parse_overrides, read_toml, split_model_table, typed_section)
from ..train.loop import StepRecord, train_steps
from ..train.metrics import plot_loss_history
from ..train.optim import build_optimizer, build_scheduler
from .tasks import SequenceTask, load_benchmark

__all__ = [
    "FinetuneEval", "FinetuneJob", "FinetuneModel", "FinetuneTask", "FinetuneTrain", "build_classifier",
    "evaluate_both_ways", "evaluate_classifier", "finetune", "finetune_job_from_dict", "length_groups",
    "load_finetune_job", "run_finetune_job", "validation_split",
]


@dataclass
class FinetuneModel:
    """A preset and variant (ignored when ``init`` names a pretrained model), ``init``, other config ``fields``."""

    preset: str = "tiny"
    variant: str = "mac"
    init: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinetuneTask:
    """The Genomic Benchmarks folder, the tokenizer spec, a cap on the training sequences (0: none), and
    the validation split: ``val_fraction`` of each class's training sequences (0: none) held out, drawn
    with ``val_seed`` (fixed across training seeds, so every seed is scored on the same sequences)."""

    path: str = "runs/dna/benchmarks/coding-vs-intergenic"
    tokenizer: str = "dna"
    max_train: int = 0
    val_fraction: float = 0.0
    val_seed: int = 0


@dataclass
class FinetuneTrain:
    """AdamW with warmup then cosine (``titanmem.train.optim``), ``batch_size`` sequences per step.

    ``reverse_complement``: each step's batch is read from the other strand with probability 1/2
    (a sequence's class does not depend on the strand it is read from in these tasks).
    ``threads``: torch intra-op threads (0 keeps torch's setting).
    ``eval_every``: score the validation split (``task.val_fraction > 0``) every this many steps, and
    always after the last (0: after the last only). ``keep_best``: end with the weights of the scored
    step with the highest validation accuracy (ties: the lower validation loss, then the earlier
    step) instead of the last step's; needs a validation split.
    """

    steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    reverse_complement: bool = False
    device: str = "cpu"
    threads: int = 0
    log_every: int = 25
    eval_every: int = 0
    keep_best: bool = False


@dataclass
class FinetuneEval:
    """Test-split scoring: ``batch_size`` sequences per forward."""

    batch_size: int = 64


@dataclass
class FinetuneJob:
    """A whole fine-tuning job."""

    name: str = "dna-finetune"
    out_dir: str = "runs/dna/finetune"
    model: FinetuneModel = field(default_factory=FinetuneModel)
    task: FinetuneTask = field(default_factory=FinetuneTask)
    train: FinetuneTrain = field(default_factory=FinetuneTrain)
    eval: FinetuneEval = field(default_factory=FinetuneEval)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"] = {"preset": self.model.preset, "variant": self.model.variant, "init": self.model.init,
                        **self.model.fields}
        return out


def finetune_job_from_dict(raw: Mapping[str, Any]) -> FinetuneJob:
    """Build and check a :class:`FinetuneJob` from a nested dict (a parsed TOML file); ``ValueError`` names the key."""
    raw = job_tables(raw, "a fine-tuning job")
    preset, variant, model = split_model_table(raw.get("model", {}))
    init = model.pop("init", "")
    if not isinstance(init, str):
        raise ValueError(f"model.init must be a path string ('' for none), got {init!r}")
    name = str(raw.get("name", "dna-finetune"))
    job = FinetuneJob(
        name=name, out_dir=str(raw.get("out_dir", f"runs/dna/{name}")),
        model=FinetuneModel(preset, variant, init, model),
        task=typed_section("task", FinetuneTask, raw.get("task", {})),
        train=typed_section("train", FinetuneTrain, raw.get("train", {})),
        eval=typed_section("eval", FinetuneEval, raw.get("eval", {})),
    )
    t = job.train
    check_train_section(t, (("train.steps", t.steps, 1), ("train.batch_size", t.batch_size, 1),
                            ("train.warmup_steps", t.warmup_steps, 0), ("train.log_every", t.log_every, 1),
                            ("train.threads", t.threads, 0), ("train.seed", t.seed, 0),
                            ("eval.batch_size", job.eval.batch_size, 1), ("task.max_train", job.task.max_train, 0),
                            ("train.eval_every", t.eval_every, 0), ("task.val_seed", job.task.val_seed, 0)))
    if t.warmup_steps > t.steps:
        raise ValueError(f"train.warmup_steps must be <= train.steps ({t.steps}), got {t.warmup_steps}")
    if not 0.0 <= job.task.val_fraction < 1.0:
        raise ValueError(f"task.val_fraction must be in [0, 1), got {job.task.val_fraction!r}")
    if t.keep_best and not job.task.val_fraction:
        raise ValueError("train.keep_best needs a validation split: set task.val_fraction > 0 "
                         f"(got {job.task.val_fraction!r})")
    get_tokenizer(job.task.tokenizer)  # a bad spec fails here, naming the forms
    if not job.model.init:
        from ..models import TitansConfig

        try:
            TitansConfig.from_preset(job.model.preset, variant=job.model.variant, **job.model.fields)
        except (TypeError, ValueError) as err:
            raise ValueError(f"invalid [model] section: {err}") from err
    return job


def load_finetune_job(path: str | Path | None = None, overrides: Sequence[str] = ()) -> FinetuneJob:
    """The job of TOML file ``path`` (defaults if None) with ``--section.key=value`` ``overrides``."""
    raw = read_toml(Path(path)) if path is not None else {}
    return finetune_job_from_dict(merge_tables(raw, parse_overrides(overrides)))


def build_classifier(job: FinetuneJob, tokenizer: Tokenizer, classes: Sequence[str]) -> torch.nn.Module:
    """The job's classifier over ``classes``: from ``model.init`` (backbone weights) or freshly initialised.

    ``model.init`` may be a Hugging Face folder (``config.json``), or a ``titanmem train`` run folder or
    checkpoint (exported to a temporary folder first). The head ``score`` always starts from the init.

    Raises:
        ValueError: the pretrained model's vocabulary is smaller than the tokenizer's.
        FileNotFoundError / CheckpointError: ``model.init`` is not a model or checkpoint.
    """
    from ..models import TitansConfig, TitansForSequenceClassification

    labels = {"id2label": dict(enumerate(classes)), "label2id": {c: i for i, c in enumerate(classes)}}
    extra = {k: v for k, v in job.model.fields.items() if k == "classifier_pooling"}
    if job.model.init:
        init = Path(job.model.init)
        if (init / "config.json").is_file():
            model = TitansForSequenceClassification.from_pretrained(init, num_labels=len(classes), **labels, **extra)
        else:
            from ..train.export import export_pretrained

            with tempfile.TemporaryDirectory() as tmp:
                export_pretrained(init, tmp)
                model = TitansForSequenceClassification.from_pretrained(tmp, num_labels=len(classes), **labels,
                                                                        **extra)
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"model.init's vocabulary ({model.config.vocab_size}) must cover the tokenizer "
                             f"{tokenizer.name!r} ({tokenizer.vocab_size} ids)")
        return model
    fields = {"vocab_size": tokenizer.vocab_size, **job.model.fields}
    config = TitansConfig.from_preset(job.model.preset, variant=job.model.variant, num_labels=len(classes),
                                      **labels, **fields)
    return TitansForSequenceClassification(config)


def validation_split(pairs: Sequence[tuple[str, int]], fraction: float, seed: int
                     ) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
    """``(train, validation)``: ``round(fraction * n_c)`` of each class's ``n_c`` pairs (at least one
    where ``fraction > 0``, never all of them) drawn without replacement by ``seed``; both keep the
    input order. The validation pairs are training sequences, so a choice made on them never sees the
    test split; windows cut next to each other from one genome may share a gene or a repeat, so
    validation accuracy can run a little above test accuracy.

    Raises:
        ValueError: ``fraction`` not in [0, 1), or a class has too few pairs to give both splits one.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    if fraction == 0.0:
        return tuple(pairs), ()
    rng = np.random.default_rng(seed)
    held = np.zeros(len(pairs), dtype=bool)
    labels = np.array([y for _, y in pairs])
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take = max(1, round(fraction * rows.size))
        if take >= rows.size:
            raise ValueError(f"class {int(label)} has {rows.size} training pairs, too few for a validation "
                             f"fraction of {fraction} that leaves both splits at least one")
        held[rng.choice(rows, size=take, replace=False)] = True
    return (tuple(p for p, h in zip(pairs, held) if not h), tuple(p for p, h in zip(pairs, held) if h))


def length_groups(pairs: Sequence[tuple[str, int]], tokenizer: Tokenizer, strand: str = "+"
                  ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """``{token length: (input_ids [N, T], labels [N])}``: the pairs encoded (``strand="-"``: reverse
    complemented first), grouped by length so that each group stacks without padding; input order
    is kept within a group."""
    rows: dict[int, tuple[list[list[int]], list[int]]] = {}
    for sequence, label in pairs:
        ids = tokenizer.encode(reverse_complement(sequence) if strand == "-" else sequence)
        if ids:
            group = rows.setdefault(len(ids), ([], []))
            group[0].append(ids)
            group[1].append(label)
    return {n: (torch.tensor(ids, dtype=torch.long), torch.tensor(ys, dtype=torch.long))
            for n, (ids, ys) in sorted(rows.items())}


def _batches(groups: list[dict[int, tuple[torch.Tensor, torch.Tensor]]], batch_size: int, seed: int,
             device: torch.device):
    """Endless training batches: a group drawn by size, then ``batch_size`` of its rows without
    replacement (fewer if it is smaller); with two strand tables, the strand is drawn per batch."""
    rng = np.random.default_rng(seed)
    lengths = list(groups[0])
    sizes = np.array([groups[0][n][1].numel() for n in lengths], dtype=np.float64)
    while True:
        n = lengths[rng.choice(len(lengths), p=sizes / sizes.sum())]
        strand = groups[rng.integers(len(groups))] if len(groups) > 1 else groups[0]
        if n not in strand:  # k-mers of a sequence with N may split differently on the other strand
            strand = groups[0]
        ids, labels = strand[n]
        rows = torch.from_numpy(rng.choice(labels.numel(), size=min(batch_size, labels.numel()), replace=False))
        yield ids[rows].to(device), labels[rows].to(device)


def finetune(job: FinetuneJob, task: SequenceTask, log: Callable[[str], None] | None = print
             ) -> tuple[torch.nn.Module, list[dict[str, float]], dict[str, Any] | None]:
    """Train the job's classifier on ``task``'s training split; returns the model (eval mode), the loss
    log and the validation record (None without ``task.val_fraction``): ``{"n", "fraction", "seed",
    "by_step": [{"step", "accuracy", "loss"}], "best_step", "best_accuracy", "kept": "best"|"last"}``
    (loss: mean cross-entropy in nats, one strand).

    Raises:
        FloatingPointError: the loss is not finite (the message says which settings to lower).
    """
    t = job.train
    prepare_cpu(t.threads)
    tokenizer = get_tokenizer(job.task.tokenizer)
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)
    model = build_classifier(job, tokenizer, task.classes).to(device)
    pairs, held_out = validation_split(task.train, job.task.val_fraction, job.task.val_seed)
    if job.task.max_train and len(pairs) > job.task.max_train:
        keep = np.sort(np.random.default_rng(t.seed).choice(len(pairs), job.task.max_train, replace=False))
        pairs = tuple(pairs[i] for i in keep)
    groups = [length_groups(pairs, tokenizer)]
    if t.reverse_complement:
        groups.append(length_groups(pairs, tokenizer, strand="-"))
    optimizer = build_optimizer(model, OptimConfig(lr=t.lr, weight_decay=t.weight_decay, grad_clip=t.grad_clip))
    scheduler = build_scheduler(optimizer, ScheduleConfig(steps=t.steps, warmup_steps=t.warmup_steps,
                                                          min_lr_ratio=t.min_lr_ratio))

    def loss_fn(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, labels = batch
        return model(ids, labels=labels, use_cache=False).loss

    history: list[dict[str, float]] = []
    scores: list[dict[str, float]] = []
    best: dict[str, Any] = {}

    def validate(step: int) -> None:
        model.eval()
        probs, labels = _class_probabilities(model, tokenizer, held_out, job.eval.batch_size, "+")
        model.train()
        picked = probs.gather(1, labels[:, None]).squeeze(1).clamp_min(torch.finfo(probs.dtype).tiny)
        score = {"step": step, "accuracy": float((probs.argmax(-1) == labels).double().mean()),
                 "loss": float(-picked.log().double().mean())}
        scores.append(score)
        if not best or (score["accuracy"], -score["loss"]) > (best["accuracy"], -best["loss"]):
            best.update(score)
            if t.keep_best:
                best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    start = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=t.steps, desc=job.name, unit="step", disable=log is None, dynamic_ncols=True)

    def on_step(record: StepRecord) -> None:
        loss = float(record.loss_sum)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {record.step}: lower train.lr or model.max_lr "
                                     "(the memory's inner learning rate), or raise train.warmup_steps")
        history.append({"step": record.step, "loss": loss, "lr": record.lr, "elapsed_s": time.perf_counter() - start,
                        "skipped": record.skipped})
        bar.update(1)
        if held_out and (record.step == t.steps or (t.eval_every and record.step % t.eval_every == 0)):
            validate(record.step)
            if log is not None:
                bar.write(f"step {record.step}/{t.steps}  validation accuracy {scores[-1]['accuracy']:.4f}  "
                          f"loss {scores[-1]['loss']:.4f}")
        if log is not None and (record.step % t.log_every == 0 or record.step == t.steps):
            bar.write(f"step {record.step}/{t.steps}  loss {loss:.4f}  {history[-1]['elapsed_s']:.0f}s")

    try:
        train_steps(model, optimizer, scheduler, _batches(groups, t.batch_size, t.seed, device), loss_fn,
                    steps=t.steps, grad_clip=t.grad_clip, device=device, on_step=on_step)
    finally:
        bar.close()
    validation = None
    if held_out:
        if t.keep_best:
            model.load_state_dict(best.pop("state"))
        validation = {"n": len(held_out), "fraction": job.task.val_fraction, "seed": job.task.val_seed,
                      "by_step": scores, "best_step": best["step"], "best_accuracy": best["accuracy"],
                      "kept": "best" if t.keep_best else "last"}
        if log is not None:
            log(f"validation: best accuracy {best['accuracy']:.4f} at step {best['step']}; "
                f"keeping the {validation['kept']} step's weights")
    model.eval()
    return model, history, validation


@torch.no_grad()
def _class_probabilities(model: torch.nn.Module, tokenizer: Tokenizer, pairs: Sequence[tuple[str, int]],
                         batch_size: int, strand: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities [N, classes], labels [N])`` of ``pairs`` read from ``strand`` ("+" or "-"), in
    :func:`length_groups` order (the same order for both strands: a sequence and its reverse
    complement have the same length)."""
    device = next(model.parameters()).device
    probs, labels = [], []
    for ids, ys in length_groups(pairs, tokenizer, strand=strand).values():
        for lo in range(0, ys.numel(), batch_size):
            probs.append(model(ids[lo : lo + batch_size].to(device), use_cache=False).logits.softmax(-1).cpu())
        labels.append(ys)
    if not labels:
        raise ValueError("pairs must hold at least one sequence to score, got none")
    return torch.cat(probs), torch.cat(labels)


def _accuracy(probs: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    hit = (probs.argmax(-1) == labels).numpy()
    correct = np.bincount(labels.numpy(), weights=hit, minlength=len(classes)).astype(np.int64)
    total = np.bincount(labels.numpy(), minlength=len(classes))
    n = int(total.sum())
    return {"accuracy": float(correct.sum() / n), "n": n, "correct": int(correct.sum()),
            "per_class": {c: float(correct[i] / total[i]) if total[i] else None for i, c in enumerate(classes)}}


def evaluate_classifier(model: torch.nn.Module, tokenizer: Tokenizer, pairs: Sequence[tuple[str, int]],
                        classes: Sequence[str], batch_size: int = 64, both_strands: bool = False) -> dict[str, Any]:
    """Accuracy of ``model``'s argmax over ``pairs``, overall and per class: ``{"accuracy", "n",
    "correct", "per_class": {class: accuracy}}``.

    ``both_strands``: classify each sequence by the mean of the class probabilities of the sequence
    and of its reverse complement (the same DNA read from the other strand), a common test-time
    choice for models trained on both strands; False scores the sequence as given.

    Raises:
        ValueError: ``pairs`` holds no sequence to score.
    """
    if both_strands:
        return evaluate_both_ways(model, tokenizer, pairs, classes, batch_size)[1]
    return _accuracy(*_class_probabilities(model, tokenizer, pairs, batch_size, "+"), classes)


def evaluate_both_ways(model: torch.nn.Module, tokenizer: Tokenizer, pairs: Sequence[tuple[str, int]],
                       classes: Sequence[str], batch_size: int = 64) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(one strand, both strands)``: :func:`evaluate_classifier` both ways, each strand read once."""
    forward, labels = _class_probabilities(model, tokenizer, pairs, batch_size, "+")
    reverse, _ = _class_probabilities(model, tokenizer, pairs, batch_size, "-")
    return _accuracy(forward, labels, classes), _accuracy((forward + reverse) / 2, labels, classes)


def run_finetune_job(job: FinetuneJob, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Load the task, fine-tune, save the model, score the test split, write ``results.json``; returns the results.

    Raises:
        FileNotFoundError, ValueError: ``task.path`` is not a Genomic Benchmarks folder.
    """
    task = load_benchmark(job.task.path)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, history, validation = finetune(job, task, log)
    tokenizer = get_tokenizer(job.task.tokenizer)
    model.save_pretrained(out / "model")
    (out / "model" / "finetune_job.json").write_text(json.dumps(job.to_dict(), indent=2) + "\n")
    (out / "train_log.csv").write_text("step,loss,lr,elapsed_s\n" + "".join(
        f"{h['step']},{h['loss']:.6f},{h['lr']:.6g},{h['elapsed_s']:.3f}\n" for h in history))
    start = time.perf_counter()
    test, test_both = evaluate_both_ways(model, tokenizer, task.test, task.classes, job.eval.batch_size)
    results = {"job": job.to_dict(), "task": {"name": task.name, "path": str(job.task.path),
                                              "classes": list(task.classes), "counts": task.counts()},
               "variant": model.config.variant, "pretrained": bool(job.model.init),
               "parameters": sum(p.numel() for p in model.parameters()),
               "train_seconds": history[-1]["elapsed_s"], "final_loss": history[-1]["loss"],
               "skipped_steps": [h["step"] for h in history if h["skipped"]],
               "eval_seconds": time.perf_counter() - start, "test": test, "test_both_strands": test_both}
    if validation is not None:
        results["validation"] = validation
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_loss_history(history, out / "loss_curve.png",
                      title=f"{job.name} on {task.name}: test accuracy {test['accuracy']:.1%}")
    if log is not None:
        log(f"{job.name}: test accuracy {test['accuracy']:.4f} ({test['correct']}/{test['n']}) on {task.name}")
    return results
