"""The one training loop: what a step does (mean gradient over micro-batches, clipping, schedule) and
that language modelling, task training, forecasting and few-shot generation all run through it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from titanmem.train import loop as loop_module
from titanmem.train.loop import optimizer_step, train_steps


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(3, 1, bias=False)


def _squared_error(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def _batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)) for _ in range(n)]


def test_a_step_over_micro_batches_applies_their_mean_gradient():
    batches = _batches(3)
    model, reference = _linear(), _linear()
    loss_sum, grad_norm, lr = optimizer_step(model, torch.optim.SGD(model.parameters(), lr=0.5), None, iter(batches),
                                             _squared_error, grad_accum=3)
    mean = sum(_squared_error(reference, b) for b in batches) / 3
    (grad,) = torch.autograd.grad(mean, reference.weight)
    torch.testing.assert_close(model.weight, reference.weight - 0.5 * grad)
    torch.testing.assert_close(float(loss_sum), 3 * float(mean.detach()))
    torch.testing.assert_close(float(grad_norm), float(grad.norm()))
    assert lr == 0.5 and model.weight.grad is None  # gradients cleared after the step


def test_clipping_scales_the_step_and_reports_the_norm_before_it():
    batch = _batches(1)
    model, reference = _linear(), _linear()
    _, grad_norm, _ = optimizer_step(model, torch.optim.SGD(model.parameters(), lr=1.0), None, iter(batch),
                                     _squared_error, grad_clip=1e-3)
    (grad,) = torch.autograd.grad(_squared_error(reference, batch[0]), reference.weight)
    assert float(grad_norm) == pytest.approx(float(grad.norm())) and float(grad.norm()) > 1e-3
    torch.testing.assert_close(model.weight, reference.weight - grad * (1e-3 / grad.norm()), rtol=1e-4, atol=1e-7)


def test_steps_run_from_start_with_the_schedule_and_stop_when_asked():
    model = _linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    seen = []
    done = train_steps(model, optimizer, scheduler, iter(_batches(10)), _squared_error, steps=10, start=2,
                       on_step=lambda r: seen.append((r.step, r.lr)) or r.step == 5)
    assert done == 5 and [s for s, _ in seen] == [3, 4, 5]
    assert [lr for _, lr in seen] == pytest.approx([1.0, 0.5, 1 / 3])  # the scheduler steps once per step
    assert model.training


class _InfiniteGradient(torch.autograd.Function):
    """Adds nothing to the loss; its backward gives the input an infinite gradient (an overflowing backward)."""

    @staticmethod
    def forward(ctx, x):
        return x.sum() * 0.0

    @staticmethod
    def backward(ctx, grad):
        return torch.full((3,), math.inf).expand(1, 3).clone()


def _overflowing_on(bad_steps: set[int]):
    """A squared-error loss whose backward overflows on the given (1-based) calls, forward unchanged."""
    calls = [0]

    def loss_fn(model, batch):
        calls[0] += 1
        loss = _squared_error(model, batch)
        return loss + _InfiniteGradient.apply(model.weight) if calls[0] in bad_steps else loss

    return loss_fn


def test_a_step_with_an_infinite_gradient_is_skipped_and_training_goes_on():
    batches = _batches(4)
    model, reference = _linear(), _linear()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    records = []
    with pytest.warns(RuntimeWarning, match="step 2: the gradient norm is inf"):
        train_steps(model, optimizer, scheduler, iter(batches), _overflowing_on({2}), steps=4, grad_clip=1.0,
                    on_step=records.append)
    assert [r.skipped for r in records] == [False, True, False, False]
    assert [r.lr for r in records] == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025]) and all(
        math.isfinite(float(r.loss_sum)) for r in records)
    # The same run without batch 2 (its optimizer step never happened, its schedule step did): equal weights
    # and the same optimizer state, so the skipped step left nothing behind.
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=0.1)
    ref_sched = torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda step: 1.0 / (step + 1))
    for i, batch in enumerate(batches):
        if i != 1:
            _squared_error(reference, batch).backward()
            torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
            ref_opt.step()
            ref_opt.zero_grad()
        ref_sched.step()
    torch.testing.assert_close(model.weight, reference.weight, rtol=0, atol=0)
    assert optimizer.state[model.weight]["step"] == ref_opt.state[reference.weight]["step"] == 3


def test_too_many_skipped_steps_in_a_row_stop_the_run():
    model = _linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    with pytest.warns(RuntimeWarning), pytest.raises(FloatingPointError, match="3 step.* in a row.*max_skipped=2"):
        train_steps(model, optimizer, None, iter(_batches(6)), _overflowing_on({2, 3, 4}), steps=6, max_skipped=2)
    # Steps that alternate are within the limit: each finite step resets the count.
    model = _linear()
    with pytest.warns(RuntimeWarning, match="1 in a row, at most 1"):
        done = train_steps(model, torch.optim.SGD(model.parameters(), lr=1.0), None, iter(_batches(6)),
                           _overflowing_on({1, 3, 5}), steps=6, max_skipped=1)
    assert done == 6


def test_with_max_skipped_zero_the_first_overflow_raises_before_anything_changes():
    model, reference = _linear(), _linear()
    with pytest.raises(FloatingPointError, match="step 1.*max_skipped=0"):
        train_steps(model, torch.optim.SGD(model.parameters(), lr=1.0), None, iter(_batches(2)),
                    _overflowing_on({1}), steps=2, max_skipped=0)
    torch.testing.assert_close(model.weight, reference.weight, rtol=0, atol=0)


@pytest.mark.parametrize("kw, error", [(dict(steps=-1), ValueError), (dict(steps=2, grad_accum=0), ValueError),
                                       (dict(steps=2.0), TypeError), (dict(steps=2, start=-1), ValueError),
                                       (dict(steps=2, max_skipped=-1), ValueError)])
def test_bad_loop_arguments_name_themselves(kw, error):
    model = _linear()
    name = next(k for k, v in kw.items() if not (isinstance(v, int) and v >= (1 if k == "grad_accum" else 0)))
    with pytest.raises(error, match=name):
        train_steps(model, torch.optim.SGD(model.parameters(), lr=1.0), None, iter(_batches(2)), _squared_error, **kw)


def _count_loop_calls(monkeypatch, module) -> list[int]:
    calls: list[int] = []

    def counting(*args, **kwargs):
        calls.append(kwargs["steps"])
        return loop_module.train_steps(*args, **kwargs)

    monkeypatch.setattr(module, "train_steps", counting)
    return calls


def test_task_training_runs_through_the_loop(monkeypatch):
    from titanmem.eval import task_train

    calls = _count_loop_calls(monkeypatch, task_train)
    job = task_train.task_job_from_dict({
        "model": {"preset": "tiny", "variant": "lmm", "hidden_size": 16, "num_hidden_layers": 1,
                  "num_attention_heads": 2, "intermediate_size": 32},
        "task": {"name": "passkey"}, "train": {"length": 128, "steps": 2, "batch_size": 2, "warmup_steps": 1}})
    _, history = task_train.train_on_task(job, log=None)
    assert calls == [2] and [h["step"] for h in history] == [1, 2]


def test_forecasting_runs_each_epoch_through_the_loop(monkeypatch):
    from pathlib import Path

    from titanmem.timeseries import train as forecast

    calls = _count_loop_calls(monkeypatch, forecast)
    data = Path(__file__).resolve().parents[2] / "data" / "ett" / "ETTh1.csv"
    job = forecast.ForecastJob(data=str(data), model="dlinear", horizon=24, epochs=2, batch_size=64,
                               max_train_windows=128)
    result, _ = forecast.run_forecast(job, progress=False)
    assert calls == [2, 2] and result.epochs_run == 2


def test_fewshot_training_runs_through_the_loop(monkeypatch, tmp_path):
    from titanmem.fewshot import train as fewshot
    from titanmem.fewshot.omniglot import DEFAULT_SOURCES

    calls = _count_loop_calls(monkeypatch, fewshot)
    job = fewshot.FewShotJob(model="vma", data=(str(DEFAULT_SOURCES[0]),), test_alphabets=("Early_Aramaic",),
                             memory_sizes=(2,), steps=3, batch_size=2, samples=2,
                             model_config=dict(hidden=16, latent=2, embedding=4))
    _, history = fewshot.train_fewshot(job, tmp_path, progress=False)
    assert calls == [3] and history[-1]["step"] == 3


def _tiny_lm_job(tmp_path):
    """A 3-step language-modelling job of a 1-block width-16 LMM on a small text folder."""
    from titanmem.train import config_from_dict

    return config_from_dict({
        "out_dir": str(tmp_path / "run"),
        "model": {"preset": "tiny", "variant": "lmm", "hidden_size": 16, "num_hidden_layers": 1,
                  "num_attention_heads": 2, "intermediate_size": 32},
        "data": {"corpus": "text", "corpus_path": str(_write_corpus(tmp_path)), "data_dir": str(tmp_path / "data"),
                 "seq_len": 16, "batch_size": 2},
        "schedule": {"steps": 3, "warmup_steps": 1}, "run": {"device": "cpu"}, "checkpoint": {"every": 0},
        "log": {"progress": False, "plot": False}, "eval": {"every": 0, "tokens": 64, "batch_size": 2}})


def test_language_model_training_runs_through_the_loop(monkeypatch, tmp_path):
    from titanmem.train import trainer

    calls = _count_loop_calls(monkeypatch, trainer)
    result = trainer.train(_tiny_lm_job(tmp_path))
    assert calls == [3] and len(result.losses) == 3


def _write_corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(4):
        (folder / f"doc{i}.txt").write_text(("All the world's a stage, and all the men and women merely players. " * 8)
                                            + f"Document {i}.\n")
    return folder


def test_language_model_training_skips_an_overflowing_step_and_records_it(monkeypatch, tmp_path):
    import json

    from titanmem.train import trainer

    real, calls = trainer.lm_loss, [0]

    def overflowing_on_step_2(model, batch, carried=None):
        calls[0] += 1
        loss = real(model, batch, carried)
        if calls[0] == 2:
            weight = model.get_input_embeddings().weight
            loss = loss + _InfiniteGradient.apply(weight[:1, :3])
        return loss

    monkeypatch.setattr(trainer, "lm_loss", overflowing_on_step_2)
    with pytest.warns(RuntimeWarning, match="step 2: the gradient norm is"):
        result = trainer.train(_tiny_lm_job(tmp_path))
    assert result.skipped_steps == [2] and all(math.isfinite(x) for x in result.losses)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_steps"] == [2]
    from titanmem.train import load_checkpoint
    from titanmem.train.checkpoint import list_checkpoints

    weights = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[0])["weights"]
    assert all(torch.isfinite(w).all() for w in weights.values())
