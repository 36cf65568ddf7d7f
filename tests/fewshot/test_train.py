"""Training through the one loop: the bound rises and stays finite, checkpoints resume exactly, evaluation."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from titanmem.fewshot.episodes import EpisodeSampler
from titanmem.fewshot.models import FewShotConfig, build_model
from titanmem.fewshot.omniglot import split_by_alphabet
from titanmem.fewshot.train import FewShotJob, evaluate, load_model, train_fewshot
from titanmem.train.checkpoint import list_checkpoints

TINY = dict(hidden=64, latent=8, embedding=16, slots=2, semantic=8)


@pytest.fixture(scope="module")
def splits(omniglot):
    return split_by_alphabet(omniglot)


def test_a_ci_sized_run_lowers_the_bound_and_keeps_it_finite(splits, tmp_path):
    # About 10 s: VMA on real Omniglot, memories of 1-5 drawings of 1 or 2 characters.
    job = FewShotJob(model="vma", classes=(1, 2), memory_sizes=(1, 2, 3, 4, 5), steps=300, batch_size=16,
                     samples=4, lr=2e-3, warmup_steps=20, checkpoint_every=300, model_config=dict(hidden=128))
    torch.manual_seed(0)
    untrained = build_model(job.model, job.config()).eval()
    before = evaluate(untrained, splits[1], 2, 4, episodes=40, samples=20)
    model, history = train_fewshot(job, tmp_path, progress=False, splits=splits)
    after = evaluate(model, splits[1], 2, 4, episodes=40, samples=20)
    losses = [h["loss"] for h in history]
    assert all(math.isfinite(v) for v in losses) and math.isfinite(after["nll"])
    assert after["nll"] < before["nll"] - 100, (before, after)  # 543 nats untrained; ~200 after 300 steps
    assert sum(losses[-5:]) / 5 < losses[0] - 100
    # trained addressing: a memory holding the query itself among 9 other characters' drawings
    batch = EpisodeSampler(splits[1], 10, 10, binarize="fixed", seed=3).sample(30)
    posterior = model.address_posterior(batch.memory, batch.memory[:, 4])
    assert float((posterior.argmax(-1) == 4).float().mean()) > 0.9
    # the checkpoint gives back the same model
    loaded, saved_job = load_model(tmp_path)
    assert saved_job["steps"] == 300
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("name", ["vma", "context-vae"])
def test_resuming_gives_the_same_weights_as_one_run(splits, tmp_path, name):
    job = FewShotJob(model=name, memory_sizes=(2, 3), steps=8, batch_size=4, samples=2, warmup_steps=2,
                     checkpoint_every=4, model_config=TINY)
    whole, _ = train_fewshot(job, tmp_path / "whole", progress=False, splits=splits)
    # the same run again, its step-8 checkpoint removed: resuming starts from the one of step 4
    train_fewshot(job, tmp_path / "parts", progress=False, splits=splits)
    shutil.rmtree(list_checkpoints(tmp_path / "parts" / "checkpoints")[0])  # drop step 8: resume from step 4
    resumed, _ = train_fewshot(job, tmp_path / "parts", progress=False, resume=True, splits=splits)
    for (key, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)


def test_evaluation_is_reproducible_and_reports_addressing(splits):
    torch.manual_seed(0)
    model = build_model("vma", FewShotConfig(**TINY))
    one = evaluate(model, splits[1], 2, 4, episodes=6, samples=8, batch_size=4)
    two = evaluate(model, splits[1], 2, 4, episodes=6, samples=8, batch_size=4)
    assert one == two
    assert 0 <= one["address_accuracy"] <= 1 and 0 <= one["address_kl"] <= math.log(4) + 1e-6
    vae = evaluate(build_model("vae", FewShotConfig(**TINY)), splits[1], 1, 1, episodes=3, samples=4)
    assert "address_accuracy" not in vae and vae["nll"] > 0


@pytest.mark.parametrize("kwargs, named", [
    (dict(model="gan"), "model"),
    (dict(memory_sizes=()), "memory_sizes"),
    (dict(memory_sizes=(0,)), "memory_sizes"),
    (dict(classes=(3,), memory_sizes=(2,)), "classes"),
    (dict(samples=1), "samples"),
    (dict(lr=0.0), "lr"),
    (dict(model_config={"width": 3}), "model_config"),
])
def test_job_errors_name_the_field(kwargs, named):
    with pytest.raises(ValueError, match=named):
        FewShotJob(**kwargs)


def test_one_shot_runs_score_the_right_answer():
    # With each test drawing replaced by its answer's training drawing and a sharp address scale, the
    # posterior must pick the answer every time: the check that answers index the memory correctly.
    from titanmem.fewshot.omniglot import load_one_shot_runs
    from titanmem.fewshot.train import evaluate_one_shot

    runs = load_one_shot_runs()[:2]
    copied = [{**run, "test": run["training"][run["answer"]], "training": run["training"].round()} for run in runs]
    copied = [{**run, "test": run["test"].round()} for run in copied]  # binary already: the same draw both sides
    torch.manual_seed(0)
    model = build_model("vma", FewShotConfig(**TINY))
    with torch.no_grad():
        model.log_scale.fill_(math.log(1000.0))
    result = evaluate_one_shot(model, copied, samples=2)
    assert result["episodes"] == 40 and result["address_accuracy"] == 1.0
    real = evaluate_one_shot(model, runs, samples=2)
    assert real["address_accuracy"] < 1.0
