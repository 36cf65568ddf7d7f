"""Batches: a pure function of the step, split exactly across ranks, contiguous in sequential mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from titanmem.data import BatchLoader, eval_batches

N = 10_000
TOKENS = np.arange(N) % 65536  # a token's value is its position


def _take(loader: BatchLoader, n: int) -> list[torch.Tensor]:
    return [next(loader) for _ in range(n)]


def _assert_consecutive(batch: torch.Tensor) -> None:
    """Each row is a window of consecutive positions, so targets are the inputs shifted by one."""
    assert batch.dtype == torch.int64
    assert torch.equal(batch[:, 1:], batch[:, :-1] + 1)


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_ranks_together_see_exactly_the_rows_of_one_process(mode):
    one = BatchLoader(TOKENS, 8, 16, mode=mode, seed=3)
    ranks = [BatchLoader(TOKENS, 4, 16, mode=mode, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        whole = next(one)
        parts = [next(r) for r in ranks]
        assert torch.equal(torch.cat(parts), whole) and whole.shape == (8, 17)
        assert not torch.equal(parts[0], parts[1])
        _assert_consecutive(whole)


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_batch_at_is_what_next_returns_and_resuming_repeats_the_sequence(mode):
    a = BatchLoader(TOKENS, 3, 32, mode=mode, seed=5)
    seen = _take(a, 12)
    fresh = BatchLoader(TOKENS, 3, 32, mode=mode, seed=5)
    assert all(torch.equal(fresh.batch_at(s), b) for s, b in enumerate(seen))
    assert fresh.step == 0 and a.step == 12

    b = BatchLoader(TOKENS, 3, 32, mode=mode, seed=5)
    _take(b, 7)
    state = b.state_dict()
    assert state == {"step": 7, "mode": mode, "seed": 5, "batch_size": 3, "seq_len": 32, "world_size": 1,
                     "num_tokens": N}
    resumed = BatchLoader(TOKENS, 3, 32, mode=mode, seed=5)
    resumed.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(_take(resumed, 5), seen[7:]))
    started = BatchLoader(TOKENS, 3, 32, mode=mode, seed=5, start_step=7)
    assert torch.equal(next(started), seen[7])


def test_random_batches_depend_on_seed_and_step_and_reach_every_start():
    a = BatchLoader(TOKENS, 4, 8, seed=0)
    assert not torch.equal(a.batch_at(0), a.batch_at(1))
    assert not torch.equal(a.batch_at(0), BatchLoader(TOKENS, 4, 8, seed=1).batch_at(0))
    small = BatchLoader(np.arange(12), 64, 8)  # starts 0..3 only
    starts = torch.cat([small.batch_at(s)[:, 0] for s in range(4)])
    assert set(starts.tolist()) == {0, 1, 2, 3}
    assert small.starts_new_pass(0) and not small.starts_new_pass(1) and small.steps_per_epoch is None


def test_sequential_rows_continue_where_they_stopped_and_wrap_around():
    seq_len, lane = 16, N // 4
    loader = BatchLoader(TOKENS, 2, seq_len, mode="sequential", rank=1, world_size=2)
    steps = loader.steps_per_epoch
    assert steps == (lane - 1) // seq_len
    batches = _take(loader, steps + 2)
    for s in range(steps - 1):
        # The inputs of step s + 1 start at the position of the last target of step s.
        assert torch.equal(batches[s + 1][:, 0], batches[s][:, -1])
    first = batches[0][:, 0].tolist()
    assert first == [2 * lane, 3 * lane]  # global rows 2 and 3 of 4 lanes
    assert int(batches[steps - 1][:, -1].max()) < 4 * lane  # the last window stays inside its lane
    assert all(int(b[j, -1]) < (j + 3) * lane for b in batches for j in range(2))
    assert torch.equal(batches[steps], batches[0]) and torch.equal(batches[steps + 1], batches[1])
    assert [loader.starts_new_pass(s) for s in (0, 1, steps - 1, steps, 2 * steps)] == [True, False, False, True, True]
    for b in batches:
        _assert_consecutive(b)


def test_load_state_dict_refuses_another_layout():
    state = BatchLoader(TOKENS, 4, 16, seed=1).state_dict()
    for kwargs, field in [({"seq_len": 8}, "seq_len"), ({"seed": 2}, "seed"), ({"mode": "sequential"}, "mode"),
                          ({"batch_size": 2}, "global batch")]:
        args = {"batch_size": 4, "seq_len": 16, "seed": 1, **kwargs}
        other = BatchLoader(TOKENS, args.pop("batch_size"), args.pop("seq_len"), **args)
        with pytest.raises(ValueError, match=field):
            other.load_state_dict(state)
    with pytest.raises(ValueError, match="num_tokens"):
        BatchLoader(TOKENS[:-1], 4, 16, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="missing"):
        BatchLoader(TOKENS, 4, 16, seed=1).load_state_dict({"step": 3})
    # Same global batch on two ranks: allowed, and rank 0 continues with its half of the same rows.
    state["step"] = 4
    half = BatchLoader(TOKENS, 2, 16, seed=1, rank=0, world_size=2)
    half.load_state_dict(state)
    assert torch.equal(next(half), BatchLoader(TOKENS, 4, 16, seed=1).batch_at(4)[:2])


def test_accepts_tensors_and_memmaps(tmp_path):
    path = tmp_path / "t.bin"
    TOKENS.astype("<u2").tofile(path)
    mm = np.memmap(path, dtype="<u2", mode="r")
    expected = BatchLoader(TOKENS, 2, 8, seed=4).batch_at(3)
    assert torch.equal(BatchLoader(mm, 2, 8, seed=4).batch_at(3), expected)
    assert torch.equal(BatchLoader(torch.from_numpy(TOKENS.astype(np.int32)), 2, 8, seed=4).batch_at(3), expected)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
    ({"seq_len": "8"}, TypeError, "seq_len must be an int"),
    ({"mode": "shuffle"}, ValueError, "mode must be one of"),
    ({"rank": 2, "world_size": 2}, ValueError, r"rank must be in \[0, world_size=2\), got 2"),
    ({"tokens": np.arange(8)}, ValueError, "tokens must hold at least seq_len \\+ 1 = 9 tokens.*got 8"),
    ({"tokens": np.arange(40), "mode": "sequential", "batch_size": 8}, ValueError, "tokens must hold at least"),
    ({"tokens": np.zeros((4, 100), dtype=np.int64)}, ValueError, "tokens must be 1-D"),
    ({"tokens": np.zeros(100)}, TypeError, "tokens must hold integer ids"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, match):
    args = {"tokens": TOKENS, "batch_size": 2, "seq_len": 8, **kwargs}
    with pytest.raises(exc, match=match):
        BatchLoader(args.pop("tokens"), args.pop("batch_size"), args.pop("seq_len"), **args)


def test_eval_windows_predict_every_target_once_across_ranks():
    seq_len, windows = 10, 23
    tokens = np.arange(windows * seq_len + 1 + 7)  # a tail of 7 targets that fills no window
    targets = []
    for rank in range(3):
        batches = list(eval_batches(tokens, seq_len, 4, rank=rank, world_size=3))
        assert all(b.shape[0] <= 4 and b.shape[1] == seq_len + 1 for b in batches)
        for b in batches:
            _assert_consecutive(b)
            assert all(int(s) % seq_len == 0 and int(s) // seq_len % 3 == rank for s in b[:, 0])
            targets += b[:, 1:].flatten().tolist()
    assert sorted(targets) == list(range(1, windows * seq_len + 1))
    one = torch.cat(list(eval_batches(tokens, seq_len, 5)))
    assert torch.equal(one[1:, 0], one[:-1, -1])  # consecutive windows share one token
    assert torch.equal(torch.cat(list(eval_batches(tokens, seq_len, 5))), one)


def test_eval_max_tokens_and_eager_errors():
    limited = torch.cat(list(eval_batches(TOKENS, 10, 4, max_tokens=101)))
    assert limited.shape == (10, 11) and int(limited.max()) == 100
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        eval_batches(TOKENS, 0, 4)  # raised at the call, before iteration
    with pytest.raises(ValueError, match="max_tokens must be >= 11"):
        eval_batches(TOKENS, 10, 4, max_tokens=5)
    with pytest.raises(ValueError, match="tokens must hold at least"):
        eval_batches(np.arange(5), 10, 4)
