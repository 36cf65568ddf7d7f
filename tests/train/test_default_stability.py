"""The default inner learning rate keeps a fresh model finite on real text (max_lr = 0.1 was not)."""

from __future__ import annotations

import pytest
import torch

from titanmem.data import BatchLoader, TokenDataset, prepare_dataset
from titanmem.models import TitansConfig, TitansForCausalLM


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    return TokenDataset(prepare_dataset(tmp_path_factory.mktemp("shk"), "shakespeare", "byte")).split("train")


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal"])
def test_fresh_tiny_model_is_finite_on_2048_bytes_of_shakespeare(shakespeare, variant):
    batch = BatchLoader(shakespeare, 2, 2048, seed=0).batch_at(0)
    torch.manual_seed(0)
    model = TitansForCausalLM(TitansConfig.from_preset("tiny", variant=variant))
    with torch.no_grad():
        logits = model(batch[:, :-1], use_cache=False).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
    assert torch.isfinite(logits).all() and abs(loss.item() - 5.55) < 0.5
