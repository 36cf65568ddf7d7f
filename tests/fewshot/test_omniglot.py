"""The Omniglot reader, the splits by character and alphabet, and the episodes."""

from __future__ import annotations

import re
import zipfile

import pytest
import torch

from titanmem.fewshot.episodes import EpisodeSampler, memory_layout
from titanmem.fewshot.omniglot import (DATA_DIR, DEFAULT_SOURCES, load_omniglot, load_one_shot_runs,
                                       split_by_alphabet, split_by_character)

_PNG = re.compile(r"^[^/]+/([^/]+)/([^/]+)/\d+_(\d+)\.png$")


def _listed(path):
    """(alphabet, character) -> set of drawers, straight from a zip's file names."""
    found = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            match = _PNG.match(name)
            if match:
                found.setdefault(match.group(1, 2), set()).add(int(match.group(3)))
    return found


def test_counts_match_the_files(omniglot):
    listed = {}
    for source in DEFAULT_SOURCES:
        for key, drawers in _listed(source).items():
            listed.setdefault(key, drawers)
    assert len(listed) == 242  # 136 + 156 characters, Greek (24) and Latin (26) in both
    assert len(omniglot.characters) == len(listed) and set(omniglot.characters) == set(listed)
    assert omniglot.alphabets == tuple(sorted({a for a, _ in listed}))
    assert len(omniglot.alphabets) == 8
    assert len(omniglot) == sum(len(d) for d in listed.values()) == 242 * 20
    for index, key in enumerate(omniglot.characters):
        assert set(omniglot.drawer[omniglot.character == index].tolist()) == listed[key]
    assert omniglot.images.shape == (4840, 28, 28) and omniglot.images.dtype == torch.float32
    assert 0.0 <= float(omniglot.images.min()) and float(omniglot.images.max()) <= 1.0
    ink = float(omniglot.images.mean())
    assert 0.03 < ink < 0.3  # ink is 1: mostly paper, some strokes (inverted images would be ~0.9)


def test_each_small_set_alone_and_deduplication():
    # Greek is in both small sets: read from the second after the first, it is not duplicated.
    small2 = load_omniglot(DEFAULT_SOURCES[1], image_size=8)
    assert len(small2.characters) == 156 and "Greek" in small2.alphabets
    both = load_omniglot(list(DEFAULT_SOURCES) + [DEFAULT_SOURCES[1]], image_size=8)
    assert len(both.characters) == 242 and len(both) == 4840


def test_an_extracted_folder_reads_like_the_zip(tmp_path):
    with zipfile.ZipFile(DEFAULT_SOURCES[0]) as archive:
        names = [n for n in archive.namelist() if "/Latin/character0" in n and n.endswith(".png")]
        archive.extractall(tmp_path, members=names)
    folder = load_omniglot(tmp_path / "images_background_small1", image_size=14)
    assert len(folder.characters) == 9 and folder.alphabets == ("Latin",)
    whole = load_omniglot(DEFAULT_SOURCES[0], image_size=14)
    rows = torch.isin(whole.character, torch.tensor([whole.characters.index(c) for c in folder.characters]))
    torch.testing.assert_close(folder.images, whole.images[rows], rtol=0, atol=0)


def test_splits_never_share_a_character(omniglot):
    train, test = split_by_alphabet(omniglot)
    assert not set(train.characters) & set(test.characters)
    assert not set(train.alphabets) & set(test.alphabets)
    assert len(train.characters) + len(test.characters) == 242
    assert len(train) + len(test) == len(omniglot)
    a, b = split_by_character(omniglot, 0.25, seed=3)
    assert not set(a.characters) & set(b.characters) and len(b.characters) == round(0.25 * 242)
    assert split_by_character(omniglot, 0.25, seed=3)[1].characters == b.characters
    assert split_by_character(omniglot, 0.25, seed=4)[1].characters != b.characters
    # the images follow their character through the re-indexing
    index = omniglot.characters.index(b.characters[5])
    torch.testing.assert_close(b.images[b.character == 5], omniglot.images[omniglot.character == index])


def test_episodes_are_reproducible_by_seed(omniglot):
    train, _ = split_by_alphabet(omniglot)
    one = EpisodeSampler(train, classes=2, memory_size=5, seed=11).sample(8)
    two = EpisodeSampler(train, classes=2, memory_size=5, seed=11).sample(8)
    other = EpisodeSampler(train, classes=2, memory_size=5, seed=12).sample(8)
    for name in ("memory", "query", "memory_labels", "query_label", "memory_index", "query_index"):
        assert torch.equal(getattr(one, name), getattr(two, name)), name
    assert not torch.equal(one.memory_index, other.memory_index)
    # a sampler restored from a state continues as the original does
    sampler = EpisodeSampler(train, classes=2, memory_size=5, seed=11)
    sampler.sample(3)
    saved = sampler.state_dict()
    expected = sampler.sample(4)
    restored = EpisodeSampler(train, classes=2, memory_size=5, seed=99)
    restored.load_state_dict(saved)
    again = restored.sample(4)
    assert torch.equal(again.memory, expected.memory) and torch.equal(again.query_index, expected.query_index)


def test_episode_structure(omniglot):
    train, _ = split_by_alphabet(omniglot)
    batch = EpisodeSampler(train, classes=3, memory_size=7, binarize="none", seed=0).sample(16)
    assert batch.memory.shape == (16, 7, 28, 28) and batch.query.shape == (16, 28, 28)
    for b in range(16):
        chars = train.character[batch.memory_index[b]]
        labels = batch.memory_labels[b]
        assert sorted(torch.bincount(labels).tolist(), reverse=True) == [3, 2, 2]
        # one character per label, distinct across labels
        per_label = {int(l): set(chars[labels == l].tolist()) for l in labels.unique()}
        assert all(len(s) == 1 for s in per_label.values()) and len(set.union(*per_label.values())) == 3
        q_char = int(train.character[batch.query_index[b]])
        assert per_label[int(batch.query_label[b])] == {q_char}
        assert int(batch.query_index[b]) not in batch.memory_index[b].tolist()
        torch.testing.assert_close(batch.query[b], train.images[batch.query_index[b]])


def test_binarisation_dynamic_and_fixed(omniglot):
    train, _ = split_by_alphabet(omniglot)
    fixed_a = EpisodeSampler(train, 1, 3, binarize="fixed", seed=0, binarize_seed=5).sample(4)
    fixed_b = EpisodeSampler(train, 1, 3, binarize="fixed", seed=0, binarize_seed=5).sample(4)
    assert torch.equal(fixed_a.memory, fixed_b.memory)
    assert set(fixed_a.memory.unique().tolist()) <= {0.0, 1.0}
    sampler = EpisodeSampler(train, 1, 3, binarize="fixed", seed=0, binarize_seed=5)
    first, again = sampler.sample(64), sampler.sample(64)
    # the same image is binarised the same way every time it is drawn
    common = set(first.query_index.tolist()) & set(again.query_index.tolist())
    for row in common:
        i, j = first.query_index.tolist().index(row), again.query_index.tolist().index(row)
        assert torch.equal(first.query[i], again.query[j])
    dynamic = EpisodeSampler(train, 1, 19, binarize="dynamic", seed=0)
    batch = dynamic.sample(2)
    assert set(batch.memory.unique().tolist()) <= {0.0, 1.0}
    # dynamic: two draws of one image differ (a fresh Bernoulli sample each time)
    image = train.images[batch.query_index[0]]
    draws = torch.bernoulli(image.expand(2, -1, -1), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(draws[0], draws[1])


def test_one_shot_runs():
    runs = load_one_shot_runs(DATA_DIR / "all_runs.zip", image_size=28)
    assert len(runs) == 20
    for run in runs:
        assert run["training"].shape == (20, 28, 28) and run["test"].shape == (20, 28, 28)
        assert sorted(run["answer"].tolist()) == list(range(20))  # each training drawing answers one test drawing


@pytest.mark.parametrize("kwargs, named, error", [
    (dict(classes=1, memory_size=0), "memory_size", ValueError),
    (dict(classes=3, memory_size=2), "classes must be <= memory_size", ValueError),
    (dict(classes=0, memory_size=2), "classes", ValueError),
    (dict(classes=1, memory_size=20), "only 20 drawings", ValueError),
    (dict(classes=200, memory_size=400), "characters of the data", ValueError),
    (dict(classes=1, memory_size=2, binarize="otsu"), "binarize", ValueError),
])
def test_episode_errors(omniglot, kwargs, named, error):
    train, _ = split_by_alphabet(omniglot)
    with pytest.raises(error, match=named):
        EpisodeSampler(train, **kwargs)


def test_loader_errors(tmp_path, omniglot):
    with pytest.raises(FileNotFoundError, match="sources"):
        load_omniglot(tmp_path / "nowhere.zip")
    with pytest.raises(ValueError, match="image_size"):
        load_omniglot(DEFAULT_SOURCES[0], image_size=0)
    with pytest.raises(ValueError, match="image_size"):
        load_omniglot(DEFAULT_SOURCES[0], image_size=106)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        load_omniglot(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="holds no Omniglot images"):
        load_omniglot(tmp_path)
    with pytest.raises(FileNotFoundError, match="path"):
        load_one_shot_runs(tmp_path / "all_runs.zip")
    with pytest.raises(ValueError, match="test_alphabets"):
        split_by_alphabet(omniglot, ["Klingon"])
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_character(omniglot, 0.0)
    assert memory_layout(2, 5) == [3, 2]
