"""Generative few-shot memories on Omniglot: Variational Memory Addressing, an episodic-semantic memory after VSM,
and their VAE baselines (``titanmem fewshot``).

A domain subpackage (docs/design.md, "Domains"): it imports from the strata and is never imported by
them. ``omniglot`` reads the data, ``episodes`` draws memories and queries, ``bounds`` holds the
importance-weighted bound and VIMCO, ``models`` the VMA and the VAE baselines, ``vsm`` the
episodic-semantic memory after VSM, ``train`` training and evaluation, ``report`` tables and grids,
``cli`` the ``titanmem fewshot`` commands.
"""

from .bounds import iw_bound, vimco_surrogate
from .episodes import EpisodeBatch, EpisodeSampler
from .models import MODELS, VAE, VMA, ContextVAE, FewShotConfig, FewShotModel, build_model
from .omniglot import Omniglot, load_omniglot, load_one_shot_runs, split_by_alphabet, split_by_character
from .train import FewShotJob, evaluate, load_model, train_fewshot
from .vsm import VSM

__all__ = [
    "MODELS", "VAE", "VMA", "ContextVAE", "FewShotConfig", "FewShotModel", "build_model", "iw_bound", "vimco_surrogate",
    "EpisodeBatch", "EpisodeSampler", "Omniglot", "load_omniglot", "load_one_shot_runs", "split_by_alphabet",
    "split_by_character", "FewShotJob", "VSM", "evaluate", "load_model", "train_fewshot",
]
