"""An episodic-semantic memory for few-shot generation, after VSM (Duan et al., NeurIPS 2023). Not the paper's model.

What the paper states (its abstract; the full text was not available, docs/fewshot.md): a variational
structured memory stores *episodic* and *semantic* memories at once, so that a generative model can
recall both while sampling; a "bionic" updating strategy converts episodic into semantic memory and
models the uncertainty of that conversion; the memory is combined with a generative model in a
Bayesian framework and evaluated on few-shot generation. Everything below beyond those statements
is our choice, named here and in docs/fewshot.md:

1. **Episodic memory** = the memory's examples, each encoded as VMA encodes them (a content embedding
   ``e_i`` and a key ``k_i``), and read as VMA reads them: a discrete address ``a`` with a uniform
   prior and ``q(a | M, x) = softmax_i s * cos(k(x), k(m_i))``. Choice: VMA's addressing, because it
   is the one stochastic episodic read the paper's neighbours document.
2. **Semantic memory** = ``S`` summary slots ``s_1..s_S`` of width ``D``. Choice: a fixed number of
   slots (``config.slots``), each pooling the episodic entries by attention from a learned slot query
   (so a memory of several characters can keep several summaries).
3. **Stochastic conversion** episodic -> semantic: each slot is Gaussian,
   ``s_j ~ N(mu(r_j, n_j), sigma(r_j, n_j))``, where ``r_j`` is the slot's attention-weighted mean of
   the ``e_i`` and ``n_j = 1 / sum_i alpha_ji^2`` the effective number of entries it pooled. Choice:
   giving ``log n_j`` to the network is how the conversion's uncertainty can shrink as evidence grows.
4. **Bayesian framework and updating**: the conversion of the memory alone is the prior
   ``p(s | M)``; the conversion after the query is written into episodic memory is the posterior
   ``q(s | M, x)`` (the update a new example causes). Choice: this makes ``s`` a latent variable of
   ``log p(x | M)`` with a tractable Gaussian prior and posterior.
5. **Generation** recalls both memories: ``a ~ p(a | M)``, ``s ~ p(s | M)``, a semantic read
   ``rho = sum_j softmax_j(W e_a . s_j / sqrt(D)) s_j``, ``z ~ p(z | e_a, rho)``,
   ``x ~ Bernoulli(dec(z, e_a, rho))``; inference uses ``q(z | x, e_a, rho)``. Choice: the read keyed
   by the addressed example, so the summary that fits it is recalled.
6. **Objective**: the K-sample importance-weighted bound over ``(a, s, z)``, VIMCO for ``a`` and
   reparameterisation for ``s`` and ``z``; same networks, optimiser and budget as the other models.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .bounds import gaussian_log_density
from .models import VMA, ConditionalVAE, FewShotConfig, _gaussian, check_episode, mlp

__all__ = ["VSM", "SemanticConversion"]


class SemanticConversion(nn.Module):
    """Episodic entries ``[B, N, E]`` -> Gaussian semantic slots: mean and log std ``[B, S, D]`` (choices 2-3)."""

    def __init__(self, config: FewShotConfig) -> None:
        super().__init__()
        e = config.embedding
        self.slot_queries = nn.Parameter(torch.randn(config.slots, e) / math.sqrt(e))
        self.keys = nn.Linear(e, e)
        self.stats = mlp(e + 1, config.hidden, 2 * config.semantic)

    def forward(self, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.einsum("se,bne->bsn", self.slot_queries, self.keys(content)) / math.sqrt(content.shape[-1])
        alpha = torch.softmax(scores, dim=-1)
        pooled = torch.einsum("bsn,bne->bse", alpha, content)
        log_count = -torch.log((alpha * alpha).sum(-1, keepdim=True))  # log of the effective number pooled
        return _gaussian(self.stats(torch.cat([pooled, log_count], dim=-1)))


class VSM(VMA):
    """Episodic addressing as VMA plus a stochastic semantic memory (see the module docstring for every choice)."""

    discrete = True

    def __init__(self, config: FewShotConfig) -> None:
        super().__init__(config)  # VMA's embedding, keys and address scale: the episodic memory (choice 1)
        self.convert = SemanticConversion(config)
        self.read_key = nn.Linear(config.embedding, config.semantic)
        self.vae = ConditionalVAE(config, config.embedding + config.semantic)

    def read(self, e_a: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Semantic read ``rho [B, K, D]`` for addressed embeddings ``e_a [B, K, E]`` and slots ``[B, K, S, D]``."""
        scores = torch.einsum("bkd,bksd->bks", self.read_key(e_a), slots) / math.sqrt(slots.shape[-1])
        return torch.einsum("bks,bksd->bkd", torch.softmax(scores, dim=-1), slots)

    def log_weights(self, memory, query, samples):
        check_episode(memory, query, self.config.image_size)
        b, m = memory.shape[:2]
        content, memory_keys = self.embed(memory.flatten(2))
        query_content, query_key = self.embed(query.flatten(1))
        log_q_all = torch.log_softmax(self.address_logits(query_key, memory_keys), dim=-1)
        a = torch.multinomial(log_q_all.detach().exp(), samples, replacement=True)
        log_q_a = log_q_all.gather(1, a)
        e_a = content.gather(1, a.unsqueeze(-1).expand(-1, -1, content.shape[-1]))
        prior_mean, prior_log_std = self.convert(content)
        post_mean, post_log_std = self.convert(torch.cat([content, query_content.unsqueeze(1)], dim=1))
        shape = (b, samples) + tuple(post_mean.shape[1:])
        slots = (post_mean.unsqueeze(1) + torch.exp(post_log_std).unsqueeze(1)
                 * torch.randn(shape, dtype=post_mean.dtype, device=post_mean.device))  # [B, K, S, D]
        log_p_s = gaussian_log_density(slots, prior_mean.unsqueeze(1), prior_log_std.unsqueeze(1)).sum(-1)
        log_q_s = gaussian_log_density(slots, post_mean.unsqueeze(1), post_log_std.unsqueeze(1)).sum(-1)
        condition = torch.cat([e_a, self.read(e_a, slots)], dim=-1)
        log_w = -math.log(m) - log_q_a + log_p_s - log_q_s + self.vae.log_weights(query.flatten(1), condition)
        return log_w, log_q_a

    @torch.no_grad()
    def generate(self, memory, count):
        check_episode(memory, None, self.config.image_size)
        b, m = memory.shape[:2]
        s = self.config.image_size
        content, _ = self.embed(memory.flatten(2))
        a = torch.randint(0, m, (b, count), device=memory.device)
        e_a = content.gather(1, a.unsqueeze(-1).expand(-1, -1, content.shape[-1]))
        mean, log_std = self.convert(content)
        slots = mean.unsqueeze(1) + torch.exp(log_std).unsqueeze(1) * torch.randn(
            (b, count) + tuple(mean.shape[1:]), dtype=mean.dtype, device=mean.device)
        condition = torch.cat([e_a, self.read(e_a, slots)], dim=-1)
        return self.vae.generate(condition).view(b, count, s, s)
