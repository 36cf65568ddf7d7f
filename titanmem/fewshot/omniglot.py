"""Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015): reading the files, 28x28 images, splits by character.

Omniglot holds 1,623 handwritten characters of 50 alphabets, each drawn once by 20 different people
("drawers"), as 105x105 black-on-white PNGs laid out ``<alphabet>/<characterNN>/<IIII>_<DD>.png``
(``IIII`` the character's number over the whole set, ``DD`` the drawer). The repository ships the
two small background sets and the 20 one-shot runs (``data/omniglot/``, MIT licence);
:func:`load_omniglot` reads those zips, the full ``images_background.zip`` /
``images_evaluation.zip``, or any extracted folder of them.

Images are turned into ink probabilities the usual way for generative models on Omniglot: ink is 1
and paper 0, and the 105x105 image is reduced to ``image_size`` squared (default 28) by averaging
the pixels each output pixel covers (PIL's box filter), so a value is the fraction of that area that
is inked. :mod:`titanmem.fewshot.episodes` binarises them (dynamically for training, with a fixed
seed for evaluation).

A character present in several sources (Greek and Latin are in both small background sets, the
same 20 drawings) is kept once, from the first source that holds it.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checks import check_fraction, check_int

__all__ = [
    "DATA_DIR", "DEFAULT_SOURCES", "DEFAULT_TEST_ALPHABETS", "Omniglot", "load_omniglot", "load_one_shot_runs",
    "split_by_alphabet", "split_by_character", "to_ink",
]

# data/omniglot/ of a clone of the repository (titanmem/fewshot/ -> titanmem/ -> the root).
DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "omniglot"
DEFAULT_SOURCES = (DATA_DIR / "images_background_small1.zip", DATA_DIR / "images_background_small2.zip")
# Held out whole: no character of these alphabets is seen in training (81 of the 242 characters of
# the two small sets; Sanskrit, Tagalog and Early Aramaic are scripts unlike the five kept).
DEFAULT_TEST_ALPHABETS = ("Early_Aramaic", "Sanskrit", "Tagalog")

_FILE = re.compile(r"^(\d+)_(\d+)\.png$")
_SOURCE_SIZE = 105


@dataclass(frozen=True)
class Omniglot:
    """Images of Omniglot characters with their character and drawer.

    Attributes:
        images: float32 ``[N, S, S]``, ink probability in [0, 1] (1 = ink).
        character: int64 ``[N]``, index into ``characters``.
        drawer: int64 ``[N]``, the drawer's number from the file name (1-20 in Omniglot).
        characters: ``(alphabet, character folder)`` of each character index, e.g. ``("Greek", "character01")``.
    """

    images: torch.Tensor
    character: torch.Tensor
    drawer: torch.Tensor
    characters: tuple[tuple[str, str], ...]

    @property
    def alphabets(self) -> tuple[str, ...]:
        """The alphabets present, sorted."""
        return tuple(sorted({a for a, _ in self.characters}))

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, keep: Iterable[int]) -> Omniglot:
        """The images of the character indices ``keep``, re-indexed ``0..len(keep)-1`` in the order given."""
        keep = list(keep)
        new_index = torch.full((len(self.characters),), -1, dtype=torch.long)
        new_index[torch.as_tensor(keep, dtype=torch.long)] = torch.arange(len(keep))
        rows = new_index[self.character] >= 0
        return Omniglot(self.images[rows], new_index[self.character[rows]], self.drawer[rows],
                        tuple(self.characters[i] for i in keep))


def to_ink(png: bytes | Image.Image, image_size: int = 28) -> np.ndarray:
    """One Omniglot PNG as float32 ``[image_size, image_size]`` ink fractions in [0, 1] (box-filter reduction)."""
    image = png if isinstance(png, Image.Image) else Image.open(io.BytesIO(png))
    ink = 1.0 - np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if ink.shape != (image_size, image_size):
        ink = np.asarray(Image.fromarray(ink, mode="F").resize((image_size, image_size), Image.Resampling.BOX))
    return np.clip(ink, 0.0, 1.0)


def _members(source: Path) -> Iterable[tuple[str, str, str, bytes]]:
    """``(alphabet, character, file name, PNG bytes)`` of every character image in a zip or folder."""
    if source.is_dir():
        for path in sorted(source.rglob("*.png")):
            parts = path.parts
            if len(parts) >= 3 and _FILE.match(parts[-1]):
                yield parts[-3], parts[-2], parts[-1], path.read_bytes()
    else:
        with zipfile.ZipFile(source) as archive:
            for name in sorted(archive.namelist()):
                parts = name.split("/")
                if len(parts) >= 3 and _FILE.match(parts[-1]) and not parts[0].startswith("__MACOSX"):
                    yield parts[-3], parts[-2], parts[-1], archive.read(name)


def load_omniglot(sources: str | Path | Sequence[str | Path] = DEFAULT_SOURCES, image_size: int = 28) -> Omniglot:
    """Read Omniglot images from zip files or folders laid out ``<alphabet>/<character>/<IIII>_<DD>.png``.

    Args:
        sources: one path or several: the repository's two small background zips by default; the full
            ``images_background.zip`` and ``images_evaluation.zip`` (or their extracted folders) work the same.
        image_size: side of the returned images in pixels (1 to 105; 28 as in the literature).

    Returns:
        An :class:`Omniglot`, characters ordered by alphabet then character folder, each character
        once (the first source holding it wins).

    Raises:
        FileNotFoundError: a source does not exist (the message names ``sources`` and the path).
        ValueError: ``image_size`` out of range, a source that is neither a zip nor a folder, or one that
            holds no character images.
    """
    check_int("image_size", image_size, 1)
    if image_size > _SOURCE_SIZE:
        raise ValueError(f"image_size must be <= {_SOURCE_SIZE} (the size of the Omniglot PNGs), got {image_size}")
    paths = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
    if not paths:
        raise ValueError("sources must name at least one Omniglot zip or folder, got none")
    found: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"sources: {str(path)!r} does not exist (Omniglot zips or folders, e.g. "
                                    f"{DEFAULT_SOURCES[0]})")
        if not path.is_dir() and not zipfile.is_zipfile(path):
            raise ValueError(f"sources: {str(path)!r} is neither a folder nor a zip file")
        here: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
        matched = 0
        for alphabet, character, name, png in _members(path):
            matched += 1
            if (alphabet, character) in found:
                continue  # the same character from an earlier source (Greek, Latin in both small sets)
            drawer = int(_FILE.match(name).group(2))
            here.setdefault((alphabet, character), []).append((drawer, to_ink(png, image_size)))
        if not matched:
            raise ValueError(f"sources: {str(path)!r} holds no Omniglot images (<alphabet>/<character>/<IIII>_<DD>.png)")
        found.update(here)
    characters = tuple(sorted(found))
    images, character, drawer = [], [], []
    for index, key in enumerate(characters):
        for d, ink in sorted(found[key], key=lambda item: item[0]):
            images.append(ink)
            character.append(index)
            drawer.append(d)
    return Omniglot(torch.from_numpy(np.stack(images)), torch.tensor(character, dtype=torch.long),
                    torch.tensor(drawer, dtype=torch.long), characters)


def split_by_alphabet(data: Omniglot, test_alphabets: Sequence[str] = DEFAULT_TEST_ALPHABETS) -> tuple[Omniglot, Omniglot]:
    """``(train, test)``: the test split holds every character of ``test_alphabets``, training the rest.

    Raises:
        ValueError: an alphabet of ``test_alphabets`` is not in ``data``, or either split would be empty.
    """
    missing = sorted(set(test_alphabets) - set(data.alphabets))
    if missing:
        raise ValueError(f"test_alphabets {missing} are not in the data; its alphabets are {list(data.alphabets)}")
    test = [i for i, (alphabet, _) in enumerate(data.characters) if alphabet in set(test_alphabets)]
    train = [i for i, (alphabet, _) in enumerate(data.characters) if alphabet not in set(test_alphabets)]
    if not train or not test:
        raise ValueError(f"test_alphabets {list(test_alphabets)} leave an empty split ({len(train)} training, "
                         f"{len(test)} test characters)")
    return data.subset(train), data.subset(test)


def split_by_character(data: Omniglot, test_fraction: float, seed: int = 0) -> tuple[Omniglot, Omniglot]:
    """``(train, test)`` with ``round(test_fraction * characters)`` characters (at least 1) drawn by ``seed`` for test.

    Raises:
        ValueError: ``test_fraction`` outside (0, 1), or fewer than 2 characters.
    """
    check_fraction("test_fraction", test_fraction)
    if test_fraction == 0.0:
        raise ValueError("test_fraction must be in (0, 1), got 0.0")
    count = len(data.characters)
    if count < 2:
        raise ValueError(f"data must hold at least 2 characters to split, got {count}")
    order = np.random.default_rng(seed).permutation(count)
    n_test = min(max(1, round(test_fraction * count)), count - 1)
    return data.subset(sorted(order[n_test:].tolist())), data.subset(sorted(order[:n_test].tolist()))


def load_one_shot_runs(path: str | Path = DATA_DIR / "all_runs.zip", image_size: int = 28) -> list[dict[str, torch.Tensor]]:
    """The 20 one-shot classification runs of Lake et al. (evaluation alphabets, unseen in the background sets).

    Each run is ``{"training": [20, S, S], "test": [20, S, S], "answer": [20]}``: one drawing of each of 20
    characters, 20 drawings of the same characters by other drawers, and for each test image the
    index of its training image (from ``class_labels.txt``).

    Raises:
        FileNotFoundError: ``path`` does not exist. ValueError: it is not the runs' zip.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: {str(path)!r} does not exist (all_runs.zip of the Omniglot repository)")
    check_int("image_size", image_size, 1)
    runs = []
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        run_names = sorted({n.split("/")[0] for n in names if n.endswith("class_labels.txt")})
        if not run_names:
            raise ValueError(f"path: {str(path)!r} holds no run*/class_labels.txt")
        for run in run_names:
            pairs = [line.split() for line in archive.read(f"{run}/class_labels.txt").decode().splitlines() if line.strip()]
            training = sorted(n for n in names if n.startswith(f"{run}/training/") and n.endswith(".png"))
            test = [t for t, _ in pairs]  # the file's paths already start with the run's folder
            position = {name: i for i, name in enumerate(training)}
            runs.append({
                "training": torch.from_numpy(np.stack([to_ink(archive.read(n), image_size) for n in training])),
                "test": torch.from_numpy(np.stack([to_ink(archive.read(n), image_size) for n in test])),
                "answer": torch.tensor([position[c] for _, c in pairs], dtype=torch.long),
            })
    return runs
