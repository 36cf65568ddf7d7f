"""Few-shot episodes: a memory of C characters' drawings and a query drawing of one of them.

An episode draws ``classes`` (C) distinct characters, puts ``memory_size`` drawings of them in memory
(spread as evenly as possible: each character gets ``memory_size // C`` and the first
``memory_size % C`` one more), picks one of the C characters uniformly for the query and draws its
query from a drawer whose drawing is not in memory. With C = 1 this is the layout of VMA's Table 1
(Bornschein et al., 2017): the memory holds 1 to 19 other drawings of the query's character.

Images are binarised as is usual for Omniglot likelihoods: *dynamic* binarisation samples every pixel
from Bernoulli(ink) anew each time an image is drawn (training: a fresh binary image every step);
*fixed* binarisation samples every image of the data once, with ``binarize_seed``, so that an
evaluation sees the same binary images every time it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_int
from .omniglot import Omniglot

__all__ = ["BINARIZATION", "EpisodeBatch", "EpisodeSampler", "memory_layout"]

BINARIZATION = ("dynamic", "fixed", "none")


@dataclass(frozen=True)
class EpisodeBatch:
    """A batch of episodes.

    Attributes:
        memory: float32 ``[B, M, S, S]`` (binary unless binarisation is ``"none"``).
        query: float32 ``[B, S, S]``.
        memory_labels: int64 ``[B, M]``, the episode's class (0..C-1) of each memory entry.
        query_label: int64 ``[B]``, the query's class (0..C-1).
        memory_index, query_index: int64 ``[B, M]`` and ``[B]``, rows of the data the images came from.
    """

    memory: torch.Tensor
    query: torch.Tensor
    memory_labels: torch.Tensor
    query_label: torch.Tensor
    memory_index: torch.Tensor
    query_index: torch.Tensor


def memory_layout(classes: int, memory_size: int) -> list[int]:
    """Entries per class for ``memory_size`` entries over ``classes`` classes (the first ones get one more).

    Raises:
        TypeError, ValueError: either is not an int >= 1, or ``classes > memory_size`` (a class with no entry).
    """
    check_int("classes", classes, 1)
    check_int("memory_size", memory_size, 1)
    if classes > memory_size:
        raise ValueError(f"classes must be <= memory_size (every class needs an entry in memory), got classes "
                         f"{classes} > memory_size {memory_size}")
    return [memory_size // classes + (c < memory_size % classes) for c in range(classes)]


class EpisodeSampler:
    """Draws reproducible batches of episodes from one split of Omniglot.

    Args:
        data: the split (its characters are the only ones episodes use).
        classes: characters per episode, C >= 1.
        memory_size: drawings in memory, >= C.
        binarize: ``"dynamic"`` (fresh Bernoulli samples per draw), ``"fixed"`` (one sample per image,
            from ``binarize_seed``) or ``"none"`` (the ink probabilities themselves).
        seed: seeds the choice of episodes and the dynamic binarisation; the same seed gives the same batches.
        binarize_seed: seed of the fixed binarisation.

    Raises:
        ValueError: C larger than the memory or than the characters of ``data``, a character with too
            few drawings for its share of the memory plus a query, or an unknown ``binarize``.
    """

    def __init__(self, data: Omniglot, classes: int, memory_size: int, binarize: str = "dynamic", seed: int = 0,
                 binarize_seed: int = 0) -> None:
        self.layout = memory_layout(classes, memory_size)
        if binarize not in BINARIZATION:
            raise ValueError(f"binarize must be one of {BINARIZATION}, got {binarize!r}")
        check_int("seed", seed, 0)
        check_int("binarize_seed", binarize_seed, 0)
        n_chars = len(data.characters)
        if classes > n_chars:
            raise ValueError(f"classes must be <= the {n_chars} characters of the data, got {classes}")
        self.data = data
        self.classes, self.memory_size, self.binarize = classes, memory_size, binarize
        rows = [torch.nonzero(data.character == c).flatten().numpy() for c in range(n_chars)]
        fewest = min(len(r) for r in rows)
        if self.layout[0] + 1 > fewest:
            raise ValueError(f"memory_size {memory_size} over {classes} classes puts {self.layout[0]} drawings of a "
                             f"character in memory, plus a query: a character of the data has only {fewest} drawings")
        self._rows = rows
        self._rng = np.random.default_rng(seed)
        self._generator = torch.Generator().manual_seed(seed)
        self._images = data.images
        if binarize == "fixed":
            self._images = torch.bernoulli(data.images, generator=torch.Generator().manual_seed(binarize_seed))

    def sample(self, batch_size: int) -> EpisodeBatch:
        """``batch_size`` episodes (see :class:`EpisodeBatch`)."""
        check_int("batch_size", batch_size, 1)
        memory_index = np.empty((batch_size, self.memory_size), dtype=np.int64)
        memory_labels = np.empty((batch_size, self.memory_size), dtype=np.int64)
        query_index = np.empty(batch_size, dtype=np.int64)
        query_label = self._rng.integers(0, self.classes, size=batch_size)
        for b in range(batch_size):
            chars = self._rng.choice(len(self._rows), size=self.classes, replace=False)
            slot = 0
            for c, (char, count) in enumerate(zip(chars, self.layout)):
                take = count + (c == query_label[b])
                drawn = self._rng.choice(self._rows[char], size=take, replace=False)
                memory_index[b, slot:slot + count] = drawn[:count]
                memory_labels[b, slot:slot + count] = c
                slot += count
                if c == query_label[b]:
                    query_index[b] = drawn[count]
        memory_index_t, query_index_t = torch.from_numpy(memory_index), torch.from_numpy(query_index)
        memory, query = self._images[memory_index_t], self._images[query_index_t]
        if self.binarize == "dynamic":
            memory = torch.bernoulli(memory, generator=self._generator)
            query = torch.bernoulli(query, generator=self._generator)
        return EpisodeBatch(memory, query, torch.from_numpy(memory_labels), torch.from_numpy(query_label),
                            memory_index_t, query_index_t)

    def state_dict(self) -> dict:
        """The position of the episode and binarisation generators (to resume a run where it stopped)."""
        return {"rng": self._rng.bit_generator.state, "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`."""
        self._rng.bit_generator.state = state["rng"]
        self._generator.set_state(state["generator"])

    def batches(self, batch_size: int):
        """An endless iterator of :meth:`sample` batches (what the training loop draws from)."""
        while True:
            yield self.sample(batch_size)
