"""Generative few-shot memories on Omniglot: Variational Memory Addressing, an episodic-semantic memory after VSM,
and their VAE baselines (``titanmem fewshot``).

A domain subpackage (docs/design.md, "Domains"): it imports from the strata and is never imported by
them. ``omniglot`` reads the data, ``episodes`` draws memories and queries.
"""

from .episodes import EpisodeBatch, EpisodeSampler
from .omniglot import Omniglot, load_omniglot, load_one_shot_runs, split_by_alphabet, split_by_character

__all__ = [
    "EpisodeBatch", "EpisodeSampler", "Omniglot", "load_omniglot", "load_one_shot_runs", "split_by_alphabet",
    "split_by_character",
]
