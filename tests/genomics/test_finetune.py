"""Fine-tuning a DNA classifier through the one training loop: configs, batches without padding, the
reverse-complement option, starting from a pretrained causal LM, and the dna commands end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from titanmem.blocks import VARIANTS
from titanmem.cli import main
from titanmem.data import NucleotideTokenizer
from titanmem.data.genomes import reverse_complement
from titanmem.genomics import finetune as finetune_module
from titanmem.genomics.finetune import (
    _batches, _class_probabilities, build_classifier, evaluate_both_ways, evaluate_classifier, finetune_job_from_dict,
    length_groups, load_finetune_job, validation_split,
)
from titanmem.genomics.tasks import SequenceTask, write_benchmark
from titanmem.models import TitansConfig, TitansForCausalLM

CONFIGS = Path(__file__).parents[2] / "configs" / "dna" / "finetune"
SMALL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
         "chunk_size": 8, "segment_size": 8, "window": 8, "n_persistent": 2}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_has_a_finetune_config(variant):
    job = load_finetune_job(CONFIGS / f"{variant}.toml")
    assert (job.model.variant, job.model.preset, job.task.tokenizer) == (variant, "tiny", "dna")
    assert job.train.reverse_complement and job.name == f"dna-finetune-{variant}"


@pytest.mark.parametrize("raw, message", [
    ({"train": {"stesp": 3}}, "unknown config key train.stesp"),
    ({"train": {"steps": 0}}, "train.steps must be >= 1"),
    ({"task": {"tokenizer": "dna-kmer:0"}}, "k must be"),
    ({"model": {"init": 3}}, "model.init must be a path string"),
    ({"model": {"variant": "rnn"}}, "invalid \\[model\\] section"),
    ({"extra": {}}, "unknown config key extra"),
    ({"task": {"val_fraction": 1.0}}, "task.val_fraction must be in \\[0, 1\\), got 1.0"),
    ({"task": {"val_fraction": -0.1}}, "task.val_fraction must be in"),
    ({"train": {"keep_best": True}}, "train.keep_best needs a validation split"),
    ({"train": {"eval_every": -1}}, "train.eval_every must be >= 0"),
    ({"task": {"val_seed": -1}}, "task.val_seed must be >= 0"),
])
def test_bad_jobs_name_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        finetune_job_from_dict(raw)


def _easy_task(n: int = 48, length: int = 24, seed: int = 0) -> SequenceTask:
    """AT-rich against GC-rich sequences: a task any working classifier learns in a few steps."""
    rng = random.Random(seed)

    def seq(rich: str) -> str:
        return "".join(rng.choice(rich) if rng.random() < 0.85 else rng.choice("ACGT") for _ in range(length))

    pairs = [(seq("AT"), 0) if i % 2 == 0 else (seq("GC"), 1) for i in range(n)]
    return SequenceTask("easy", ("at", "gc"), tuple(pairs[: n * 3 // 4]), tuple(pairs[n * 3 // 4 :]))


def test_length_groups_stack_sequences_of_one_length_in_input_order():
    tok = NucleotideTokenizer()
    groups = length_groups([("ACGT", 0), ("AC", 1), ("GGTT", 1), ("TTTT", 0)], tok)
    assert list(groups) == [2, 4]
    ids, labels = groups[4]
    assert ids.tolist() == [tok.encode("ACGT"), tok.encode("GGTT"), tok.encode("TTTT")] and labels.tolist() == [0, 1, 0]
    minus, _ = length_groups([("AACG", 0)], tok, strand="-")[4]
    assert tok.decode(minus[0].tolist()) == "CGTT"


def test_reverse_complement_option_reads_both_strands():
    tok = NucleotideTokenizer()
    pairs = [("AACGTT", 0), ("GGGTCA", 1), ("TTTAAC", 0)]
    groups = [length_groups(pairs, tok), length_groups(pairs, tok, strand="-")]
    forward = {tuple(tok.encode(s)) for s, _ in pairs}
    backward = {tuple(tok.encode(reverse_complement(s))) for s, _ in pairs}
    seen = set()
    stream = _batches(groups, 2, seed=0, device=torch.device("cpu"))
    for _ in range(20):
        ids, _ = next(stream)
        rows = {tuple(r) for r in ids.tolist()}
        assert rows <= forward or rows <= backward  # a batch is read from one strand
        seen |= {"+" if rows <= forward else "-"}
    assert seen == {"+", "-"}
    only_forward = _batches(groups[:1], 2, seed=0, device=torch.device("cpu"))
    assert all({tuple(r) for r in next(only_forward)[0].tolist()} <= forward for _ in range(10))


def test_a_causal_lm_folder_becomes_the_backbone(tmp_path):
    torch.manual_seed(0)
    lm = TitansForCausalLM(TitansConfig(variant="lmm", vocab_size=8, **SMALL))
    lm.save_pretrained(tmp_path / "lm")
    job = finetune_job_from_dict({"model": {"init": str(tmp_path / "lm")}})
    clf = build_classifier(job, NucleotideTokenizer(), ("a", "b", "c"))
    assert clf.config.num_labels == 3 and clf.config.id2label == {0: "a", 1: "b", 2: "c"}
    for name, p in lm.model.state_dict().items():
        assert torch.equal(p, clf.model.state_dict()[name]), name
    small = TitansForCausalLM(TitansConfig(variant="lmm", vocab_size=4, **SMALL))
    small.save_pretrained(tmp_path / "small")
    job = finetune_job_from_dict({"model": {"init": str(tmp_path / "small")}})
    with pytest.raises(ValueError, match="must cover the tokenizer"):
        build_classifier(job, NucleotideTokenizer(), ("a", "b"))


def test_finetune_and_eval_commands_learn_an_easy_task(tmp_path, capsys, monkeypatch):
    prepared: list[int] = []
    monkeypatch.setattr(finetune_module, "prepare_cpu", prepared.append)
    folder = write_benchmark(_easy_task(), tmp_path / "benchmarks")
    out = tmp_path / "run"
    overrides = [f"--task.path={folder}", f"--out_dir={out}", "--train.steps=40", "--train.batch_size=12",
                 "--train.warmup_steps=4", "--train.lr=3e-3", "--train.log_every=40"]
    overrides += [f"--model.{k}={v}" for k, v in SMALL.items()]
    assert main(["dna", "finetune", "--config", str(CONFIGS / "mag.toml"), *overrides]) == 0
    assert prepared == [0]  # the config's train.threads (0: torch's choice), before training
    results = json.loads((out / "results.json").read_text())
    assert results["variant"] == "mag" and results["test"]["n"] == 12
    assert results["test"]["accuracy"] >= 0.9, results["test"]
    assert len((out / "train_log.csv").read_text().splitlines()) == 41
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and results["skipped_steps"] == []
    assert "validation" not in results  # no validation split unless asked for
    capsys.readouterr()
    assert main(["dna", "eval", str(out / "model"), str(folder)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accuracy"] == results["test"]["accuracy"] and printed["task"] == "easy"
    assert main(["dna", "eval", str(out / "model"), str(folder), "--both-strands"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["both_strands"] and printed["accuracy"] == results["test_both_strands"]["accuracy"]


class _CountingClassifier(torch.nn.Module):
    """Two classes; the logit of class 0 is #A + 3 #G - #C of the sequence, class 1's is 0."""

    def __init__(self, tokenizer):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))
        self.ids = {base: tokenizer.encode(base)[0] for base in "ACG"}

    def forward(self, ids, use_cache=False):
        count = {b: (ids == i).sum(-1).float() for b, i in self.ids.items()}
        first = count["A"] + 3 * count["G"] - count["C"]
        return type("Out", (), {"logits": torch.stack((first, torch.zeros_like(first)), -1)})


def test_both_strands_averages_the_probabilities_of_a_sequence_and_its_reverse_complement():
    tok = NucleotideTokenizer()
    model = _CountingClassifier(tok)
    # Probability of class 0 on each strand, sigmoid of the logit: ACC -1 (0.27), its other strand GGT
    # 6 (0.998), mean 0.63: class 0. AAC 1, GTT 3: class 0 either way. CCT -2 (0.12), AGG 7 (0.999),
    # mean 0.56: class 0, where CCT alone says class 1.
    pairs = [("ACC", 0), ("AAC", 0), ("CCT", 1)]
    one = evaluate_classifier(model, tok, pairs, ("x", "y"))
    both = evaluate_classifier(model, tok, pairs, ("x", "y"), both_strands=True)
    assert one["correct"] == 2 and one["per_class"] == {"x": 0.5, "y": 1.0}
    assert both["correct"] == 2 and both["per_class"] == {"x": 1.0, "y": 0.0}
    assert evaluate_both_ways(model, tok, pairs, ("x", "y")) == (one, both)
    with pytest.raises(ValueError, match="pairs must hold at least one sequence"):
        evaluate_classifier(model, tok, [], ("x", "y"))
    assert reverse_complement("ACC") == "GGT"


def test_dna_commands_report_mistakes_in_one_line(tmp_path, capsys):
    assert main(["dna", "finetune", "--config", str(CONFIGS / "lmm.toml"), f"--task.path={tmp_path / 'none'}",
                 f"--out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["dna", "finetune"]) == 2
    assert "--config is required" in capsys.readouterr().err
    assert main(["dna", "eval", str(tmp_path), str(tmp_path)]) == 2
    assert "finetune_job.json" in capsys.readouterr().err
    assert main(["dna", "tasks", "--out", str(tmp_path), "--data-dir", str(tmp_path / "empty")]) == 2
    assert "titanmem data dna-human" in capsys.readouterr().err


def test_validation_split_holds_out_a_fraction_of_each_class_reproducibly():
    pairs = [(f"A{i}", 0) for i in range(30)] + [(f"C{i}", 1) for i in range(10)] + [(f"G{i}", 2) for i in range(3)]
    rest, held = validation_split(pairs, 0.2, seed=5)
    # round(0.2 * n) per class, at least one: 6 of 30, 2 of 10, 1 of 3
    assert [sum(1 for _, y in held if y == c) for c in range(3)] == [6, 2, 1]
    assert sorted(rest + held) == sorted(pairs) and not set(rest) & set(held)
    assert list(rest) == [p for p in pairs if p in rest] and list(held) == [p for p in pairs if p in held]
    assert validation_split(pairs, 0.2, seed=5) == (rest, held)
    assert validation_split(pairs, 0.2, seed=6)[1] != held
    assert validation_split(pairs, 0.0, seed=5) == (tuple(pairs), ())
    with pytest.raises(ValueError, match="fraction must be in \\[0, 1\\), got 1.0"):
        validation_split(pairs, 1.0, seed=0)
    with pytest.raises(ValueError, match="class 1 has 1 training pairs"):
        validation_split([("A", 0), ("C", 0), ("G", 1)], 0.5, seed=0)


@pytest.mark.parametrize("keep_best", [True, False])
def test_validation_scores_every_few_steps_and_keep_best_restores_that_step(tmp_path, keep_best):
    folder = write_benchmark(_easy_task(n=64), tmp_path / "benchmarks")
    out = tmp_path / "run"
    overrides = [f"--task.path={folder}", f"--out_dir={out}", "--train.steps=30", "--train.batch_size=8",
                 "--train.warmup_steps=3", "--train.lr=3e-3", "--train.log_every=30", "--task.val_fraction=0.25",
                 "--train.eval_every=10", f"--train.keep_best={str(keep_best).lower()}", "--train.threads=1"]
    overrides += [f"--model.{k}={v}" for k, v in SMALL.items()]
    assert main(["dna", "finetune", "--config", str(CONFIGS / "lmm.toml"), *overrides]) == 0
    results = json.loads((out / "results.json").read_text())
    val = results["validation"]
    assert [s["step"] for s in val["by_step"]] == [10, 20, 30] and val["n"] == 12  # 25% of 24 per class
    best = max(val["by_step"], key=lambda s: (s["accuracy"], -s["loss"]))
    assert (val["best_step"], val["best_accuracy"]) == (best["step"], best["accuracy"])
    assert val["kept"] == ("best" if keep_best else "last") and (val["fraction"], val["seed"]) == (0.25, 0)
    assert val["best_step"] < 30  # this seed's best is not its last step, so best and last weights differ
    # The saved model is the kept step's: it scores the validation split exactly as that step did.
    task = _easy_task(n=64)
    _, held = validation_split(task.train, 0.25, seed=0)
    from titanmem.models import TitansForSequenceClassification

    model = TitansForSequenceClassification.from_pretrained(out / "model").eval()
    probs, labels = _class_probabilities(model, NucleotideTokenizer(), held, 64, "+")
    kept = best if keep_best else val["by_step"][-1]
    loss = float(-probs.gather(1, labels[:, None]).log().double().mean())
    assert loss == pytest.approx(kept["loss"], rel=1e-5)
    assert float((probs.argmax(-1) == labels).double().mean()) == kept["accuracy"]
