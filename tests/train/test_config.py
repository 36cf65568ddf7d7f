"""Job configs: every shipped config loads, and bad keys or values fail before training, naming the key."""

from __future__ import annotations

import pytest

from titanmem.blocks import VARIANTS
from titanmem.cli import main
from titanmem.train import load_config
from titanmem.train.config import parse_overrides

from .conftest import CONFIGS

SIZES = ("tiny", "small", "170m", "340m", "760m")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_has_a_valid_config_at_every_size(size, variant):
    cfg = load_config(CONFIGS / size / f"{variant}.toml")
    assert (cfg.model.preset, cfg.model.variant, cfg.name) == (size, variant, f"{size}-{variant}")
    assert cfg.out_dir == f"runs/{size}-{variant}"


def test_paper_configs_follow_the_paper_setup():
    cfg = load_config(CONFIGS / "760m" / "mac.toml")
    assert cfg.data.seq_len == 4096 and cfg.optim.lr == 4e-4 and cfg.optim.weight_decay == 0.1
    assert cfg.run.precision == "bf16" and cfg.run.distributed == "fsdp"
    assert load_config(CONFIGS / "170m" / "mac.toml").run.distributed == "ddp"


def test_overrides_take_toml_values_and_bare_words():
    assert parse_overrides(["--optim.lr=3e-4", "--model.variant=mal", "--log.csv=false", "--data.seq_len=64"]) == {
        "optim": {"lr": 3e-4}, "model": {"variant": "mal"}, "log": {"csv": False}, "data": {"seq_len": 64}}
    cfg = load_config(CONFIGS / "tiny" / "mac.toml", ["--optim.lr=3e-4", "--model.variant=mal", "--model.hidden_size=64"])
    assert cfg.optim.lr == 3e-4 and cfg.model.variant == "mal" and cfg.model.fields == {"hidden_size": 64}


def test_integer_is_accepted_for_a_float_field():
    assert load_config(None, ["--optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--optim.learning_rate=1e-3", "optim.learning_rate"),
        ("--optimizer.lr=1e-3", "optimizer"),
        ("--optim.lr=fast", "optim.lr"),
        ("--optim.lr=-1.0", "optim.lr"),
        ("--optim.grad_accum=0", "optim.grad_accum"),
        ("--optim.max_skipped=-1", "optim.max_skipped"),
        ("--data.seq_len=1.5", "data.seq_len"),
        ("--data.sampling=shuffled", "data.sampling"),
        ("--data.val_fraction=0", "data.val_fraction"),
        ("--run.precision=fp8", "run.precision"),
        ("--run.distributed=zero3", "run.distributed"),
        ("--log.csv=1", "log.csv"),
        ("--schedule.warmup_steps=5000", "schedule.warmup_steps"),
        ("--model.hidden_sise=64", "model.hidden_sise"),
        ("--model.hidden_size=0", "hidden_size"),
        ("--model.variant=rnn", "variant"),
        ("--model.preset=huge", "model.preset"),
        ("--run.tbptt=true", "data.sampling"),
        ("--eval.tokens=100", "eval.tokens"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        load_config(CONFIGS / "tiny" / "mac.toml", [override])


def test_tbptt_refuses_the_unbounded_transformer_state():
    with pytest.raises(ValueError, match="transformer"):
        load_config(CONFIGS / "tiny" / "transformer.toml", ["--run.tbptt=true", "--data.sampling=sequential"])


def test_base_files_merge_and_loops_are_reported(tmp_path):
    (tmp_path / "a.toml").write_text('base = "b.toml"\n[optim]\nlr = 0.5\n')
    (tmp_path / "b.toml").write_text('[optim]\nlr = 0.1\nweight_decay = 0.0\n[model]\nvariant = "lmm"\n')
    cfg = load_config(tmp_path / "a.toml")
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.model.variant) == (0.5, 0.0, "lmm")
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(ValueError, match="loop"):
        load_config(tmp_path / "a.toml")


def test_invalid_toml_and_missing_file_are_reported(tmp_path):
    (tmp_path / "bad.toml").write_text("[optim\nlr = 1")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_cli_rejects_a_bad_key_before_training(tmp_path, capsys):
    code = main(["train", "--config", str(CONFIGS / "tiny" / "mac.toml"), "--optim.betas=0.9",
                 f"--out_dir={tmp_path / 'run'}"])
    assert code == 2
    assert "optim.betas" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_rejects_arguments_that_are_not_overrides(tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--config", str(CONFIGS / "tiny" / "mac.toml"), "--fast"])


@pytest.mark.parametrize("raw, named", [
    ({"optimizer": {}}, "unknown config key optimizer; a demo job has"),
    ({"train": 3}, "train must be a table of keys"),
    ({"name": ""}, "name must be a non-empty string"),
])
def test_job_tables_name_the_bad_key(raw, named):
    from titanmem.train.config import job_tables

    with pytest.raises(ValueError, match=named):
        job_tables(raw, "a demo job")
    assert job_tables({"base": "x.toml", "name": "n"}, "a demo job") == {"name": "n"}


def test_check_train_section_names_the_key_and_the_value():
    from types import SimpleNamespace

    from titanmem.train.config import check_train_section

    ok = SimpleNamespace(lr=1e-3, grad_clip=1.0, weight_decay=0.0, min_lr_ratio=0.1, device="cpu")
    check_train_section(ok, (("train.steps", 5, 1),))
    with pytest.raises(ValueError, match=r"train.steps must be >= 1, got 0"):
        check_train_section(ok, (("train.steps", 0, 1),))
    with pytest.raises(ValueError, match="train.lr must be > 0"):
        check_train_section(SimpleNamespace(**{**vars(ok), "lr": 0.0}), ())
    with pytest.raises(ValueError, match="train.device"):
        check_train_section(SimpleNamespace(**{**vars(ok), "device": "gpu"}), ())
