"""``titanmem dna tasks|finetune|eval|report``: the DNA classification tasks from the command line.

Pretraining is not here: it is ``titanmem train --config configs/dna/<variant>.toml`` (the one
language-modelling job, on a DNA corpus with a nucleotide tokenizer; validation in bits per base),
and ``titanmem eval ppl`` scores held-out DNA by position. These commands cover what language
modelling has no command for: writing the tasks, fine-tuning a classifier, scoring one, and the
table of many fine-tuning runs over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli_args import CommandError, nonneg_int, positive_int

__all__ = [
    "add_eval_arguments", "add_finetune_arguments", "add_report_arguments", "add_tasks_arguments", "run_eval",
    "run_finetune", "run_report", "run_tasks",
]


def add_tasks_arguments(parser: argparse.ArgumentParser) -> None:
    from .tasks import TASKS

    parser.description = ("Build the DNA classification tasks from the fetched genomes (titanmem data dna-human, "
                          "dna-worm, dna-ecoli, dna-janggu) and write them in the Genomic Benchmarks layout: "
                          "<out>/<task>/{train,test}/<class>/<n>.txt and metadata.json.")
    parser.add_argument("--out", default="runs/dna/benchmarks", help="folder to write the task folders into "
                                                                      "(default runs/dna/benchmarks)")
    parser.add_argument("--task", action="append", choices=tuple(TASKS), default=None,
                        help="a task to build (repeatable; default: all)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the window draws (default 0)")
    parser.add_argument("--data-dir", default=None, help="folder of the fetched packages (default "
                                                         "$TITANMEM_DATA_DIR/dna or ~/.cache/titanmem/dna)")


def run_tasks(args: argparse.Namespace) -> int:
    from ..data.documents import CorpusNotFoundError
    from .tasks import TASKS, build_task, write_benchmark

    for name in args.task or list(TASKS):
        try:
            task = build_task(name, args.data_dir, seed=args.seed)
        except (CorpusNotFoundError, ValueError) as err:
            raise CommandError(err) from err
        folder = write_benchmark(task, args.out)
        counts = task.counts()
        print(f"{name}: {folder}  train {counts['train']}  test {counts['test']}")
    return 0


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Fine-tune a sequence classifier (TitansForSequenceClassification) on a Genomic "
                          "Benchmarks folder and score its test split; from scratch or from a DNA pretraining run "
                          "(--model.init=<run folder>). Writes <out_dir>/results.json, train_log.csv and model/.")
    parser.epilog = "Any --section.key=value after the options overrides the config file."
    parser.add_argument("--config", default=None, help="TOML fine-tuning job, required (e.g. "
                                                       "configs/dna/finetune/mac.toml)")


def run_finetune(args: argparse.Namespace) -> int:
    from ..data.documents import CorpusNotFoundError
    from ..train.checkpoint import CheckpointError
    from .finetune import load_finetune_job, run_finetune_job

    if args.config is None:
        raise CommandError("--config is required: a fine-tuning job, e.g. --config configs/dna/finetune/mac.toml")
    try:
        job = load_finetune_job(args.config, args.overrides)
    except (ValueError, TypeError) as err:
        raise CommandError(err) from err
    try:
        run_finetune_job(job)
    except (FileNotFoundError, CheckpointError, CorpusNotFoundError) as err:
        raise CommandError(err) from err
    except ValueError as err:  # a folder that is not of the Genomic Benchmarks layout, a vocabulary mismatch
        raise CommandError(err) from err
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Score a fine-tuned classifier (<out_dir>/model of titanmem dna finetune) on the test "
                          "split of a Genomic Benchmarks folder; prints the accuracy as JSON.")
    parser.add_argument("model", help="the classifier's folder (<out_dir>/model)")
    parser.add_argument("task", help="a Genomic Benchmarks task folder ({train,test}/<class>/*.txt)")
    parser.add_argument("--split", choices=("train", "test"), default="test", help="split to score (default test)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="sequences per forward (default 64)")
    parser.add_argument("--both-strands", action="store_true",
                        help="classify by the mean probability of each sequence and its reverse complement")


def run_eval(args: argparse.Namespace) -> int:
    from ..data.tokenizers import get_tokenizer
    from ..models import TitansForSequenceClassification
    from .finetune import evaluate_classifier
    from .tasks import load_benchmark

    folder = Path(args.model)
    job_file = folder / "finetune_job.json"
    if not job_file.is_file():
        raise CommandError(f"model must be a folder written by titanmem dna finetune (with finetune_job.json), "
                           f"got {str(folder)!r}")
    try:
        task = load_benchmark(args.task)
    except (FileNotFoundError, ValueError) as err:
        raise CommandError(err) from err
    model = TitansForSequenceClassification.from_pretrained(folder).eval()
    trained_on = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if trained_on != list(task.classes):
        raise CommandError(f"task's classes {list(task.classes)} must be the model's {trained_on}")
    tokenizer = get_tokenizer(json.loads(job_file.read_text())["task"]["tokenizer"])
    result = evaluate_classifier(model, tokenizer, task.split(args.split), task.classes, args.batch_size,
                                 both_strands=args.both_strands)
    print(json.dumps({"task": task.name, "split": args.split, "both_strands": args.both_strands, **result}, indent=2))
    return 0


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("The table of many fine-tuning runs: test accuracy per variant and task, mean over seeds "
                          "from scratch and from pretraining (each seed in brackets), and the change pretraining "
                          "makes on the seeds that have both. Runs of another budget get their own row.")
    parser.add_argument("runs", nargs="+", help="titanmem dna finetune run folders, or their results.json files")
    parser.add_argument("--both-strands", action="store_true",
                        help="use each run's both-strands score (test_both_strands) instead of the one-strand one")
    parser.add_argument("--paper", action="store_true",
                        help="also print the Titans paper's Table 4 (Genomic Benchmarks, a different data set)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    parser.add_argument("--skip-unfinished", action="store_true",
                        help="leave out run folders without results.json (runs still training), naming them")


def run_report(args: argparse.Namespace) -> int:
    from .report import markdown_table, paper_table, read_record, summarize

    runs = list(args.runs)
    if args.skip_unfinished:
        unfinished = [r for r in runs if Path(r).is_dir() and not (Path(r) / "results.json").is_file()]
        for run in unfinished:
            print(f"skipped (no results.json yet): {run}", file=sys.stderr)
        runs = [r for r in runs if r not in unfinished]
    try:
        rows = summarize([read_record(run) for run in runs], both_strands=args.both_strands)
    except FileNotFoundError as err:
        raise CommandError(f"{err} (a run still training? --skip-unfinished leaves those out)") from err
    except ValueError as err:
        raise CommandError(err) from err
    print(markdown_table(rows), end="")
    if args.paper:
        print()
        print(paper_table(), end="")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0
