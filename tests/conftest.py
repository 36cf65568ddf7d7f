"""Shared fixtures. The factories and comparison helpers live in tests/helpers.py."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import assert_close as _assert_close
from tests.helpers import make_inputs as _make_inputs

# The tensors here are tiny: intra-op threads only add overhead, and on a shared 2-core machine
# OpenMP threads spinning against another process slow the suite down by 10x or more.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same global RNG state (helpers also use explicit generators), and
    no test leaves subnormal flushing on for the next (the training commands turn it on)."""
    torch.manual_seed(0)
    yield
    torch.set_flush_denormal(False)


@pytest.fixture
def make_inputs():
    return _make_inputs


@pytest.fixture
def assert_close():
    return _assert_close
