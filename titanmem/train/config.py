"""The training job as one tree of dataclasses, read from TOML with ``--section.key=value`` overrides.

Every field has a default, so a config file only states what differs. A file may name a ``base``
file (a path relative to itself) whose values it overrides, section by section. Unknown sections or
keys, and values of the wrong type or out of range, raise ``ValueError`` naming ``section.key``
before anything is built.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .loop import MAX_SKIPPED_STEPS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "CheckpointConfig", "DataConfig", "EvalConfig", "JobConfig", "LogConfig", "ModelConfig", "OptimConfig",
    "RunConfig", "ScheduleConfig", "config_from_dict", "load_config", "merge_tables", "parse_overrides",
    "check_train_section", "job_tables", "preset_variant", "read_toml", "split_model_table", "typed_section",
]


@dataclass
class ModelConfig:
    """The model: a :class:`~titanmem.models.TitansConfig` preset, a variant, and any of its fields.

    ``fields`` holds every other key of the ``[model]`` table (``hidden_size``, ``chunk_size``, ...),
    applied over the preset. ``vocab_size`` defaults to the tokenizer's.
    """

    preset: str = "tiny"
    variant: str = "mac"
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Corpus, tokenizer and batches (``batch_size`` sequences per process and micro-step)."""

    corpus: str = "shakespeare"
    corpus_path: str | None = None
    tokenizer: str = "byte"
    tokenizer_cache: str | None = None
    data_dir: str | None = None  # None: ``<out_dir>/../data/<corpus>-<tokenizer>``
    val_fraction: float = 0.05
    split_seed: int = 0
    seq_len: int = 512
    batch_size: int = 8
    sampling: str = "random"  # "random" windows, or "sequential" lanes (needed by tbptt)
    # DNA: read each training window from the other strand with probability 1/2 (reversed and
    # complemented); needs a tokenizer with a complement table (the "dna" tokenizer).
    reverse_complement: bool = False


@dataclass
class OptimConfig:
    """AdamW; ``weight_decay`` applies to matrices only (see :mod:`titanmem.train.optim`)."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 turns clipping off
    grad_accum: int = 1
    max_skipped: int = MAX_SKIPPED_STEPS  # steps in a row with a non-finite gradient skipped; 0: stop at the first


@dataclass
class ScheduleConfig:
    """Linear warmup to ``optim.lr``, then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""

    steps: int = 1000
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1


@dataclass
class RunConfig:
    """Seed, device, precision, distributed strategy, truncated backprop through the memory state."""

    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; the memory state stays float32)
    distributed: str = "ddp"  # under torchrun: "ddp" or "fsdp" (FSDP2 fully_shard per block)
    tbptt: bool = False  # carry each row's block states from one sequence to the next (detached)
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default


@dataclass
class CheckpointConfig:
    """Checkpoints every ``every`` steps (0: only at the end), keeping the ``keep`` newest."""

    every: int = 500
    keep: int = 3


@dataclass
class LogConfig:
    """Training metrics every ``every`` steps to CSV, JSONL and (optionally) TensorBoard."""

    every: int = 10
    csv: bool = True
    jsonl: bool = True
    tensorboard: bool = False
    progress: bool = True
    plot: bool = True


@dataclass
class EvalConfig:
    """Validation every ``every`` steps (0: only at the end) on the first ``tokens`` validation tokens."""

    every: int = 200
    tokens: int = 65536
    batch_size: int = 8


@dataclass
class JobConfig:
    """A whole training job. ``out_dir`` holds metrics, checkpoints and plots."""

    name: str = "run"
    out_dir: str = "runs/run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (``[model]`` flattened back to one table), as written into checkpoints."""
        out = dataclasses.asdict(self)
        out["model"] = {"preset": self.model.preset, "variant": self.model.variant, **self.model.fields}
        return out

    def resolved_data_dir(self) -> Path:
        """Where the token shards live: ``data.data_dir`` or a folder named after corpus and tokenizer."""
        if self.data.data_dir is not None:
            return Path(self.data.data_dir)
        slug = "".join(c if c.isalnum() else "-" for c in f"{self.data.corpus}-{self.data.tokenizer}")
        return Path(self.out_dir).parent / "data" / slug


# Section name -> its dataclass.
_SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(JobConfig) if f.name not in ("name", "out_dir")}
_CHOICES = {
    "data.sampling": ("random", "sequential"),
    "run.device": ("auto", "cpu", "cuda"),
    "run.precision": ("fp32", "bf16"),
    "run.distributed": ("ddp", "fsdp"),
}
# (minimum, maximum or None) of numeric fields.
_RANGES = {
    "data.seq_len": (1, None), "data.batch_size": (1, None),
    "optim.lr": (0.0, None), "optim.beta1": (0.0, 1.0), "optim.beta2": (0.0, 1.0), "optim.eps": (0.0, None),
    "optim.weight_decay": (0.0, None), "optim.grad_clip": (0.0, None), "optim.grad_accum": (1, None),
    "optim.max_skipped": (0, None),
    "schedule.steps": (1, None), "schedule.warmup_steps": (0, None), "schedule.min_lr_ratio": (0.0, 1.0),
    "run.threads": (0, None), "checkpoint.every": (0, None), "checkpoint.keep": (1, None),
    "log.every": (1, None), "eval.every": (0, None), "eval.tokens": (1, None), "eval.batch_size": (1, None),
}


_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "None": type(None), "dict[str, Any]": dict,
          "list[int]": list, "list[float]": list}


def _type_ok(value: Any, annotation: str) -> bool:
    # Field annotations are strings (``from __future__ import annotations``) such as "str | None".
    for name in (part.strip() for part in annotation.split("|")):
        kind = _TYPES[name]
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind is int and isinstance(value, bool):
            continue
        if isinstance(value, kind):
            return True
    return False


_JOB_KEYS = ("name", "out_dir", "model", "task", "train", "eval")


def job_tables(raw: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``raw`` without ``base``, after the checks every task-style job (``[model]``, ``[task]``,
    ``[train]``, ``[eval]``, ``name``, ``out_dir``) shares: no unknown key, each section a table,
    ``name`` and ``out_dir`` non-empty strings. ``what`` names the job in the message ("a task job").

    Raises:
        ValueError: naming the offending key.
    """
    raw = {k: v for k, v in raw.items() if k != "base"}
    unknown = set(raw) - set(_JOB_KEYS)
    if unknown:
        raise ValueError(f"unknown config key {sorted(unknown)[0]}; {what} has name, out_dir, base, "
                         "[model], [task], [train], [eval]")
    for key in ("model", "task", "train", "eval"):
        if not isinstance(raw.get(key, {}), Mapping):
            raise ValueError(f"{key} must be a table of keys, got {raw[key]!r}")
    for key in ("name", "out_dir"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise ValueError(f"{key} must be a non-empty string, got {raw[key]!r}")
    return raw


def check_train_section(train: Any, minimums: Sequence[tuple[str, Any, int]]) -> None:
    """The checks a job's ``[train]`` section shares: each ``(key, value, low)`` of ``minimums`` is
    ``>= low``; ``lr > 0``, ``grad_clip`` and ``weight_decay >= 0``, ``min_lr_ratio`` in [0, 1];
    ``device`` resolvable (:func:`titanmem.devices.resolve_device`).

    Raises:
        ValueError: naming the key and the value seen.
    """
    from ..devices import resolve_device

    for key, value, low in minimums:
        if value < low:
            raise ValueError(f"{key} must be >= {low}, got {value!r}")
    t = train
    if not t.lr > 0 or t.grad_clip < 0 or not 0 <= t.min_lr_ratio <= 1 or t.weight_decay < 0:
        raise ValueError(f"train.lr must be > 0, train.grad_clip and train.weight_decay >= 0, train.min_lr_ratio in "
                         f"[0, 1]; got {t.lr}, {t.grad_clip}, {t.weight_decay}, {t.min_lr_ratio}")
    try:
        resolve_device(t.device)
    except ValueError as err:
        raise ValueError(f"train.device: {err}") from err


def preset_variant(preset: str) -> str:
    """The variant a ``[model]`` table without ``variant`` gets: preset ``preset``'s own (``"lmm"`` for
    the family presets), else ``"mac"`` (:func:`titanmem.models.presets.preset_variant`)."""
    from ..models.presets import preset_variant as variant_of  # lazy: models imports transformers

    return variant_of(preset)


def split_model_table(table: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """A ``[model]`` table as ``(preset, variant, other keys)``: preset ``"tiny"`` and the preset's own
    variant (:func:`preset_variant`) where the table names none. Every job config reads its model so."""
    rest = dict(table)
    preset = rest.pop("preset", "tiny")
    return preset, rest.pop("variant", None) or preset_variant(preset), rest


def _build_section(name: str, cls: type, table: Mapping[str, Any]) -> Any:
    if name == "model":
        preset, variant, fields = split_model_table(table)
        return ModelConfig(preset=preset, variant=variant, fields=fields)
    return typed_section(name, cls, table)


def typed_section(name: str, cls: type, table: Mapping[str, Any]) -> Any:
    """The dataclass ``cls`` built from config table ``name``; every job config's sections are read by it.

    Raises ``ValueError`` naming ``name.key`` for a key ``cls`` does not have or a value of another
    type than the field's annotation (an int is accepted for a float and converted; a bool is not an
    int). Ranges are the caller's to check.
    """
    if not isinstance(table, Mapping):
        raise ValueError(f"{name} must be a table of keys, got {table!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in table.items():
        if key not in known:
            raise ValueError(f"unknown config key {name}.{key}; {name} accepts {sorted(known)}")
        if not _type_ok(value, known[key].type):
            raise ValueError(f"{name}.{key} must be of type {known[key].type}, got {value!r}")
    kwargs = {k: float(v) if known[k].type == "float" else v for k, v in table.items()}
    return cls(**kwargs)


def _check_values(cfg: JobConfig) -> None:
    for key, choices in _CHOICES.items():
        section, attr = key.split(".")
        value = getattr(getattr(cfg, section), attr)
        if value not in choices:
            raise ValueError(f"{key} must be one of {choices}, got {value!r}")
    for key, (lo, hi) in _RANGES.items():
        section, attr = key.split(".")
        value = getattr(getattr(cfg, section), attr)
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise ValueError(f"{key} must be {bound}, got {value!r}")
    if cfg.schedule.warmup_steps > cfg.schedule.steps:
        raise ValueError(f"schedule.warmup_steps must be <= schedule.steps ({cfg.schedule.steps}), "
                         f"got {cfg.schedule.warmup_steps}")
    if cfg.eval.tokens < cfg.data.seq_len + 1:
        raise ValueError(f"eval.tokens must be >= data.seq_len + 1 = {cfg.data.seq_len + 1} (one validation window), "
                         f"got {cfg.eval.tokens}")
    if cfg.run.tbptt and cfg.data.sampling != "sequential":
        raise ValueError("run.tbptt = true needs data.sampling = 'sequential' (each row must read on where it "
                         f"stopped), got data.sampling = {cfg.data.sampling!r}")
    if cfg.run.tbptt and cfg.model.variant == "transformer":
        raise ValueError("run.tbptt needs a bounded state; model.variant 'transformer' keeps every key, "
                         "use 'swa' or a memory variant")
    if not 0 < cfg.data.val_fraction < 1:
        raise ValueError(f"data.val_fraction must be in (0, 1) (validation needs documents), got {cfg.data.val_fraction!r}")
    if cfg.data.reverse_complement and cfg.data.tokenizer != "dna":
        raise ValueError("data.reverse_complement = true needs data.tokenizer = 'dna' (one token per base, so a window "
                         f"reversed and complemented is the other strand's tokens), got {cfg.data.tokenizer!r}")
    from ..data.corpora import CORPORA

    if cfg.data.corpus not in CORPORA:
        raise ValueError(f"data.corpus must be one of {CORPORA}, got {cfg.data.corpus!r}")


def _check_model(cfg: JobConfig) -> None:
    # Built here, not in the loop, so that a bad model field fails before data preparation.
    from ..models import PRESETS, TitansConfig

    if cfg.model.preset not in PRESETS:
        raise ValueError(f"model.preset must be one of {tuple(PRESETS)}, got {cfg.model.preset!r}")
    known = {f.name for f in dataclasses.fields(TitansConfig)} - {"variant"}
    for key in cfg.model.fields:
        if key not in known:
            raise ValueError(f"unknown config key model.{key}; model accepts preset, variant and the "
                             f"TitansConfig fields {sorted(known)}")
    try:
        TitansConfig.from_preset(cfg.model.preset, variant=cfg.model.variant, **cfg.model.fields)
    except (ValueError, TypeError) as err:
        raise ValueError(f"invalid [model] section: {err}") from err


def config_from_dict(raw: Mapping[str, Any]) -> JobConfig:
    """Build and validate a :class:`JobConfig` from a nested dict (a parsed TOML file)."""
    raw = dict(raw)
    raw.pop("base", None)
    top = {}
    for key in ("name", "out_dir"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key]:
                raise ValueError(f"{key} must be a non-empty string, got {raw[key]!r}")
            top[key] = raw.pop(key)
    sections = {}
    for name, table in raw.items():
        if name not in _SECTIONS:
            raise ValueError(f"unknown config key {name}; a job config has name, out_dir, base and the sections "
                             f"{sorted(_SECTIONS)}")
        if not isinstance(table, Mapping):
            raise ValueError(f"{name} must be a table of keys, got {table!r}")
        sections[name] = _build_section(name, _SECTIONS[name], table)
    if "name" in top and "out_dir" not in top:
        top["out_dir"] = f"runs/{top['name']}"
    cfg = JobConfig(**top, **sections)
    _check_values(cfg)
    _check_model(cfg)
    return cfg


def merge_tables(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s keys replacing its own, nested tables merged key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge_tables(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A TOML file as a dict, merged over the file its ``base`` key names (relative to it), recursively."""
    path = path.resolve()
    if path in seen:
        raise ValueError(f"base: config files include each other in a loop: {' -> '.join(map(str, seen + (path,)))}")
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    base = raw.get("base")
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ValueError(f"base must be a path string, got {base!r}")
    return merge_tables(read_toml(path.parent / base, seen + (path,)), raw)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["model.variant=mal", "optim.lr=3e-4"]`` -> nested dict. Values are TOML values; a bare word is a string."""
    out: dict[str, Any] = {}
    for item in items:
        text = item[2:] if item.startswith("--") else item
        key, sep, value = text.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise ValueError(f"overrides must look like --section.key=value, got {item!r}")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r} conflicts with an earlier override of {part}")
        node[parts[-1]] = parsed
    return out


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> JobConfig:
    """The job of TOML file ``path`` (defaults only if None) with ``--section.key=value`` ``overrides``."""
    raw = read_toml(Path(path)) if path is not None else {}
    return config_from_dict(merge_tables(raw, parse_overrides(overrides)))
