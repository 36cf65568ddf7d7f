"""TitansForSequenceClassification, every variant, on DNA token ids: logits shape, the loss, pooling,
pieces and token-by-token decoding equal one call, a causal-LM checkpoint as its backbone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from tests.helpers import assert_close
from tests.invariants import check_decoding_equals_parallel, check_pieces_equal_one_call, lm_step
from titanmem.blocks import VARIANTS
from titanmem.data import NucleotideTokenizer
from titanmem.models import TitansCache, TitansConfig, TitansForCausalLM, TitansForSequenceClassification
from titanmem.models.modeling_titans import sequence_classification_loss

RTOL = 1e-10
DNA = NucleotideTokenizer()
# chunk 4, segment 8 and window 5 put memory, MAC and attention boundaries inside the 23 bases.
TINY = dict(vocab_size=DNA.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=48, chunk_size=4, segment_size=8, window=5, n_persistent=2, memory_expansion=2,
            max_lr=0.5, initializer_range=0.1)


def _dna_ids() -> torch.Tensor:
    """Two real-looking DNA reads (23 bases, one N) as nucleotide token ids ``[2, 23]``."""
    return torch.tensor([DNA.encode("ACGTTGCAAGGCTTNACGGATCA"), DNA.encode("TTTACGCGCGATATGGCCAATGC")])


def _classifier(variant: str, seed: int = 0, **kw) -> TitansForSequenceClassification:
    torch.manual_seed(seed)
    model = TitansForSequenceClassification(TitansConfig(variant=variant, **{**TINY, **kw})).double()
    with torch.no_grad():  # random gate biases: gates differ per head (the defaults are uniform)
        for name, p in model.named_parameters():
            if name.endswith("gate_proj.bias"):
                p.normal_(0.0, 1.0)
    return model.eval()


@pytest.fixture(scope="module", params=VARIANTS)
def classifier(request):
    return request.param, _classifier(request.param, num_labels=3)


def test_logits_shape_and_cross_entropy_loss(classifier):
    _, model = classifier
    ids, labels = _dna_ids(), torch.tensor([2, 0])
    out = model(ids, labels=labels, use_cache=False)
    assert out.logits.shape == (2, 3)
    assert_close("loss", F.cross_entropy(out.logits, labels), out.loss, RTOL)
    assert model.config.problem_type == "single_label_classification"


def test_last_pooling_reads_the_last_token_and_mean_pooling_every_token(classifier):
    variant, model = classifier
    ids = _dna_ids()
    with torch.no_grad():
        hidden = model.model(ids, use_cache=False).last_hidden_state
        assert_close("last", hidden[:, -1] @ model.score.weight.T, model(ids, use_cache=False).logits, RTOL)
        model.config.classifier_pooling = "mean"
        try:
            assert_close("mean", hidden.mean(1) @ model.score.weight.T, model(ids, use_cache=False).logits, RTOL)
        finally:
            model.config.classifier_pooling = "last"


def test_pieces_then_last_token_equal_one_call(classifier):
    _, model = classifier
    ids = _dna_ids()
    one_call = model(ids, use_cache=False).logits
    cache = TitansCache()
    with torch.no_grad():
        for piece in torch.split(ids, [7, 1, 9, 6], dim=1):
            logits = model(piece, cache=cache, use_cache=True).logits
    assert_close("pieces", one_call, logits, RTOL)
    assert cache.get_seq_length() == ids.shape[1]


@pytest.mark.parametrize("variant", VARIANTS)
def test_dna_inputs_keep_the_lm_invariants(variant):
    torch.manual_seed(0)
    lm = TitansForCausalLM(TitansConfig(variant=variant, **TINY)).double().eval()
    check_pieces_equal_one_call(lm_step(lm), _dna_ids(), (5, 1, 8, 9), RTOL)
    check_decoding_equals_parallel(lm_step(lm), _dna_ids(), 6, RTOL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_gets_a_gradient(variant):
    model = _classifier(variant, num_labels=2).train()
    model(_dna_ids(), labels=torch.tensor([1, 0]), use_cache=False).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_regression_and_multi_label_losses():
    logits = torch.tensor([[0.5], [-1.0]])
    loss, kind = sequence_classification_loss(logits, torch.tensor([1.0, 0.0]), None)
    assert kind == "regression" and torch.isclose(loss, torch.tensor((0.25 + 1.0) / 2))
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss, kind = sequence_classification_loss(logits, targets, None)
    assert kind == "multi_label_classification"
    assert torch.isclose(loss, F.binary_cross_entropy_with_logits(logits, targets))


def test_bad_labels_and_settings_are_refused():
    model = _classifier("lmm", num_labels=2)
    with pytest.raises(ValueError, match="labels must be integer class ids of shape"):
        model(_dna_ids(), labels=torch.tensor([[0], [1]]), use_cache=False)
    with pytest.raises(ValueError, match="problem_type must be"):
        sequence_classification_loss(torch.zeros(2, 2), torch.tensor([0, 1]), "ranking")
    with pytest.raises(ValueError, match="classifier_pooling must be one of"):
        TitansConfig(classifier_pooling="max")
    with pytest.raises(ValueError, match="at least one token"):
        model(torch.zeros(2, 0, dtype=torch.long), use_cache=False)


def test_a_causal_lm_folder_loads_as_the_backbone(tmp_path):
    torch.manual_seed(0)
    lm = TitansForCausalLM(TitansConfig(variant="mag", **TINY))
    lm.save_pretrained(tmp_path)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert isinstance(clf, TitansForSequenceClassification) and clf.score.out_features == 2
    for name, p in lm.model.state_dict().items():
        assert torch.equal(p, clf.model.state_dict()[name]), name
