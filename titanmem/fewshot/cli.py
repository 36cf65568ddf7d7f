"""``titanmem fewshot train|eval|sample``: few-shot generation on Omniglot with VMA, VSM and VAE baselines."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..cli_args import CommandError, int_list_at_least, positive_float, positive_int
from .models import MODELS

__all__ = [
    "add_eval_arguments", "add_sample_arguments", "add_train_arguments", "run_eval", "run_sample", "run_train",
]

_TABLE_SIZES = [1, 2, 3, 4, 5, 10, 19]  # VMA's Table 1 columns


def _names(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", action="append", default=None,
                        help="Omniglot zip or folder, repeat for several (default: the two small background sets in "
                             "data/omniglot; the full images_background.zip/images_evaluation.zip work too)")
    parser.add_argument("--test-alphabets", type=_names, default=None,
                        help="comma-separated alphabets held out for evaluation (default: Early_Aramaic,Sanskrit,Tagalog)")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``titanmem fewshot train``."""
    parser.add_argument("--model", choices=MODELS, required=True, help="the model to train")
    _add_data(parser)
    parser.add_argument("--classes", type=int_list_at_least(1), default=[1, 2],
                        help="comma-separated numbers of characters per training memory (default 1,2)")
    parser.add_argument("--memory-sizes", type=int_list_at_least(1), default=_TABLE_SIZES,
                        help="comma-separated training memory sizes (default 1,2,3,4,5,10,19)")
    parser.add_argument("--steps", type=positive_int, default=2000, help="optimizer steps (default 2000)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="episodes per step (default 32)")
    parser.add_argument("--samples", type=positive_int, default=4,
                        help="importance samples K of the training bound (default 4; >= 2 for vma and vsm)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the episodes (default 0)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints (default 500)")
    parser.add_argument("--config", default=None,
                        help="JSON of model fields, e.g. '{\"hidden\": 128}' (default: FewShotConfig's defaults)")
    parser.add_argument("--out", default=None, help="run folder (default runs/fewshot/<model>)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a run folder written by 'titanmem fewshot train' (its newest checkpoint) or a checkpoint folder")
    parser.add_argument("--model", choices=MODELS, default=None,
                        help="if given, the checkpoint's model must be this one")
    _add_data(parser)
    parser.add_argument("--seed", type=int, default=1234, help="seed of the episodes and samples (default 1234)")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``titanmem fewshot eval``."""
    _add_checkpoint(parser)
    parser.add_argument("--classes", type=int_list_at_least(1), default=[1, 2], help="comma-separated C (default 1,2)")
    parser.add_argument("--memory-sizes", type=int_list_at_least(1), default=_TABLE_SIZES,
                        help="comma-separated memory sizes (default 1,2,3,4,5,10,19)")
    parser.add_argument("--episodes", type=positive_int, default=200, help="test episodes per cell (default 200)")
    parser.add_argument("--samples", type=positive_int, default=1000,
                        help="importance samples of the bound (default 1000, as in VMA's Table 1)")
    parser.add_argument("--one-shot-runs", default=None,
                        help="all_runs.zip of Lake et al.: also score its 400 one-shot episodes (20 characters of "
                             "unseen evaluation alphabets in memory); default data/omniglot/all_runs.zip when present, "
                             "'none' to skip")
    parser.add_argument("--out", default=None, help="JSON results file (default <run>/eval.json)")


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``titanmem fewshot sample``."""
    _add_checkpoint(parser)
    parser.add_argument("--classes", type=positive_int, default=1, help="characters in each memory (default 1)")
    parser.add_argument("--memory-size", type=positive_int, default=4, help="drawings in each memory (default 4)")
    parser.add_argument("--episodes", type=positive_int, default=6, help="memories, one grid row each (default 6)")
    parser.add_argument("--count", type=positive_int, default=8, help="samples per memory (default 8)")
    parser.add_argument("--out", default=None, help="PNG file (default <run>/samples_C<C>_M<size>.png)")


def _fields(text: str | None) -> dict:
    fields = json.loads(text) if text else {}
    if not isinstance(fields, dict):
        raise ValueError(f"--config must be a JSON object, got {text!r}")
    return fields


def run_train(args: argparse.Namespace) -> int:
    """Train, then write ``<out>/train.json`` (job, loss history, wall time); checkpoints under ``<out>/checkpoints``."""
    import torch

    from .omniglot import DEFAULT_SOURCES, DEFAULT_TEST_ALPHABETS
    from .train import FewShotJob, train_fewshot, write_json

    try:
        job = FewShotJob(model=args.model, data=tuple(args.data or [str(p) for p in DEFAULT_SOURCES]),
                         test_alphabets=tuple(args.test_alphabets or DEFAULT_TEST_ALPHABETS),
                         classes=tuple(args.classes), memory_sizes=tuple(args.memory_sizes), steps=args.steps,
                         batch_size=args.batch_size, samples=args.samples, lr=args.lr, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, model_config=_fields(args.config))
        splits = _splits(job.data, job.test_alphabets, job.config().image_size)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise CommandError(err) from err
    out = Path(args.out or f"runs/fewshot/{args.model}")
    began = time.perf_counter()
    model, history = train_fewshot(job, out, progress=not args.quiet, resume=args.resume, splits=splits)
    seconds = time.perf_counter() - began
    write_json({"job": job.to_dict(), "parameters": sum(p.numel() for p in model.parameters()),
                "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(),
                "train_characters": len(splits[0].characters), "test_characters": len(splits[1].characters),
                "history": history}, out / "train.json")
    print(f"{args.model}: {job.steps} steps in {seconds:.0f} s, last training NLL bound {history[-1]['loss']:.2f} nats; "
          f"wrote {out / 'train.json'} and {out / 'checkpoints'}")
    return 0


_READ: dict = {}


def _splits(data, test_alphabets, image_size):
    """The splits, read once per process for the same files (unchanged since) and settings: train, eval and
    sample in one process (a notebook, the tests) decode the PNGs once."""
    from .train import load_splits

    stamp = tuple((str(Path(d).resolve()), Path(d).stat().st_mtime_ns) if Path(d).exists() else (str(d), None)
                  for d in data)
    key = (stamp, tuple(test_alphabets), image_size)
    if key not in _READ:
        _READ.clear()
        _READ[key] = load_splits(tuple(data), tuple(test_alphabets), image_size)
    return _READ[key]


def _load(args: argparse.Namespace):
    """The checkpoint's model and the test split, or a CommandError naming what is wrong."""
    from ..train.checkpoint import CheckpointError
    from .train import load_model

    try:
        model, job = load_model(args.checkpoint)
    except (ValueError, FileNotFoundError, CheckpointError, KeyError) as err:
        raise CommandError(f"--checkpoint {args.checkpoint}: {err}") from err
    name = job.get("model")
    if args.model is not None and name != args.model:
        raise CommandError(f"--model {args.model}: the checkpoint holds a {name} model")
    try:
        _, test = _splits(args.data or job["data"], args.test_alphabets or job["test_alphabets"], model.config.image_size)
    except (ValueError, FileNotFoundError) as err:
        raise CommandError(err) from err
    return model, name, test


def run_eval(args: argparse.Namespace) -> int:
    """The bound on test episodes by (C, memory size): a table on stdout and a JSON file."""
    from .omniglot import DATA_DIR, load_one_shot_runs
    from .report import format_table
    from .train import evaluate, evaluate_one_shot, write_json

    model, name, test = _load(args)
    cells = [(c, m) for c in args.classes for m in args.memory_sizes if c <= m]
    if not cells:
        raise CommandError(f"--classes {args.classes} and --memory-sizes {args.memory_sizes}: no pair has C <= memory size")
    from tqdm.auto import tqdm

    results = []
    began = time.perf_counter()
    for c, m in tqdm(cells, desc=f"eval {name}"):
        try:
            results.append(evaluate(model, test, c, m, episodes=args.episodes, samples=args.samples, seed=args.seed))
        except ValueError as err:
            raise CommandError(err) from err
    one_shot = None
    runs_path = args.one_shot_runs
    if runs_path is None and (DATA_DIR / "all_runs.zip").exists():
        runs_path = str(DATA_DIR / "all_runs.zip")
    if runs_path and runs_path != "none":
        try:
            runs = load_one_shot_runs(runs_path, image_size=model.config.image_size)
        except (ValueError, FileNotFoundError) as err:
            raise CommandError(f"--one-shot-runs {runs_path}: {err}") from err
        one_shot = evaluate_one_shot(model, runs, samples=args.samples, seed=args.seed)
    seconds = time.perf_counter() - began
    out = Path(args.out) if args.out else Path(args.checkpoint) / "eval.json"
    if out.suffix != ".json":
        out = out / "eval.json"
    write_json({"model": name, "checkpoint": str(args.checkpoint), "seed": args.seed, "eval_seconds": round(seconds, 1),
                "results": results, "one_shot_runs": one_shot}, out)
    print(format_table(results, name))
    if one_shot is not None:
        line = f"one-shot runs ({one_shot['episodes']} episodes, 20 characters in memory): NLL bound {one_shot['nll']:.2f}"
        if "address_accuracy" in one_shot:
            line += f", address accuracy {one_shot['address_accuracy']:.3f}"
        print(line)
    print(f"wrote {out}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    """A PNG grid: memories of test characters beside samples generated from them."""
    import torch

    from .episodes import EpisodeSampler
    from .report import save_sample_grid

    model, name, test = _load(args)
    try:
        sampler = EpisodeSampler(test, args.classes, args.memory_size, binarize="fixed", seed=args.seed,
                                 binarize_seed=args.seed)
    except ValueError as err:
        raise CommandError(err) from err
    batch = sampler.sample(args.episodes)
    torch.manual_seed(args.seed)
    samples = model.generate(batch.memory, args.count)
    default = Path(args.checkpoint) / f"samples_C{args.classes}_M{args.memory_size}.png"
    out = Path(args.out) if args.out else default
    save_sample_grid(batch.memory, samples, out,
                     title=f"{name}: {args.classes} unseen character(s), {args.memory_size} in memory")
    print(f"wrote {out}")
    return 0
