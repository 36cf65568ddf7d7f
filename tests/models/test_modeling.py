"""TitansForCausalLM, every variant: decoding with the cache == parallel forward, pieces == one call,
rows independent, every parameter trained, AdamW learns, save/load round trip, generate with and
without the cache, the loss, the init and the refusals (padding, beam search)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

from tests.helpers import assert_close
from tests.invariants import check_causal, check_decoding_equals_parallel, check_pieces_equal_one_call, \
    check_rows_independent, lm_step
from titanmem.blocks import VARIANTS
from titanmem.models import TitansCache, TitansConfig, TitansForCausalLM, output_cache

RTOL = 1e-10
T, VOCAB = 19, 64
# chunk 4 and segment 8 put memory and MAC boundaries inside T; window 5 makes SWA forget.
TINY = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
            chunk_size=4, segment_size=8, window=5, n_persistent=2, memory_expansion=2, max_lr=0.5,
            initializer_range=0.1)


# Every variant, and MAC with a convolution on its retrieval query (a conv tail in its cache state), with
# the residual read and with its memory written with the block input.
CASES = (*VARIANTS, "mac-query-conv", "mac-read-residual", "mac-memory-input")


def _model(variant: str, dtype: torch.dtype = torch.float64, seed: int = 0, **kw) -> TitansForCausalLM:
    torch.manual_seed(seed)
    if variant == "mac-query-conv":
        variant, kw = "mac", {"mac_query_conv": 3, **kw}
    if variant == "mac-read-residual":
        variant, kw = "mac", {"mac_read_residual": True, **kw}
    if variant == "mac-memory-input":
        variant, kw = "mac", {"mac_memory_input": "input", **kw}
    model = TitansForCausalLM(TitansConfig(variant=variant, **{**TINY, **kw})).to(dtype)
    with torch.no_grad():  # random gate biases: gates differ per head (the defaults are uniform)
        for name, p in model.named_parameters():
            if name.endswith("gate_proj.bias"):
                p.normal_(0.0, 1.0)
    return model.eval()


def _ids(B: int = 2, length: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=CASES)
def variant_model(request):
    """One float64 model per variant, shared by the tests that only read it (no grad, no training)."""
    return request.param, _model(request.param)


def _logits(model, ids, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, use_cache=False, **kw).logits


@pytest.mark.parametrize("prefill", [1, 5, 8])
def test_decoding_with_cache_equals_parallel(variant_model, prefill):
    _, model = variant_model
    check_decoding_equals_parallel(lm_step(model), _ids(), prefill, RTOL)


def test_the_cache_is_updated_in_place_and_counts_tokens(variant_model):
    _, model = variant_model
    ids = _ids()
    with torch.no_grad():
        out = model(ids[:, :5], use_cache=True)
        cache = output_cache(out)
        assert isinstance(cache, TitansCache) and len(cache) == 2
        for t in range(5, T):
            assert output_cache(model(ids[:, t : t + 1], cache=cache)) is cache
    assert cache.get_seq_length() == T


def test_pieces_equal_one_call(variant_model):
    _, model = variant_model
    check_pieces_equal_one_call(lm_step(model), _ids(), (3, 7, 9), RTOL)


def test_rows_of_a_batch_are_independent(variant_model):
    _, model = variant_model
    check_rows_independent(lm_step(model), _ids(B=3), RTOL)


# chunk 4, segment 8, window 5: at, just before and just after each boundary, and inside.
@pytest.mark.parametrize("p", [0, 3, 4, 5, 7, 8, 9, 11, 15, 16])
def test_causal(variant_model, p):
    _, model = variant_model
    check_causal(lm_step(model), _ids(), p, lambda column: (column + 1) % VOCAB)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_gets_a_gradient(variant):
    model = _model(variant).train()
    ids, targets = _ids(), _ids(seed=2)
    logits = model(ids, use_cache=False).logits
    F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1)).backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().max() > 0)]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_adamw_lowers_the_loss_on_a_repeated_sequence(variant):
    model = _model(variant, dtype=torch.float32).train()
    ids = torch.arange(8).repeat(3)[None]  # 24 tokens: one period of 8, seen three times
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(8):
        loss = model(ids, labels=ids, use_cache=False).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], f"losses {losses}"


def test_loss_is_the_shifted_cross_entropy():
    model = _model("mac")
    ids = _ids()
    labels = ids.clone()
    labels[0, 5] = -100  # ignored: position 4 does not count
    out = model(ids, labels=labels, use_cache=False)
    logits = out.logits[:, :-1].reshape(-1, VOCAB)
    keep = labels[:, 1:].reshape(-1) != -100
    want = F.cross_entropy(logits[keep], labels[:, 1:].reshape(-1)[keep])
    assert out.loss.dtype == torch.float64
    assert abs(out.loss.item() - want.item()) < 1e-12


@pytest.mark.parametrize("variant", CASES)
def test_save_and_load_round_trip(variant, tmp_path):
    model = _model(variant)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, TitansConfig)
    assert config.block_spec() == model.config.block_spec() and config.variant == model.config.variant
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is TitansForCausalLM
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), "a weight changed in the round trip"
    # Weights are bit-identical; the memory-mapped tensors' alignment can move matmul round-off.
    assert_close("logits", _logits(model, _ids()), _logits(loaded, _ids()), 1e-12)


def test_import_titanmem_alone_lets_auto_classes_load_a_saved_folder(tmp_path):
    # A new interpreter: in this one titanmem.models is imported already.
    _model("lmm", dtype=torch.float32).save_pretrained(tmp_path)
    code = ("import titanmem\nfrom transformers import AutoModelForCausalLM\n"
            f"print(type(AutoModelForCausalLM.from_pretrained({str(tmp_path)!r})).__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "TitansForCausalLM"


@pytest.mark.parametrize("variant", CASES)
def test_generate_with_and_without_cache(variant):
    model, prompt = _model(variant), _ids(length=7)
    cached = model.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=True, return_dict_in_generate=True)
    fresh = model.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=False)
    assert cached.sequences.shape == (2, 15) and torch.equal(cached.sequences[:, :7], prompt)
    assert isinstance(output_cache(cached), TitansCache)
    assert output_cache(cached).get_seq_length() == 14  # the last token is returned, never read
    assert torch.equal(cached.sequences, fresh)


def test_generate_from_embeddings_continues_like_from_ids():
    model, prompt = _model("mac"), _ids(length=7)
    from_ids = model.generate(prompt, max_new_tokens=6, do_sample=False)
    embeds = model.get_input_embeddings()(prompt).detach()
    from_embeds = model.generate(inputs_embeds=embeds, max_new_tokens=6, do_sample=False)
    assert torch.equal(from_embeds, from_ids[:, 7:])


def _count_forward_tokens(model) -> list[int]:
    """Tokens each forward call of ``model`` receives (ids or embeddings), appended as calls happen."""
    seen: list[int] = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen.append((ids if ids is not None else kwargs["inputs_embeds"]).shape[1])

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


@pytest.mark.parametrize("variant", CASES)
def test_generate_reads_one_token_per_step_after_the_prefill(variant):
    model, prompt = _model(variant), _ids(length=11)
    seen = _count_forward_tokens(model)
    model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True)
    assert seen == [11, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("name", ["cache", "past_key_values"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_generate_continues_a_prefilled_cache_under_either_name(variant, name):
    model, prompt = _model(variant), _ids(length=11)
    want = model.generate(prompt, max_new_tokens=6, do_sample=False)
    with torch.no_grad():
        cache = output_cache(model(prompt[:, :4], use_cache=True))
    seen = _count_forward_tokens(model)
    got = model.generate(prompt, max_new_tokens=6, do_sample=False, **{name: cache})
    assert torch.equal(got, want)
    assert seen == [7, 1, 1, 1, 1, 1]  # only what the cache has not read, then one token per step
    assert cache.get_seq_length() == 4 + 7 + 5  # advanced by every token read; the last one is never read


def test_generate_and_forward_print_no_deprecation_warning():
    from transformers.utils import logging as hf_logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    hf_logging.get_logger("transformers").warning_once.cache_clear()  # else a message shown earlier is silent
    model, prompt = _model("mag"), _ids(length=6)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with torch.no_grad():
                cache = output_cache(model(prompt[:, :3], use_cache=True))
                model(prompt[:, 3:4], cache=cache, use_cache=True)
            model.generate(prompt, cache=cache, max_new_tokens=3, do_sample=False)
            model.generate(prompt, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    finally:
        hf_logger.removeHandler(handler)
    assert not [r.getMessage() for r in records if "deprecat" in r.getMessage().lower()]


def test_two_different_caches_are_refused():
    model, prompt = _model("lmm"), _ids(length=5)
    with pytest.raises(ValueError, match="two different caches"):
        model(prompt, cache=TitansCache(), past_key_values=TitansCache())
    with pytest.raises(TypeError, match="TitansCache"):
        model(prompt, cache=[1, 2])


def test_attention_mask_must_have_the_shape_of_input_ids():
    model, ids = _model("swa"), _ids(B=2, length=10)
    with pytest.raises(ValueError, match=r"shape of input_ids \(2, 10\).*got \(3, 4\)"):
        model(ids, attention_mask=torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape of input_ids \(2, 10\).*got \(3, 4\)"):
        model.generate(ids, attention_mask=torch.ones(3, 4, dtype=torch.long), max_new_tokens=2, do_sample=False)
    with torch.no_grad():  # with a cache, the mask may cover the cached tokens too, as generate passes it
        cache = output_cache(model(ids[:, :4], use_cache=True))
        model(ids[:, 4:], cache=cache, attention_mask=torch.ones(2, 10, dtype=torch.long))
        with pytest.raises(ValueError, match=r"\(2, 1\) or .*\(2, 11\), got \(2, 7\)"):
            model(ids[:, :1], cache=cache, attention_mask=torch.ones(2, 7, dtype=torch.long))


def test_a_pad_token_inside_the_prompt_is_not_mistaken_for_padding():
    model, prompt = _model("mac"), _ids(length=9)
    want = model.generate(prompt, max_new_tokens=4, do_sample=False)
    pad = int(prompt[0, 3])  # transformers would infer a mask with a zero wherever this id occurs
    assert model.generation_config.eos_token_id != pad
    got = model.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=pad)
    assert torch.equal(got, want)
    mask = torch.ones_like(prompt)
    mask[0, 3] = 0  # padding the user asked for is still refused, with the reason
    with pytest.raises(ValueError, match="padding is not supported"):
        model.generate(prompt, attention_mask=mask, max_new_tokens=2, do_sample=False, pad_token_id=pad)


def test_padding_and_beam_search_are_refused():
    model, ids = _model("mal"), _ids()
    ones = torch.ones_like(ids)
    assert torch.equal(_logits(model, ids, attention_mask=ones), _logits(model, ids))
    ones[0, 0] = 0
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=ones)
    with pytest.raises(ValueError, match="only supports"):
        model.generate(ids[:, :5], max_new_tokens=2, num_beams=2, do_sample=False)
    with pytest.raises(NotImplementedError, match="TitansCache"):
        output_cache(model(ids, use_cache=True)).reorder_cache(torch.tensor([1, 0]))


def test_init_keeps_the_layers_own_initialisation():
    torch.manual_seed(0)
    model = TitansForCausalLM(TitansConfig(variant="mag", **{**TINY, "initializer_range": 0.3}))
    memory = model.model.layers[1].memory
    bias = memory.gate_proj.bias.view(3, -1)
    assert torch.equal(bias, torch.tensor([[-2.0], [0.0], [-5.0]]).expand_as(bias))  # the layer's gate biases
    assert torch.equal(model.model.norm.weight, torch.ones(32))
    dim = memory.memory_init[0].shape[1]
    assert abs(memory.memory_init[0].std().item() - dim**-0.5) < 0.1  # randn / sqrt(d_in), not 0.3
    assert abs(memory.qkv_proj.weight.std().item() - 0.3) < 0.03  # linear weights: initializer_range
    untied = TitansForCausalLM(TitansConfig(variant="lmm", **{**TINY, "tie_word_embeddings": False}))
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight


def _saturated(variant: str, **kw) -> TitansForCausalLM:
    """A model whose memories learn at a huge rate with full momentum and no forgetting: they diverge."""
    model = _model(variant, dtype=torch.float32, max_lr=1e6, **kw)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gate_proj.bias"):
                p.view(3, -1)[0].fill_(20.0)  # theta = max_lr
                p.view(3, -1)[1].fill_(20.0)  # eta = 1
                p.view(3, -1)[2].fill_(-20.0)  # alpha = 0
    return model


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal"])
def test_a_diverging_memory_raises_naming_the_layer_and_position(variant):
    from titanmem.layers import MemoryDivergedError

    with pytest.raises(MemoryDivergedError, match=r"layers\.0\.memory: the memory diverged \(.*position \d+"):
        _saturated(variant)(_ids(length=64))
    quiet = _saturated(variant, check_memory_finite=False)(_ids(length=64)).logits  # the switch: no check
    assert not bool(torch.isfinite(quiet).all())
