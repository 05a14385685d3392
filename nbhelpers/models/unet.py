"""The image UNet: seed 000's Figure 1 by default, configurable for the later image notebooks.

Figure 1 (the default :class:`UNetConfig`)::

    x_t ─ initial conv ─ encoder ─ encoder ─ encoder ─ bottleneck ─ decoder ─ decoder ─ decoder ─ final conv ─ u_θ(x_t)
                            │          │         └──────── skip ──────────┘        │         │
                            │          └────────────────── skip ───────────────────┘         │
                            └───────────────────────────── skip ─────────────────────────────┘

* encoder  = 2 residual layers, then down-sampling (3×3 conv, stride 2);
* bottleneck = 3 residual layers;
* decoder  = up-sampling (nearest to the matching encoder's size, then 3×3 conv), the encoder's
  skip added, then 2 residual layers;
* residual layer: ``h = Conv(BN(SiLU(x))) + MLP(emb(t))``, ``out = x + Conv(BN(SiLU(h)))``.

Up-sampling goes to the stored size of the matching skip, so odd sizes work: a 28×28 MNIST
image runs 28 → 14 → 7 → 4 and back 4 → 7 → 14 → 28 without padding. Channels at level ℓ are
``base_channels * channel_mults[ℓ]``; the bottleneck keeps the last level's channels.

Options used by later notebooks: GroupNorm instead of BatchNorm, self-attention at chosen
levels, class conditioning with a null class (``num_classes`` real classes, label
``num_classes`` = "no label", the default when ``y=None``), dropout, a sinusoidal or Gaussian
Fourier time embedding, and a per-block MLP of the embedding (Figure 1) or one shared MLP.

Time: the network takes a float ``t`` of shape ``(B,)`` (or a scalar) and is agnostic of the
direction; the flow notebooks use t = 0 noise, t = 1 data and DDPM passes ``t = k / T``.
Shapes: ``x (B, C, H, W)``, ``t (B,)``, ``y (B,)`` int64 → ``(B, out_channels, H, W)``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_labels
from ..devices import eval_chunk
from .embeddings import TIME_EMBEDDINGS as _EMBEDDINGS

__all__ = ["UNetConfig", "UNet", "ResidualLayer", "SelfAttention", "UNetDescription", "NORMS", "TIME_EMBEDDINGS", "TIME_MLPS"]

NORMS = ("batch", "group")
TIME_EMBEDDINGS = tuple(k for k in _EMBEDDINGS if k != "none")  # a UNet always embeds t
TIME_MLPS = ("per_block", "shared")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`. The defaults are Figure 1 of seed 000.

    ``channel_mults`` sets the number of levels (encoders = decoders = ``len(channel_mults)``);
    ``attention_levels`` lists levels that get self-attention after each residual layer
    (level ℓ works at resolution H / 2^ℓ; level ``len(channel_mults)`` is the bottleneck).
    """

    in_channels: int = 1
    out_channels: int | None = None
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    res_layers: int = 2
    bottleneck_layers: int = 3
    norm: str = "batch"
    norm_groups: int = 8
    attention_levels: tuple[int, ...] = ()
    attention_heads: int = 4
    num_classes: int | None = None
    dropout: float = 0.0
    time_embedding: str = "sinusoidal"
    time_embed_dim: int = 64
    time_mlp: str = "per_block"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        object.__setattr__(self, "attention_levels", tuple(sorted({int(a) for a in self.attention_levels})))
        positive = {"in_channels": self.in_channels, "base_channels": self.base_channels, "res_layers": self.res_layers,
                    "time_embed_dim": self.time_embed_dim, "attention_heads": self.attention_heads, "norm_groups": self.norm_groups}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.out_channels is not None and (not isinstance(self.out_channels, int) or self.out_channels < 1):
            raise ValueError(f"out_channels must be a positive integer or None, got {self.out_channels!r}")
        if not isinstance(self.bottleneck_layers, int) or self.bottleneck_layers < 0:
            raise ValueError(f"bottleneck_layers must be a non-negative integer, got {self.bottleneck_layers!r}")
        if not self.channel_mults or any(m < 1 for m in self.channel_mults):
            raise ValueError(f"channel_mults must be a non-empty tuple of positive integers, got {self.channel_mults!r}")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; valid choices: {', '.join(NORMS)}")
        if self.time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"unknown time_embedding {self.time_embedding!r}; valid choices: {', '.join(TIME_EMBEDDINGS)}")
        if self.time_mlp not in TIME_MLPS:
            raise ValueError(f"unknown time_mlp {self.time_mlp!r}; valid choices: {', '.join(TIME_MLPS)}")
        if self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim must be even (sine and cosine halves), got {self.time_embed_dim}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer or None, got {self.num_classes!r}")
        bad = [a for a in self.attention_levels if not 0 <= a <= self.levels]
        if bad:
            raise ValueError(f"attention_levels {bad} out of range; valid levels: 0..{self.levels} ({self.levels} = bottleneck)")
        for c in self.channels:
            if self.norm == "group" and c % self.norm_groups:
                raise ValueError(f"norm_groups={self.norm_groups} does not divide {c} channels; choose a divisor of {list(self.channels)}")
        for lvl in self.attention_levels:
            c = self.channels[min(lvl, self.levels - 1)]
            if c % self.attention_heads:
                raise ValueError(f"attention_heads={self.attention_heads} does not divide {c} channels at level {lvl}")

    @property
    def levels(self) -> int:
        return len(self.channel_mults)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels per level (the bottleneck uses the last)."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def output_channels(self) -> int:
        return self.out_channels if self.out_channels is not None else self.in_channels

    def key(self) -> dict[str, Any]:
        """JSON-friendly description for checkpoint keys."""
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attention_levels"] = list(self.attention_levels)
        return d


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(groups, channels)


def _time_embedding(kind: str, dim: int) -> nn.Module:
    """``nb.models.embeddings``: sinusoidal of 1000·t (DDPM's integer-step embedding at t = k/T) or Gaussian Fourier."""
    from .embeddings import get_time_embedding

    return get_time_embedding(kind, dim)


class ResidualLayer(nn.Module):
    """Figure 1's residual layer: ``x + Conv(N(SiLU(Conv(N(SiLU(x))) + MLP(emb)))``.

    ``N`` is BatchNorm (default) or GroupNorm. ``time_mlp`` maps the (time [+ class]) embedding
    to one value per channel, added after the first convolution.
    """

    def __init__(self, channels: int, emb_dim: int, norm: str = "batch", groups: int = 8, dropout: float = 0.0,
                 time_mlp: str = "per_block") -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.SiLU(), _norm(norm, channels, groups), nn.Conv2d(channels, channels, 3, padding=1))
        self.block2 = nn.Sequential(nn.SiLU(), _norm(norm, channels, groups), nn.Dropout(dropout) if dropout else nn.Identity(),
                                    nn.Conv2d(channels, channels, 3, padding=1))
        if time_mlp == "per_block":
            self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, channels))
        else:
            self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, channels))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.time_mlp(emb)[:, :, None, None]
        return x + self.block2(h)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions, residual: ``x + proj(attn(N(x)))``."""

    def __init__(self, channels: int, heads: int = 4, norm: str = "batch", groups: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.norm = _norm(norm, channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # one copy into (3, B, heads, HW, d): contiguous q, k, v let SDPA take its fused kernel (on the CPU
        # strided inputs fall back to the unfused math path, ~2× slower forward and backward)
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).permute(1, 0, 2, 4, 3).contiguous()
        q, k, v = qkv.unbind(0)  # each (B, heads, HW, d)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class _Stage(nn.Module):
    """Residual layers (each optionally followed by attention) sharing one embedding."""

    def __init__(self, n: int, channels: int, cfg: UNetConfig, emb_dim: int, attention: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ResidualLayer(channels, emb_dim, cfg.norm, cfg.norm_groups, cfg.dropout, cfg.time_mlp) for _ in range(n)
        )
        self.attention = nn.ModuleList(
            SelfAttention(channels, cfg.attention_heads, cfg.norm, cfg.norm_groups) if attention else nn.Identity() for _ in range(n)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer, attn in zip(self.layers, self.attention):
            x = attn(layer(x, emb))
        return x


class Encoder(nn.Module):
    """Residual layers at ``c_in``, then a stride-2 3×3 conv to ``c_out``. Returns (down, skip)."""

    def __init__(self, c_in: int, c_out: int, cfg: UNetConfig, emb_dim: int, attention: bool) -> None:
        super().__init__()
        self.stage = _Stage(cfg.res_layers, c_in, cfg, emb_dim, attention)
        self.down = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.stage(x, emb)
        return self.down(skip), skip


class Decoder(nn.Module):
    """Nearest up-sampling to the skip's size + 3×3 conv ``c_in → c_out``, add the skip, residual layers."""

    def __init__(self, c_in: int, c_out: int, cfg: UNetConfig, emb_dim: int, attention: bool) -> None:
        super().__init__()
        self.up = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.stage = _Stage(cfg.res_layers, c_out, cfg, emb_dim, attention)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.up(F.interpolate(x, size=skip.shape[-2:], mode="nearest"))
        return self.stage(x + skip, emb)


@dataclass
class UNetDescription:
    """Block counts read off a built :class:`UNet` (not off its config)."""

    initial_convs: int
    encoders: int
    res_layers_per_encoder: list[int]
    downsamples: int
    bottleneck_res_layers: int
    decoders: int
    res_layers_per_decoder: list[int]
    upsamples: int
    skip_connections: int
    final_convs: int
    attention_blocks: int
    norm: str
    channels: list[int]
    parameters: int
    class_conditional: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"UNet: initial conv → {self.encoders} encoders {self.res_layers_per_encoder} res layers + downsample → "
                f"bottleneck {self.bottleneck_res_layers} res layers → {self.decoders} decoders upsample + "
                f"{self.res_layers_per_decoder} res layers ({self.skip_connections} skips) → final conv; "
                f"{self.norm} norm, channels {self.channels}, {self.attention_blocks} attention blocks, "
                f"{'class-conditional, ' if self.class_conditional else ''}{self.parameters / 1e6:.2f} M parameters")


class UNet(nn.Module):
    """Figure 1's UNet (default config) with the options of :class:`UNetConfig`.

    ``forward(x, t, y=None)``: ``x (B, C, H, W)``, ``t`` float ``(B,)`` or scalar, ``y`` int64
    ``(B,)`` in ``0..num_classes`` (``num_classes`` = null label; ``y=None`` → all null).
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else UNetConfig()
        if not isinstance(cfg, UNetConfig):
            raise ValueError(f"config must be a UNetConfig, got {type(cfg).__name__}")
        self.config = cfg
        ch = cfg.channels
        emb_dim = cfg.time_embed_dim
        self.time_embed = _time_embedding(cfg.time_embedding, emb_dim)
        self.class_embed = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes is not None else None
        self.shared_mlp = (nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
                           if cfg.time_mlp == "shared" else None)
        self.initial_conv = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        nxt = list(ch[1:]) + [ch[-1]]
        att = set(cfg.attention_levels)
        self.encoders = nn.ModuleList(Encoder(ch[i], nxt[i], cfg, emb_dim, i in att) for i in range(cfg.levels))
        self.bottleneck = _Stage(cfg.bottleneck_layers, ch[-1], cfg, emb_dim, cfg.levels in att)
        self.decoders = nn.ModuleList(Decoder(nxt[i], ch[i], cfg, emb_dim, i in att) for i in reversed(range(cfg.levels)))
        self.final_conv = nn.Conv2d(ch[0], cfg.output_channels, 3, padding=1)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Time (+ class) embedding ``(B, time_embed_dim)`` shared by every residual layer."""
        emb = self.time_embed(t)
        if self.class_embed is not None:
            if y is None:
                y = torch.full((batch,), self.config.num_classes, dtype=torch.long, device=t.device)
            emb = emb + self.class_embed(y)
        if self.shared_mlp is not None:
            emb = self.shared_mlp(emb)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x must have shape (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        b = x.shape[0]
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0 or t.numel() == 1:
            t = t.reshape(1).expand(b)
        elif t.shape != (b,):
            t = t.reshape(-1)
            if t.shape != (b,):
                raise ValueError(f"t must be a scalar or have shape ({b},), got {tuple(t.shape)}")
        if y is not None:
            if self.class_embed is None:
                raise ValueError("labels y given to a UNet built without class conditioning (num_classes=None)")
            y = torch.as_tensor(y, device=x.device)
            if y.numel() == 1 and b > 1:
                y = y.reshape(1).expand(b)
            # values are checked on the CPU only: on a GPU that would sync every forward pass
            y = check_labels("labels y", y.reshape(-1) if y.ndim == 0 else y, cfg.num_classes, b,
                             check_values=y.device.type == "cpu")
        n = eval_chunk(x, self.training)
        if n is not None and b > n:  # inference on the CPU: cache-sized chunks (devices.eval_chunk)
            return torch.cat([self._forward(x[i:i + n], t[i:i + n], None if y is None else y[i:i + n])
                              for i in range(0, b, n)])
        return self._forward(x, t, y)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The network on checked inputs: ``t`` of shape ``(B,)``, ``y`` ``(B,)`` or None."""
        emb = self.embed(t, y, x.shape[0]).to(x.dtype)
        h = self.initial_conv(x)
        skips = []
        for enc in self.encoders:
            h, skip = enc(h, emb)
            skips.append(skip)
        h = self.bottleneck(h, emb)
        for dec, skip in zip(self.decoders, reversed(skips)):
            h = dec(h, skip, emb)
        return self.final_conv(h)

    def describe(self) -> UNetDescription:
        """Count the blocks actually built (a test checks Figure 1's counts with this)."""

        def n_res(stage: _Stage) -> int:
            return sum(isinstance(m, ResidualLayer) for m in stage.layers)

        return UNetDescription(
            initial_convs=int(isinstance(self.initial_conv, nn.Conv2d)),
            encoders=len(self.encoders),
            res_layers_per_encoder=[n_res(e.stage) for e in self.encoders],
            downsamples=sum(isinstance(e.down, nn.Conv2d) and e.down.stride == (2, 2) for e in self.encoders),
            bottleneck_res_layers=n_res(self.bottleneck),
            decoders=len(self.decoders),
            res_layers_per_decoder=[n_res(d.stage) for d in self.decoders],
            upsamples=sum(isinstance(d.up, nn.Conv2d) for d in self.decoders),
            skip_connections=min(len(self.encoders), len(self.decoders)),
            final_convs=int(isinstance(self.final_conv, nn.Conv2d)),
            attention_blocks=sum(isinstance(m, SelfAttention) for m in self.modules()),
            norm=self.config.norm,
            channels=list(self.config.channels),
            parameters=sum(p.numel() for p in self.parameters()),
            class_conditional=self.class_embed is not None,
        )

