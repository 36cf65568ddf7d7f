"""Generative few-shot models of a query image given a memory of images: VMA and two VAE baselines.

All models score a binary query ``x`` (``[B, S, S]``) given a memory ``M`` (``[B, M, S, S]``) with the
K-sample importance-weighted bound on ``log p(x | M)`` (:mod:`titanmem.fewshot.bounds`) and can draw
new images from a memory. They share one interface, :class:`FewShotModel`, and the same networks (MLPs
of one width), so that they differ only in how the memory enters:

- :class:`VAE`: no memory: ``p(z) = N(0, I)``, ``p(x | z)``, ``q(z | x)``.
- :class:`ContextVAE`: the mean embedding of the memory entries ``c = mean_i e(m_i)`` conditions the
  prior ``p(z | c)``, the decoder ``p(x | z, c)`` and the posterior ``q(z | x, c)`` (the context of the
  Neural Statistician, Edwards & Storkey 2017, here a deterministic mean).
- :class:`VMA`: Variational Memory Addressing (Bornschein, Mnih, Zoran & Rezende, NeurIPS 2017):

      a ~ p(a | M) = 1/|M|                    a discrete address, uniform (the paper's setup)
      z ~ p(z | m_a) = N(mu(e_a), sigma(e_a))  e_a = e(m_a), the learned embedding of entry a
      x ~ p(x | z, m_a) = Bernoulli(dec(z, e_a))
      q(a | M, x) = softmax_i s * cos(k(x), k(m_i))     learned keys k, learned scale s
      q(z | x, m_a) = N(mu(x, e_a), sigma(x, e_a))

  trained on the K-sample bound with VIMCO for ``a`` and reparameterisation for ``z``.

Choices the sources leave open, and ours (docs/fewshot.md):

- Networks: MLPs (two hidden layers of ``hidden`` units, SiLU) rather than the paper's convolutional
  encoder and decoder, because training runs on a CPU; every model gets the same ones.
- One image trunk gives both the key ``k`` (for addressing) and the content embedding ``e`` (what the
  generative model is conditioned on), by two linear heads. The query and the entries use the same
  key head, so a query that is itself in memory has cosine 1 with its own entry.
- Similarity: cosine times a learned scale (initial 10), which keeps the logits bounded.
- No learned "dummy" entries (the re-implementation has two; whether the paper does is unconfirmed).
- Standard deviations are ``exp`` of a log clamped to [-6, 3], so no density becomes infinite.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int
from .bounds import bernoulli_log_likelihood, gaussian_log_density, iw_bound, vimco_surrogate

__all__ = ["MODELS", "VAE", "VMA", "ContextVAE", "FewShotConfig", "FewShotModel", "build_model", "check_episode"]

MODELS = ("vma", "vsm", "vae", "context-vae")
_LOG_STD_RANGE = (-6.0, 3.0)


@dataclass(frozen=True)
class FewShotConfig:
    """Sizes of a few-shot model; one config for every model (fields a model does not use are ignored).

    Attributes:
        image_size: side S of the square images.
        hidden: width of every hidden layer.
        latent: dimension of z.
        embedding: dimension of the memory embedding e (and of the addressing key).
        slots: VSM's semantic memory slots.
        semantic: VSM's width of a semantic summary.
    """

    image_size: int = 28
    hidden: int = 256
    latent: int = 32
    embedding: int = 64
    slots: int = 4
    semantic: int = 32

    def __post_init__(self) -> None:
        for name in ("image_size", "hidden", "latent", "embedding", "slots", "semantic"):
            check_int(name, getattr(self, name), 1)

    @property
    def pixels(self) -> int:
        return self.image_size * self.image_size

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Two hidden layers of ``hidden`` units with SiLU, then a linear output."""
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, outputs))


def _gaussian(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, log_std = params.chunk(2, dim=-1)
    return mean, log_std.clamp(*_LOG_STD_RANGE)


def check_episode(memory: torch.Tensor, query: torch.Tensor | None, image_size: int) -> None:
    """Raise ``ValueError``/``TypeError`` naming the argument unless ``memory`` is ``[B, M, S, S]`` with M >= 1
    and ``query`` (if given) ``[B, S, S]``, floating point, ``S == image_size``."""
    for name, value, dim in (("memory", memory, 4), ("query", query, 3)):
        if value is None:
            continue
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {type(value).__name__}"
                            + (f" of dtype {value.dtype}" if isinstance(value, torch.Tensor) else ""))
        if value.dim() != dim or tuple(value.shape[-2:]) != (image_size, image_size):
            want = "[B, M, S, S]" if dim == 4 else "[B, S, S]"
            raise ValueError(f"{name} must be {want} with S = image_size = {image_size}, got shape {tuple(value.shape)}")
    if memory.shape[1] < 1:
        raise ValueError(f"memory must hold at least one entry, got shape {tuple(memory.shape)}")
    if query is not None and query.shape[0] != memory.shape[0]:
        raise ValueError(f"query and memory must have the same batch size, got {query.shape[0]} and {memory.shape[0]}")


class ConditionalVAE(nn.Module):
    """``q(z | x, c)``, ``p(z | c)`` and ``p(x | z, c)`` for a condition ``c`` of ``condition`` features.

    With ``condition = 0`` the prior is the standard normal and the model is a plain VAE.
    """

    def __init__(self, config: FewShotConfig, condition: int) -> None:
        super().__init__()
        self.condition = condition
        self.encoder = mlp(config.pixels + condition, config.hidden, 2 * config.latent)
        self.prior_net = mlp(condition, config.hidden, 2 * config.latent) if condition else None
        self.decoder = mlp(config.latent + condition, config.hidden, config.pixels)
        self.latent = config.latent

    def prior(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log std of ``p(z | c)``, ``[..., latent]`` for ``c [..., condition]``."""
        if self.prior_net is None:
            zeros = c.new_zeros(*c.shape[:-1], self.latent)
            return zeros, zeros
        return _gaussian(self.prior_net(c))

    def posterior(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log std of ``q(z | x, c)`` for flat ``x [..., pixels]``, ``c [..., condition]``."""
        return _gaussian(self.encoder(torch.cat([x, c], dim=-1)))

    def logits(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of ``p(x | z, c)``, ``[..., pixels]``."""
        return self.decoder(torch.cat([z, c], dim=-1))

    def log_weights(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``log p(z_k | c_k) + log p(x | z_k, c_k) - log q(z_k | x, c_k)`` with ``z_k ~ q`` reparameterised.

        ``x [N, pixels]``, ``c [N, K, condition]`` (one condition per sample); returns ``[N, K]``.
        """
        xk = x.unsqueeze(1).expand(-1, c.shape[1], -1)
        q_mean, q_log_std = self.posterior(xk, c)
        z = q_mean + torch.exp(q_log_std) * torch.randn_like(q_mean)
        p_mean, p_log_std = self.prior(c)
        return (gaussian_log_density(z, p_mean, p_log_std) + bernoulli_log_likelihood(xk, self.logits(z, c))
                - gaussian_log_density(z, q_mean, q_log_std))

    def generate(self, c: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities of one sample ``z ~ p(z | c)``, ``x ~ p(x | z, c)`` per row of ``c [..., condition]``."""
        mean, log_std = self.prior(c)
        z = mean + torch.exp(log_std) * torch.randn_like(mean)
        return torch.sigmoid(self.logits(z, c))


class MemoryEmbedding(nn.Module):
    """One image trunk with two heads: the content embedding ``e`` and (with ``keys``) the addressing key ``k``."""

    def __init__(self, config: FewShotConfig, keys: bool = True) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(config.pixels, config.hidden), nn.SiLU(),
                                   nn.Linear(config.hidden, config.hidden), nn.SiLU())
        self.content = nn.Linear(config.hidden, config.embedding)
        self.key = nn.Linear(config.hidden, config.embedding) if keys else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(e, k)``, each ``[..., embedding]`` (``k`` None without ``keys``), for flat ``images [..., pixels]``."""
        h = self.trunk(images)
        return self.content(h), (self.key(h) if self.key is not None else None)


class FewShotModel(nn.Module):
    """What every few-shot model offers. ``discrete`` models train with VIMCO and need ``samples >= 2``."""

    discrete = False

    def __init__(self, config: FewShotConfig) -> None:
        super().__init__()
        self.config = config

    def log_weights(self, memory: torch.Tensor, query: torch.Tensor, samples: int
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(log_w [B, K], log_q [B, K] or None)``: log importance weights of ``log p(query | memory)`` and,
        for a discrete latent, ``log q`` of its K samples (VIMCO's score function)."""
        raise NotImplementedError

    def generate(self, memory: torch.Tensor, count: int) -> torch.Tensor:
        """Pixel probabilities ``[B, count, S, S]`` of new images drawn given each memory ``[B, M, S, S]``."""
        raise NotImplementedError

    def surrogate(self, memory: torch.Tensor, query: torch.Tensor, samples: int) -> torch.Tensor:
        """Per-episode training objective ``[B]``: its value is the K-sample bound, its gradient the estimator
        (VIMCO for a discrete latent, the bound's own gradient otherwise).

        Raises:
            ValueError: a discrete model with ``samples < 2``, or badly shaped inputs.
        """
        check_int("samples", samples, 2 if self.discrete else 1)
        log_w, log_q = self.log_weights(memory, query, samples)
        return iw_bound(log_w) if log_q is None else vimco_surrogate(log_w, log_q)

    @torch.no_grad()
    def bound(self, memory: torch.Tensor, query: torch.Tensor, samples: int = 1000, chunk: int = 100) -> torch.Tensor:
        """The ``samples``-sample importance-weighted bound on ``log p(query | memory)``, ``[B]`` nats, drawn
        ``chunk`` samples at a time (the same bound as one draw of all of them)."""
        check_int("samples", samples, 1)
        check_int("chunk", chunk, 1)
        parts = []
        for start in range(0, samples, chunk):
            parts.append(self.log_weights(memory, query, min(chunk, samples - start))[0])
        return iw_bound(torch.cat(parts, dim=-1))


class VAE(FewShotModel):
    """A VAE that ignores the memory: ``log p(x | M) = log p(x)``."""

    def __init__(self, config: FewShotConfig) -> None:
        super().__init__(config)
        self.vae = ConditionalVAE(config, 0)

    def log_weights(self, memory, query, samples):
        check_episode(memory, query, self.config.image_size)
        x = query.flatten(1)
        return self.vae.log_weights(x, x.new_zeros(x.shape[0], samples, 0)), None

    @torch.no_grad()
    def generate(self, memory, count):
        check_episode(memory, None, self.config.image_size)
        s = self.config.image_size
        return self.vae.generate(memory.new_zeros(memory.shape[0], count, 0)).view(memory.shape[0], count, s, s)


class ContextVAE(FewShotModel):
    """A VAE conditioned on the mean content embedding of the memory entries (a deterministic context)."""

    def __init__(self, config: FewShotConfig) -> None:
        super().__init__(config)
        self.embed = MemoryEmbedding(config, keys=False)
        self.vae = ConditionalVAE(config, config.embedding)

    def context(self, memory: torch.Tensor) -> torch.Tensor:
        """``c = mean_i e(m_i)``, ``[B, embedding]``."""
        return self.embed(memory.flatten(2))[0].mean(1)

    def log_weights(self, memory, query, samples):
        check_episode(memory, query, self.config.image_size)
        c = self.context(memory).unsqueeze(1).expand(-1, samples, -1)
        return self.vae.log_weights(query.flatten(1), c), None

    @torch.no_grad()
    def generate(self, memory, count):
        check_episode(memory, None, self.config.image_size)
        s = self.config.image_size
        c = self.context(memory).unsqueeze(1).expand(-1, count, -1)
        return self.vae.generate(c).view(memory.shape[0], count, s, s)


class VMA(FewShotModel):
    """Variational Memory Addressing (Bornschein et al., 2017): a conditional VAE on a memory entry chosen by a
    discrete address, with ``q(a | M, x)`` from key similarity (see the module docstring for the model)."""

    discrete = True

    def __init__(self, config: FewShotConfig) -> None:
        super().__init__(config)
        self.embed = MemoryEmbedding(config)
        self.vae = ConditionalVAE(config, config.embedding)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def address_logits(self, query_key: torch.Tensor, memory_keys: torch.Tensor) -> torch.Tensor:
        """``s * cos(k(x), k(m_i))``, ``[B, M]`` from ``[B, E]`` and ``[B, M, E]``."""
        cos = torch.einsum("be,bme->bm", F.normalize(query_key, dim=-1), F.normalize(memory_keys, dim=-1))
        return torch.exp(self.log_scale) * cos

    def address_posterior(self, memory: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``q(a | M, x)``, ``[B, M]`` probabilities."""
        check_episode(memory, query, self.config.image_size)
        _, memory_keys = self.embed(memory.flatten(2))
        _, query_key = self.embed(query.flatten(1))
        return torch.softmax(self.address_logits(query_key, memory_keys), dim=-1)

    def log_weights(self, memory, query, samples):
        check_episode(memory, query, self.config.image_size)
        b, m = memory.shape[:2]
        content, memory_keys = self.embed(memory.flatten(2))
        _, query_key = self.embed(query.flatten(1))
        log_q_all = torch.log_softmax(self.address_logits(query_key, memory_keys), dim=-1)
        a = torch.multinomial(log_q_all.detach().exp(), samples, replacement=True)  # [B, K]
        log_q = log_q_all.gather(1, a)
        e_a = content.gather(1, a.unsqueeze(-1).expand(-1, -1, content.shape[-1]))  # [B, K, E]
        log_prior_a = -math.log(m)
        return log_prior_a - log_q + self.vae.log_weights(query.flatten(1), e_a), log_q

    @torch.no_grad()
    def generate(self, memory, count):
        check_episode(memory, None, self.config.image_size)
        b, m = memory.shape[:2]
        s = self.config.image_size
        content, _ = self.embed(memory.flatten(2))
        a = torch.randint(0, m, (b, count), device=memory.device)  # the uniform prior p(a | M)
        e_a = content.gather(1, a.unsqueeze(-1).expand(-1, -1, content.shape[-1]))
        return self.vae.generate(e_a).view(b, count, s, s)


def build_model(name: str, config: FewShotConfig) -> FewShotModel:
    """The model ``name`` (one of :data:`MODELS`) with ``config``.

    Raises:
        ValueError: an unknown ``name``.
    """
    if name == "vma":
        return VMA(config)
    if name == "vae":
        return VAE(config)
    if name == "context-vae":
        return ContextVAE(config)
    if name == "vsm":
        from .vsm import VSM  # beside this module; imported here so that models.py does not depend on it
        return VSM(config)
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")
