"""The few-shot models: shapes, finite bounds, a gradient in every parameter, addressing, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from titanmem.fewshot.models import MODELS, VMA, FewShotConfig, build_model

SMALL = FewShotConfig(image_size=28, hidden=32, latent=4, embedding=8, slots=2, semantic=8)
BUILT = list(MODELS)


def _episode(batch=3, size=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    memory = torch.bernoulli(torch.full((batch, size, 28, 28), 0.2), generator=g)
    query = torch.bernoulli(torch.full((batch, 28, 28), 0.2), generator=g)
    return memory, query


@pytest.mark.parametrize("name", BUILT)
def test_every_model_gives_a_finite_bound_and_a_gradient_everywhere(name):
    model = build_model(name, SMALL)
    memory, query = _episode()
    objective = model.surrogate(memory, query, samples=3)
    assert objective.shape == (3,) and torch.isfinite(objective).all()
    (-objective.mean()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # the VAE ignores the memory; every model's parameters all take part
    assert not unused, unused
    bound = model.bound(memory, query, samples=10, chunk=4)
    assert bound.shape == (3,) and torch.isfinite(bound).all() and (bound < 0).all()
    samples = model.generate(memory, 4)
    assert samples.shape == (3, 4, 28, 28) and 0 <= float(samples.min()) and float(samples.max()) <= 1


def test_the_bound_value_is_the_mean_of_importance_weights():
    # bound() draws its samples in chunks; with one chunk or several, the same seed gives the same
    # log-weights for the VAE (its only randomness is z), so the results match exactly.
    model = build_model("vae", SMALL)
    memory, query = _episode()
    torch.manual_seed(5)
    log_w, _ = model.log_weights(memory, query, 8)
    torch.manual_seed(5)
    one = model.bound(memory, query, samples=8, chunk=8)
    torch.testing.assert_close(one, torch.logsumexp(log_w, -1) - math.log(8))


def test_vma_gives_a_query_in_memory_most_posterior_mass_when_constructed_to(omniglot):
    # Constructed: the query and the entries share the key head, so the query's own entry has cosine
    # 1; a sharp scale turns that into most of the mass among 9 distractors of other characters.
    torch.manual_seed(0)
    model = VMA(FewShotConfig())
    with torch.no_grad():
        model.log_scale.fill_(math.log(100.0))
    rows = torch.stack([torch.nonzero(omniglot.character == c).flatten()[0] for c in range(0, 240, 24)])
    memory = torch.bernoulli(omniglot.images[rows], generator=torch.Generator().manual_seed(0))
    memory = torch.stack([memory, memory.roll(4, 0)])  # two episodes, the query at another place
    query = memory[:, 6]
    posterior = model.address_posterior(memory, query)
    assert posterior.shape == (2, 10)
    torch.testing.assert_close(posterior.sum(-1), torch.ones(2))
    assert (posterior.argmax(-1) == 6).all() and (posterior[:, 6] > 0.5).all()


@pytest.mark.parametrize("name", BUILT)
def test_bad_inputs_name_the_argument(name):
    model = build_model(name, SMALL)
    memory, query = _episode()
    with pytest.raises(ValueError, match="memory must be"):
        model.bound(memory[..., :27], query)
    with pytest.raises(ValueError, match="query must be"):
        model.bound(memory, torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="at least one entry"):
        model.bound(memory[:, :0], query)
    with pytest.raises(ValueError, match="same batch size"):
        model.bound(memory, query[:2])
    with pytest.raises(TypeError, match="query"):
        model.bound(memory, query.long())


def test_vma_needs_two_samples_to_train_and_unknown_models_are_refused():
    memory, query = _episode()
    with pytest.raises(ValueError, match="samples"):
        build_model("vma", SMALL).surrogate(memory, query, samples=1)
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("gan", SMALL)
    with pytest.raises(ValueError, match="latent"):
        FewShotConfig(latent=0)


@pytest.mark.parametrize("name", ["vma", "vsm", "context-vae"])
def test_samples_depend_on_the_memory_and_the_vae_ignores_it(name):
    memory, _ = _episode(batch=2)
    other = torch.roll(memory, 1, dims=-1)
    model = build_model(name, SMALL)
    torch.manual_seed(1)
    first = model.generate(memory, 3)
    torch.manual_seed(1)
    second = model.generate(other, 3)
    assert not torch.allclose(first, second)
    vae = build_model("vae", SMALL)
    torch.manual_seed(1)
    first = vae.generate(memory, 3)
    torch.manual_seed(1)
    torch.testing.assert_close(vae.generate(other, 3), first)


def test_vsm_semantic_memory_is_a_summary_of_the_set():
    # The conversion reads the episodic entries as a set: their order does not change the slots, and
    # the posterior (the query written in) differs from the prior (the memory alone).
    from titanmem.fewshot.vsm import VSM

    model = VSM(SMALL)
    memory, query = _episode(batch=2, size=4)
    content, _ = model.embed(memory.flatten(2))
    prior = model.convert(content)
    shuffled = model.convert(content[:, torch.tensor([2, 0, 3, 1])])
    for a, b in zip(prior, shuffled):
        torch.testing.assert_close(a, b)
    assert prior[0].shape == (2, SMALL.slots, SMALL.semantic) and prior[1].shape == prior[0].shape
    query_content, _ = model.embed(query.flatten(1))
    posterior = model.convert(torch.cat([content, query_content.unsqueeze(1)], 1))
    assert not torch.allclose(posterior[0], prior[0])
