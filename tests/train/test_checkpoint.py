"""Checkpoints: atomic writes, verification against the manifest, falling back past corrupt ones."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from titanmem.train.checkpoint import (
    CheckpointError, find_resumable, list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint,
    verify_checkpoint,
)


def _save(directory, step, value=1.0):
    weights = {"w": torch.full((4, 3), value), "b": torch.arange(3.0)}
    trainer = {"step": step, "rng": torch.get_rng_state(), "note": ("tuple", 1)}
    return save_checkpoint(directory, step, weights, trainer, {"variant": "mac"}, {"name": "job"})


def test_round_trip(tmp_path):
    path = _save(tmp_path, 12, 2.5)
    assert path.name == "step_00000012"
    loaded = load_checkpoint(path)
    assert loaded["step"] == 12 and loaded["model_config"] == {"variant": "mac"} and loaded["job"] == {"name": "job"}
    assert torch.equal(loaded["weights"]["w"], torch.full((4, 3), 2.5))
    assert loaded["trainer"]["note"] == ("tuple", 1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_truncated_file_is_reported_as_truncated(tmp_path):
    path = _save(tmp_path, 1)
    file = path / "model.safetensors"
    with file.open("r+b") as f:
        f.truncate(file.stat().st_size // 2)
    with pytest.raises(CheckpointError, match=r"truncated.*model\.safetensors"):
        load_checkpoint(path)


def test_flipped_byte_is_reported_as_corrupted(tmp_path):
    path = _save(tmp_path, 1)
    data = bytearray((path / "trainer.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "trainer.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupted.*SHA-256 of trainer\.pt"):
        verify_checkpoint(path)


def test_missing_manifest_means_incomplete(tmp_path):
    path = _save(tmp_path, 1)
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        verify_checkpoint(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        verify_checkpoint(path)


def test_resume_falls_back_to_the_previous_good_checkpoint(tmp_path):
    _save(tmp_path, 10)
    newest = _save(tmp_path, 20)
    with (newest / "model.safetensors").open("r+b") as f:
        f.truncate(10)
    with pytest.warns(RuntimeWarning, match=r"step_00000020.*truncated"):
        assert find_resumable(tmp_path).name == "step_00000010"


def test_no_checkpoint_means_fresh_start_but_all_corrupt_is_an_error(tmp_path):
    assert find_resumable(tmp_path / "nothing") is None
    path = _save(tmp_path, 5)
    (path / "config.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="no usable checkpoint"):
            find_resumable(tmp_path)


def test_debris_of_a_killed_writer_is_ignored_and_pruned(tmp_path):
    _save(tmp_path, 1)
    debris = tmp_path / ".step_00000002.tmp-99999"
    debris.mkdir()
    (debris / "model.safetensors").write_bytes(b"half")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000001"]
    assert find_resumable(tmp_path).name == "step_00000001"
    for step in (2, 3, 4):
        _save(tmp_path, step)
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(os.listdir(tmp_path)) == ["step_00000003", "step_00000004"]


def test_saving_the_same_step_again_replaces_it(tmp_path):
    _save(tmp_path, 3, 1.0)
    _save(tmp_path, 3, 7.0)
    assert torch.equal(load_checkpoint(tmp_path / "step_00000003")["weights"]["w"], torch.full((4, 3), 7.0))
    assert sorted(os.listdir(tmp_path)) == ["step_00000003"]
