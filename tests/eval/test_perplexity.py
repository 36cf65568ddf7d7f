"""Long-document perplexity: streaming in pieces with the cache == one parallel forward, the totals
and position buckets add up, and ``titanmem eval ppl`` writes its report from a saved model."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from titanmem.data import ByteTokenizer, Document
from titanmem.eval.perplexity import (
    PerplexityResult, add_ppl_arguments, evaluate_perplexity, run_ppl, stream_nll, stream_scores,
)
from titanmem.models import TitansConfig, TitansForCausalLM

# chunk 4, segment 8 and window 5 put memory, MAC-segment and window boundaries inside every document.
TINY = dict(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
            chunk_size=4, segment_size=8, window=5, n_persistent=2, memory_expansion=2, max_lr=0.5,
            initializer_range=0.1)


def _model(variant: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> TitansForCausalLM:
    torch.manual_seed(seed)
    model = TitansForCausalLM(TitansConfig(variant=variant, **TINY)).to(dtype)
    with torch.no_grad():  # per-head gates that differ, so the memory does something non-uniform
        for name, p in model.named_parameters():
            if name.endswith("gate_proj.bias"):
                p.normal_(0.0, 1.0)
    return model.eval()


def _parallel_nll(model, full: torch.Tensor, first: int) -> torch.Tensor:
    """NLL of full[first:] from one forward over all of ``full`` (the reference)."""
    with torch.no_grad():
        logits = model(full[None], use_cache=False).logits[0]
    return F.cross_entropy(logits[first - 1 : -1], full[first:], reduction="none")


@pytest.fixture(scope="module", params=["lmm", "mac", "mag"])
def variant_model(request):
    return request.param, _model(request.param)


@pytest.mark.parametrize("piece", [1, 3, 7, 8, 13, 64])
def test_streaming_equals_one_forward(variant_model, piece):
    _, model = variant_model
    g = torch.Generator().manual_seed(1)
    context, ids = torch.randint(0, 256, (2,), generator=g), torch.randint(0, 256, (41,), generator=g)
    ref = _parallel_nll(model, torch.cat([context, ids]), first=2)
    out = stream_scores(model, ids, context=context, piece=piece)
    assert out.nll.shape == (41,) and out.nll.dtype == torch.float64
    torch.testing.assert_close(out.nll, ref, rtol=1e-10, atol=1e-10)
    # without a context the first token is not scored
    ref0 = _parallel_nll(model, ids, first=1)
    torch.testing.assert_close(stream_nll(model, ids, piece=piece), ref0, rtol=1e-10, atol=1e-10)


def test_greedy_flags_are_the_argmax():
    model = _model("mac")
    ids = torch.randint(0, 256, (20,), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(ids[None], use_cache=False).logits[0]
    out = stream_scores(model, ids, piece=6)
    assert torch.equal(out.greedy, logits[:-1].argmax(-1) == ids[1:])
    # a sequence the model predicts greedily is all True
    greedy = [int(ids[0])]
    with torch.no_grad():
        for _ in range(12):
            greedy.append(int(model(torch.tensor([greedy]), use_cache=False).logits[0, -1].argmax()))
    assert bool(stream_scores(model, greedy, piece=5).greedy.all())


def test_float32_streaming_matches_within_1e5():
    model = _model("mac", dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    context, ids = torch.tensor([10, 10]), torch.randint(0, 256, (150,), generator=g)
    ref = _parallel_nll(model, torch.cat([context, ids]), first=2).double()
    for piece in (17, 64):
        torch.testing.assert_close(stream_nll(model, ids, context=context, piece=piece), ref, rtol=1e-5, atol=1e-5)


def test_totals_and_position_buckets_add_up():
    model = _model("lmm")
    tok = ByteTokenizer()
    docs = [Document("a", "The quick brown fox jumps over the lazy dog. " * 5), Document("b", "héllo wörld ✓ " * 3),
            Document("empty", "")]
    res = evaluate_perplexity(model, tok, docs, piece=16, label="lmm")
    ids = [tok.encode(d.text) for d in docs[:2]]
    nlls = [stream_nll(model, x, context=tok.encode("\n\n"), piece=1000).numpy() for x in ids]
    total = sum(float(n.sum()) for n in nlls)
    n_bytes = sum(len(d.text.encode()) for d in docs[:2])
    assert res.documents == 2 and res.tokens == sum(map(len, ids)) and res.bytes == n_bytes
    assert math.isclose(res.bpb, total / math.log(2) / n_bytes, rel_tol=1e-9)
    pos = res.by_position()
    assert pos["start"][:4] == [0, 1, 2, 4] and pos["end"][:4] == [1, 2, 4, 8]
    assert sum(pos["tokens"]) == res.tokens
    # bucket [4, 8) of the byte tokenizer: positions 4..7 of each document
    expect = sum(float(n[4:8].sum()) for n in nlls) / math.log(2) / 8
    assert math.isclose(pos["bpb"][3], expect, rel_tol=1e-9)
    assert math.isclose(res.per_document[1]["bpb"], float(nlls[1].sum()) / math.log(2) / len(ids[1]), rel_tol=1e-9)
    # truncation to max_tokens scores exactly that many tokens per document
    short = evaluate_perplexity(model, tok, docs, piece=16, max_tokens=10)
    assert short.tokens == 20 and short.bytes == 20
    assert math.isclose(short.nll, float(nlls[0][:10].sum() + nlls[1][:10].sum()), rel_tol=1e-9)


def test_windows_spread_over_a_document_each_read_from_an_empty_state():
    model, tok = _model("mag"), ByteTokenizer()
    text = "".join(chr(97 + (i * 7) % 26) for i in range(250))
    docs = [Document("long", text), Document("short", text[:30])]
    res = evaluate_perplexity(model, tok, docs, piece=16, max_tokens=40, windows=3)
    names = [d["name"] for d in res.per_document]
    assert names == ["long@0", "long@105", "long@210", "short"]
    sep = tok.encode("\n\n")
    expect = [stream_nll(model, tok.encode(text[s:s + 40]), context=sep, piece=40).numpy() for s in (0, 105, 210)]
    expect.append(stream_nll(model, tok.encode(text[:30]), context=sep, piece=40).numpy())
    assert res.tokens == 150 and math.isclose(res.nll, sum(float(n.sum()) for n in expect), rel_tol=1e-9)
    # positions count from each window's start: bucket [32, 64) holds positions 32-39 of the three windows
    pos = res.by_position()
    assert pos["start"][6] == 32 and pos["tokens"][6] == 24
    # starts that would overlap an earlier window are dropped; one window is the first max_tokens
    crowded = evaluate_perplexity(model, tok, [Document("long", text[:100])], piece=16, max_tokens=40, windows=10)
    assert [d["name"] for d in crowded.per_document] == ["long@0", "long@40"]
    first = evaluate_perplexity(model, tok, docs[:1], piece=16, max_tokens=40)
    assert [d["name"] for d in first.per_document] == ["long"] and math.isclose(first.nll, float(expect[0].sum()))
    for bad, match in (({"windows": 0, "max_tokens": 40}, "windows must be an int >= 1"),
                       ({"windows": 2}, "windows > 1 needs max_tokens")):
        with pytest.raises(ValueError, match=match):
            evaluate_perplexity(model, tok, docs, **bad)


def test_result_serialises_with_nan_free_numbers():
    res = PerplexityResult(label="x", piece=4)
    res.add("d", np.arange(5), np.full(5, math.log(2)), np.ones(5))
    data = json.loads(json.dumps(res.to_dict()))
    assert data["bpb"] == pytest.approx(1.0) and data["by_position"]["tokens"] == [1, 1, 2, 1]


def test_bad_arguments_name_themselves():
    model, tok = _model("lmm"), ByteTokenizer()
    with pytest.raises(ValueError, match="piece must be an int >= 1"):
        stream_nll(model, [1, 2, 3], piece=0)
    with pytest.raises(ValueError, match="max_tokens"):
        evaluate_perplexity(model, tok, [Document("a", "abc")], max_tokens=0)
    with pytest.raises(ValueError, match="nothing to score"):
        evaluate_perplexity(model, tok, [Document("a", "")])


def test_run_ppl_writes_report_for_two_models(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"doc{i}.txt").write_text(f"Document {i}. " + "Some words of text, " * (10 + 5 * i))
    paths = []
    for variant in ("mac", "swa"):
        path = tmp_path / variant
        _model(variant, dtype=torch.float32).save_pretrained(path)
        paths.append(str(path))
    parser = argparse.ArgumentParser()
    add_ppl_arguments(parser)
    args = parser.parse_args(["--model", paths[0], "--model", paths[1], "--corpus", "text", "--corpus-path",
                              str(corpus), "--split", "val", "--val-fraction", "0.5", "--piece", "33",
                              "--device", "cpu", "--max-tokens", "150", "--windows", "2",
                              "--out", str(tmp_path / "out")])
    assert run_ppl(args) == 0
    report = json.loads((tmp_path / "out" / "ppl.json").read_text())
    assert [r["label"] for r in report["results"]] == ["mac", "swa"]
    assert report["settings"]["windows"] == 2
    assert all(len(r["per_document"]) == 2 * len(report["settings"]["documents"]) for r in report["results"])
    assert report["settings"]["documents"] and all(r["bpb"] > 0 for r in report["results"])
    assert (tmp_path / "out" / "ppl_by_position.png").stat().st_size > 1000
    assert "| mac |" in (tmp_path / "out" / "ppl.md").read_text()
    bad = parser.parse_args(["--model", str(tmp_path / "nowhere"), "--corpus", "text", "--corpus-path", str(corpus)])
    assert run_ppl(bad) == 2
