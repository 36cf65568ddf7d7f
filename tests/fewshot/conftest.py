"""Omniglot read once per test session (decoding the 4,840 PNGs takes a few seconds)."""

from __future__ import annotations

import pytest

from titanmem.fewshot.omniglot import load_omniglot


@pytest.fixture(scope="session")
def omniglot():
    return load_omniglot()
