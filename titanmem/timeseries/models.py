"""Long-term forecasting with the neural memory as the sequence mixer (Titans §5.6, Table 3).

The paper takes Simba (Patro & Agneeswaran, 2024), a patching forecaster whose blocks pair a
sequence mixer (Mamba) with a channel mixer, and puts its neural memory in Mamba's place. Here:

    x [B, L, C] -> instance normalisation per series (RevIN) -> each channel cut into patches
    (channel independence: every series is its own sequence of P patch tokens) -> linear patch
    embedding + learned position embedding -> n blocks of
        x = x + mixer(norm(x))        # sequence mixing over patches: NeuralMemory or attention
        x = x + channel_mlp(norm(x))  # channel mixing over the model width (SwiGLU)
    -> final norm -> flatten -> linear head to the horizon -> undo the normalisation -> [B, H, C].

Both mixers are causal over the patch tokens (memory by construction, attention with a causal
mask), so swapping one for the other changes nothing else. The head reads every token, so the
forecast as a whole sees the whole lookback; :meth:`PatchForecaster.encode` is the causal part.

:class:`DLinear` (Zeng et al., 2023) is the linear baseline that anchors the protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..layers import Attention, NeuralMemory
from ..checks import check_int, check_tensor
from ..modules.mlp import SwiGLU
from ..modules.norm import RMSNorm

__all__ = ["DLinear", "ForecasterConfig", "PatchForecaster", "RepeatLast", "build_forecaster"]

MIXERS = ("memory", "attention")


@dataclass(frozen=True)
class ForecasterConfig:
    """Every hyperparameter of :class:`PatchForecaster` (one source of truth; saved with results).

    ``patch_len``/``stride`` cut the lookback into ``(lookback - patch_len) // stride + 2`` patches
    (the last patch padded by repeating the last value, as PatchTST does).
    """

    lookback: int = 96
    horizon: int = 96
    channels: int = 7
    mixer: str = "memory"
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 2
    patch_len: int = 16
    stride: int = 8
    dropout: float = 0.1
    head_dropout: float = 0.0
    chunk_size: int = 4
    memory_depth: int = 2
    memory_expansion: int = 2
    max_lr: float = 0.01
    read: str = "token"

    def __post_init__(self) -> None:
        for name in ("lookback", "horizon", "channels", "d_model", "n_layers", "n_heads", "mlp_ratio",
                     "patch_len", "stride", "chunk_size", "memory_depth", "memory_expansion"):
            check_int(name, getattr(self, name), 1)
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {self.mixer!r}")
        if self.patch_len > self.lookback:
            raise ValueError(f"patch_len must be <= lookback ({self.lookback}), got {self.patch_len}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("dropout", "head_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")

    @property
    def n_patches(self) -> int:
        return (self.lookback - self.patch_len) // self.stride + 2

    def to_dict(self) -> dict:
        return asdict(self)


class _RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al., 2022): per series and channel, with a learned affine map."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        return (x - mean) / std * self.weight + self.bias, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = stats
        return (y - self.bias) / (self.weight + self.eps * self.eps) * std + mean


class _Block(nn.Module):
    def __init__(self, cfg: ForecasterConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        if cfg.mixer == "memory":
            self.mixer = NeuralMemory(cfg.d_model, cfg.n_heads, memory_depth=cfg.memory_depth,
                                      memory_expansion=cfg.memory_expansion, chunk_size=cfg.chunk_size,
                                      max_lr=cfg.max_lr, read=cfg.read)
        else:
            self.mixer = Attention(cfg.d_model, cfg.n_heads)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.mixer(self.norm1(x))[0])
        return x + self.drop(self.mlp(self.norm2(x)))


class PatchForecaster(nn.Module):
    """``forward(x [B, lookback, C]) -> [B, horizon, C]`` with memory or attention blocks (module docstring)."""

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        self.revin = _RevIN(config.channels)
        self.embed = nn.Linear(config.patch_len, config.d_model)
        self.position = nn.Parameter(torch.randn(config.n_patches, config.d_model) * 0.02)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model)
        self.head_drop = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(config.n_patches * config.d_model, config.horizon)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, L, C]`` (normalised) -> patches ``[B * C, P, patch_len]``, one sequence per series."""
        cfg = self.config
        series = rearrange(x, "b l c -> (b c) l")
        series = torch.cat((series, series[:, -1:].expand(-1, cfg.stride)), dim=1)
        return series.unfold(-1, cfg.patch_len, cfg.stride)

    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        """``patches [N, P, patch_len] -> tokens [N, P, d_model]``; token p depends only on patches <= p."""
        x = self.drop(self.embed(patches) + self.position)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        check_tensor("x", x, 3, cfg.channels)
        if x.shape[1] != cfg.lookback:
            raise ValueError(f"x must have {cfg.lookback} time steps (lookback), got {x.shape[1]}")
        z, stats = self.revin.normalize(x)
        tokens = self.encode(self.patches(z))
        y = self.head(self.head_drop(tokens.flatten(1)))
        y = rearrange(y, "(b c) h -> b h c", c=cfg.channels)
        return self.revin.denormalize(y, stats)


class DLinear(nn.Module):
    """DLinear: moving-average trend + remainder, one linear map each from lookback to horizon, shared by channels."""

    def __init__(self, lookback: int, horizon: int, kernel: int = 25) -> None:
        super().__init__()
        self.lookback, self.horizon = check_int("lookback", lookback, 1), check_int("horizon", horizon, 1)
        self.kernel = check_int("kernel", kernel, 1)
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (a centred moving average), got {kernel}")
        self.trend = nn.Linear(lookback, horizon)
        self.seasonal = nn.Linear(lookback, horizon)
        with torch.no_grad():  # start as the mean of the window, as the reference does
            self.trend.weight.fill_(1.0 / lookback)
            self.seasonal.weight.fill_(1.0 / lookback)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, L, C] -> [B, H, C]``."""
        check_tensor("x", x, 3)
        if x.shape[1] != self.lookback:
            raise ValueError(f"x must have {self.lookback} time steps (lookback), got {x.shape[1]}")
        pad = (self.kernel - 1) // 2
        # The series' ends are repeated so the average keeps the length.
        padded = torch.cat((x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)), dim=1)
        trend = F.avg_pool1d(rearrange(padded, "b l c -> b c l"), self.kernel, stride=1)
        seasonal = rearrange(x, "b l c -> b c l") - trend
        return rearrange(self.trend(trend) + self.seasonal(seasonal), "b c h -> b h c")


class RepeatLast(nn.Module):
    """The naive forecast: every future step equals the last observed value (no parameters)."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = check_int("horizon", horizon, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, L, C] -> [B, H, C]``."""
        check_tensor("x", x, 3)
        return x[:, -1:].expand(-1, self.horizon, -1)


def build_forecaster(model: str, config: ForecasterConfig) -> nn.Module:
    """``"memory"`` / ``"attention"`` -> :class:`PatchForecaster`; ``"dlinear"`` -> :class:`DLinear`; ``"last"``."""
    if model in MIXERS:
        return PatchForecaster(config if config.mixer == model else ForecasterConfig(**{**config.to_dict(),
                                                                                         "mixer": model}))
    if model == "dlinear":
        return DLinear(config.lookback, config.horizon)
    if model == "last":
        return RepeatLast(config.horizon)
    raise ValueError(f"model must be one of {(*MIXERS, 'dlinear', 'last')}, got {model!r}")
