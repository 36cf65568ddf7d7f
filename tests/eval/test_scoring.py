"""Exact-match scoring: greedy decoding with the cache, stub answerers at 100% and at chance, tables, plots."""

from __future__ import annotations

import json
import random
import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from titanmem.eval.scoring import (
    ModelAnswerer, accuracy_table, evaluate_task, exact_match, greedy_decode, plot_accuracy_vs_length, plot_heatmap,
    score_examples, write_json,
)
from titanmem.eval.tasks import make_task
from titanmem.models import TitansConfig, TitansForCausalLM


@pytest.mark.parametrize("prediction,answer,ok", [
    (" 71432", " 71432", True), ("71432. Remember", " 71432", True), ("\n 71432 is", "71432 ", True),
    (" 714329", " 71432", True),  # what follows the answer is not scored
    (" 7143", " 71432", False), (" 71433", " 71432", False), ("", " 5", False), (" x", "  ", False),
])
def test_exact_match_compares_the_answer_from_the_first_generated_character(prediction, answer, ok):
    assert exact_match(prediction, answer) is ok


class OracleLM(nn.Module):
    """A byte "model" whose next token continues the pass key found in everything it has read.

    Its cache is the token list; it records the size of every call, so prefill pieces can be checked.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.calls: list[int] = []

    def forward(self, input_ids, cache, use_cache=True, logits_to_keep=0):
        self.calls.append(input_ids.shape[1])
        rows = cache.states.setdefault(0, [[] for _ in range(input_ids.shape[0])])  # a TitansCache, kept in place
        logits = torch.full((input_ids.shape[0], 1, 256), -1e4)
        for b, (row, ids) in enumerate(zip(rows, input_ids.tolist())):
            row.extend(ids)
            text = bytes(row).decode()
            found = re.search(r"The pass key is (\d+)\. Remember", text)
            if found is None:  # an early prefill piece: these logits are never read
                continue
            key = found.group(1)
            generated = text[text.rindex("The pass key is") + len("The pass key is"):]
            target = f" {key}."
            logits[b, 0, ord(target[min(len(generated), len(target) - 1)])] = 0
        return SimpleNamespace(logits=logits)


class NoiseLM(OracleLM):
    """Random digits, whatever it reads."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, input_ids, cache, use_cache=True, logits_to_keep=0):
        logits = torch.full((input_ids.shape[0], 1, 256), -1e4)
        digits = torch.randint(ord("0"), ord("9") + 1, (input_ids.shape[0],), generator=self.gen)
        logits[torch.arange(input_ids.shape[0]), 0, digits] = 0
        logits[:, 0, ord(" ")] = -1.0 if not cache.states else -1e4  # a space only on the first call
        cache.states[0] = True
        return SimpleNamespace(logits=logits)


def test_a_model_that_copies_the_key_scores_100_percent_with_prefill_in_pieces():
    task = make_task("passkey", digits=5)
    model = OracleLM()
    rows, records = evaluate_task(task, ModelAnswerer(model, "byte", prefill_chunk=64), [300, 700], [0, 50, 100],
                                  samples=4, batch_size=3)
    assert all(r["accuracy"] == 1.0 for r in rows) and len(records) == 24
    assert max(model.calls) == 64 and 1 in model.calls  # pieces of 64, then one token per step
    assert all(r["prediction"].startswith(r["answer"]) for r in records)


def test_a_model_answering_noise_scores_near_chance():
    task = make_task("passkey", digits=1)
    rows, _ = evaluate_task(task, ModelAnswerer(NoiseLM(seed=0), "byte"), [200], [50], samples=300, batch_size=16)
    assert 0.04 <= rows[0]["accuracy"] <= 0.18  # chance is 10%


def test_any_callable_answers_and_batches_hold_equal_lengths():
    task = make_task("mqar", num_pairs=10, num_queries=3)
    examples = task.examples(5, 200, "test") + task.examples(4, 260, "test")
    seen = []

    def answerer(contexts, max_new_tokens):
        seen.append(({len(c) for c in contexts}, len(contexts), max_new_tokens))
        return [random.Random(c).choice(["v00", "v01"]) for c in contexts]

    records = score_examples(examples, answerer, batch_size=3)
    assert all(len(lengths) == 1 and n <= 3 and budget == 3 + 2 for lengths, n, budget in seen)
    assert sorted(n for _, n, _ in seen) == [1, 2, 3, 3]
    assert [r["index"] for r in records] == [e.meta["index"] for e in examples]
    assert all("answer_spans" not in r for r in records)


def test_an_answerer_returning_the_wrong_number_of_continuations_is_an_error():
    examples = make_task("passkey").examples(2, 200)
    with pytest.raises(ValueError, match="2 contexts"):
        score_examples(examples, lambda contexts, n: ["1"])
    with pytest.raises(TypeError, match="answerer must be callable"):
        score_examples(examples, "model")


def _tiny(variant: str) -> TitansForCausalLM:
    torch.manual_seed(0)
    config = TitansConfig(variant=variant, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, segment_size=16, chunk_size=16, window=16, n_persistent=2)
    return TitansForCausalLM(config).eval()


@pytest.mark.parametrize("variant", ["mac", "transformer"])
def test_greedy_decode_in_pieces_matches_generate_and_the_uncached_argmax(variant):
    model = _tiny(variant)
    ids = torch.randint(0, 256, (2, 45), generator=torch.Generator().manual_seed(1))
    out = greedy_decode(model, ids, 6, prefill_chunk=16)
    ref = model.generate(ids, max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(ids))[:, 45:]
    assert torch.equal(out, ref)
    seq = ids
    with torch.no_grad():
        for _ in range(6):
            seq = torch.cat([seq, model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq[:, 45:])


def test_model_answerer_gives_the_same_continuation_alone_or_in_a_batch():
    model = _tiny("mac")
    contexts = [e.context for e in make_task("passkey", digits=2).examples(3, 120, "test")]
    batched = ModelAnswerer(model)(contexts, 4)
    assert batched == [ModelAnswerer(model)([c], 4)[0] for c in contexts]
    assert all(len(c.encode()) == 4 for c in batched if c.isascii())


def test_accuracy_table_json_and_plots(tmp_path):
    records = [{"task": "passkey", "length": n, "depth": d, "correct": (n + d + i) % 3 == 0}
               for n in (256, 512) for d in (0.0, 50.0, 100.0) for i in range(6)]
    rows = accuracy_table(records)
    assert [(r["length"], r["depth"], r["n"]) for r in rows][:2] == [(256, 0.0, 6), (256, 50.0, 6)]
    cell = next(r for r in rows if r["length"] == 512 and r["depth"] == 100.0)
    assert cell["correct"] == sum((612 + i) % 3 == 0 for i in range(6)) and cell["accuracy"] == cell["correct"] / 6
    path = write_json(tmp_path / "out" / "results.json", {"accuracy": rows})
    assert json.loads(path.read_text())["accuracy"] == rows
    for png in (plot_heatmap(rows, tmp_path / "h.png", "t"), plot_accuracy_vs_length(rows, tmp_path / "a.png", "t")):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="depth"):
        plot_heatmap(accuracy_table(records, keys=("task", "length")), tmp_path / "x.png")
