"""The conditional UNet of seed 001 §2.2 for two-pixel images: ε_θ(x, t, y) with x ∈ R².

The two pixels are a 1-channel signal of length 2, shape ``(B, 1, 2)``:

    enc1: Conv1d(1 → c1, kernel 2)            + Dense(t) + Dense(y) → GroupNorm(4)  → SiLU   (B, c1, 1)
    enc2: Conv1d(c1 → c2, kernel 1)           + Dense(t) + Dense(y) → GroupNorm(32) → SiLU   (B, c2, 1)
    dec1: ConvTranspose1d(c2 → c1, kernel 1)  + Dense(t) + Dense(y) → GroupNorm(4)  → SiLU   (B, c1, 1)
    dec2: ConvTranspose1d(2·c1 → 2, kernel 1) on [dec1, enc1] (the skip connection)           (B, 2, 1)

The step enters through a Gaussian Fourier embedding of t (seed 001 eq. 10) followed by a linear
layer and SiLU; the class through linear layers on the one-hot label (``num_classes + 1`` entries,
the last one the null label ∅ = ``num_classes``). Each block adds its own dense projection of both
embeddings to its feature map, as in Song et al.'s score UNet. No attention.
For a DDPM network t = k / T (see :mod:`nbhelpers.ddpm`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import batch_time, check_labels
from .embeddings import GaussianFourierEmbedding

__all__ = ["TwoPixelUNet"]


class _Dense(nn.Module):
    """A linear map of an embedding to a (B, C, 1) feature-map offset."""

    def __init__(self, in_dim: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_channels)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.linear(e)[..., None]


class TwoPixelUNet(nn.Module):
    """ε_θ(x, t, y): ``x (B, 2)``, ``t (B,)`` float, ``y (B,)`` int64 or ``None`` (= null label) → ``(B, 2)``.

    ``channels = (c1, c2)``: c1 divisible by 4 and c2 by 32 (the GroupNorm group counts of §2.2).
    ``num_classes = 0`` builds an unconditional network (no class embedding; ``y`` must be ``None``).
    """

    def __init__(
        self,
        num_classes: int = 2,
        channels: tuple[int, int] = (64, 256),
        embed_dim: int = 128,
        fourier_scale: float = 4.0,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
        if c1 < 4 or c1 % 4 or c2 < 32 or c2 % 32:
            raise ValueError(f"channels must be (c1, c2) with c1 divisible by 4 and c2 by 32, got {channels!r}")
        self.num_classes = num_classes
        self.channels = (c1, c2)
        self.time_embed = nn.Sequential(GaussianFourierEmbedding(embed_dim, scale=fourier_scale), nn.Linear(embed_dim, embed_dim), nn.SiLU())
        if num_classes > 0:
            self.class_embed = nn.Sequential(nn.Linear(num_classes + 1, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim), nn.SiLU())
        else:
            self.class_embed = None

        self.enc1 = nn.Conv1d(1, c1, kernel_size=2, bias=False)
        self.enc2 = nn.Conv1d(c1, c2, kernel_size=1, bias=False)
        self.dec1 = nn.ConvTranspose1d(c2, c1, kernel_size=1, bias=False)
        self.dec2 = nn.ConvTranspose1d(2 * c1, 2, kernel_size=1)
        self.t_dense = nn.ModuleList([_Dense(embed_dim, c) for c in (c1, c2, c1)])
        self.y_dense = nn.ModuleList([_Dense(embed_dim, c) for c in (c1, c2, c1)]) if num_classes > 0 else None
        self.norms = nn.ModuleList([nn.GroupNorm(4, c1), nn.GroupNorm(32, c2), nn.GroupNorm(4, c1)])

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"x must have shape (B, 2), got {tuple(x.shape)}")
        B = x.shape[0]
        t = batch_time(t, x)
        e_t = self.time_embed(t)
        if self.class_embed is None:
            if y is not None:
                raise ValueError("this network is unconditional (num_classes=0); call it with y=None")
            e_y = None
        else:
            if y is None:
                y = torch.full((B,), self.num_classes, dtype=torch.long, device=x.device)
            y = check_labels("labels y", y, self.num_classes, B, check_values=y.device.type == "cpu")
            e_y = self.class_embed(F.one_hot(y, self.num_classes + 1).to(x.dtype))

        def cond(h: torch.Tensor, i: int) -> torch.Tensor:
            h = h + self.t_dense[i](e_t)
            if e_y is not None:
                h = h + self.y_dense[i](e_y)
            return F.silu(self.norms[i](h))

        h1 = cond(self.enc1(x[:, None, :]), 0)  # (B, c1, 1)
        h2 = cond(self.enc2(h1), 1)  # (B, c2, 1)
        h = cond(self.dec1(h2), 2)  # (B, c1, 1)
        return self.dec2(torch.cat([h, h1], dim=1))[..., 0]  # (B, 2)
