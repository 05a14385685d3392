"""Embeddings of the float time t (shape ``(B,)``, t ∈ [0, 1]) for every network of the series.

* :func:`sinusoidal_encoding` — sin/cos of 2π f_k t at ``n_freqs`` frequencies f_k (cycles per
  unit t) spaced geometrically from ``min_freq`` to ``max_freq``; 2·n_freqs features. The DDPM
  paper's recipe for t = k/T normalised to [0, 1]: 10 frequencies (20 features) up to the
  Nyquist frequency T/2 (500 for T = 1000), so that neighbouring steps stay distinguishable.
* :class:`SinusoidalEmbedding` — the Transformer embedding (Vaswani et al. 2017; diffusers'
  ``get_timestep_embedding`` with ``downscale_freq_shift=0``) of ``scale·t`` (default scale 1000,
  so t = k/T gives the integer step k for T = 1000): [sin(ω_k·scale·t), cos(ω_k·scale·t)] with
  ω_k = max_period^{−k/half}, k < half = dim/2. Ho et al.'s DDPM code divides by half − 1
  instead (diffusers' ``downscale_freq_shift=1``); the two differ by up to 2.0 per feature.
* :class:`GaussianFourierEmbedding` — random Fourier features [sin(2π W t), cos(2π W t)] with fixed
  W ~ N(0, scale²) (Tancik et al. 2020; Song et al. 2021 use scale 30 for the score SDE).

Every embedding maps ``t`` of shape ``(B,)`` (or a scalar) to ``(B, dim)`` (or ``(dim,)``) and
has an integer attribute ``dim``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..devices import exact, from_exact, to_exact

__all__ = ["sinusoidal_encoding", "sinusoidal_frequencies", "SinusoidalEmbedding", "GaussianFourierEmbedding", "get_time_embedding"]


def _time(t: Tensor | float) -> Tensor:
    t = torch.as_tensor(t)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() > 1:
        raise ValueError(f"t must be a scalar or have shape (B,), got shape {tuple(t.shape)}")
    return t


def _sin_cos(angles: Tensor) -> Tensor:
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


@exact()
def sinusoidal_frequencies(n_freqs: int, max_freq: float = 500.0, min_freq: float = 1.0) -> Tensor:
    """f_k = min_freq · (max_freq/min_freq)^{k/(n_freqs−1)}, k = 0 … n_freqs−1 (cycles per unit t; float64 on
    the CPU)."""
    if isinstance(n_freqs, bool) or not isinstance(n_freqs, int) or n_freqs < 1:
        raise ValueError(f"n_freqs must be a positive integer, got {n_freqs!r}")
    if not (0 < min_freq <= max_freq and math.isfinite(max_freq)):
        raise ValueError(f"need 0 < min_freq <= max_freq < inf, got min_freq={min_freq!r}, max_freq={max_freq!r}")
    if n_freqs == 1:
        return torch.tensor([float(min_freq)], dtype=torch.float64)
    k = torch.arange(n_freqs, dtype=torch.float64) / (n_freqs - 1)
    return min_freq * (max_freq / min_freq) ** k


def sinusoidal_encoding(t: Tensor | float, n_freqs: int, max_freq: float = 500.0, min_freq: float = 1.0,
                        freqs: Tensor | None = None) -> Tensor:
    """[sin(2π f_1 t), …, sin(2π f_n t), cos(2π f_1 t), …, cos(2π f_n t)] with f from
    :func:`sinusoidal_frequencies` (or ``freqs``, those frequencies already where the angles are computed: a
    module keeps them there, so no table is built and uploaded on every forward). Shapes: t ``(B,)`` →
    ``(B, 2·n_freqs)``; a scalar → ``(2·n_freqs,)``.

    The angles are computed in float64 so that high frequencies keep their phase, on
    :func:`nbhelpers.runtime.exact_device` of t's device (the CPU for MPS), and the result comes back in t's
    dtype on t's device.
    """
    t = _time(t)
    with exact():
        td = to_exact(t)
        f = to_exact(freqs if freqs is not None else sinusoidal_frequencies(n_freqs, max_freq, min_freq)).to(td.device)
        angles = 2 * math.pi * td[..., None] * f
        return from_exact(_sin_cos(angles), t)


class SinusoidalEmbedding(nn.Module):
    """[sin(ω_k s t), cos(ω_k s t)]_{k < dim/2} with ω_k = max_period^{−k/(dim/2)}, s = ``scale``.

    Shapes: t ``(B,)`` → ``(B, dim)``. No trainable parameters.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, scale: float = 1000.0) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2, got {dim!r}")
        if not (max_period > 1):
            raise ValueError(f"max_period must be > 1, got {max_period!r}")
        self.dim, self.max_period, self.scale = dim, float(max_period), float(scale)
        half = dim // 2
        omega = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("omega", omega.to(torch.get_default_dtype()), persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        t = _time(t).to(self.omega.device)
        return _sin_cos(self.scale * t.to(self.omega.dtype)[..., None] * self.omega).to(t.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}, scale={self.scale:g}"


class GaussianFourierEmbedding(nn.Module):
    """[sin(2π W t), cos(2π W t)] with W ∈ R^{dim/2} drawn once from N(0, scale²) and kept fixed.

    ``W`` is a buffer (saved with the state dict, not trained). Shapes: t ``(B,)`` → ``(B, dim)``.
    """

    def __init__(self, dim: int, scale: float = 30.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2, got {dim!r}")
        if not (scale > 0):
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.dim, self.scale = dim, float(scale)
        self.register_buffer("W", torch.randn(dim // 2, generator=generator) * scale)

    def forward(self, t: Tensor) -> Tensor:
        t = _time(t).to(self.W.device)
        return _sin_cos(2 * math.pi * t.to(self.W.dtype)[..., None] * self.W).to(t.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale:g}"


TIME_EMBEDDINGS: tuple[str, ...] = ("none", "sinusoidal", "fourier")


def get_time_embedding(kind: str | nn.Module | None, dim: int = 32, scale: float | None = None) -> nn.Module | None:
    """``None``/``"none"`` (raw t) | ``"sinusoidal"`` | ``"fourier"`` | a module with ``dim`` → module or None.

    ``scale`` overrides the default scale of the chosen embedding (1000 sinusoidal, 30 Fourier).
    """
    if kind is None or (isinstance(kind, str) and kind.strip().lower() == "none"):
        return None
    if isinstance(kind, nn.Module):
        if not isinstance(getattr(kind, "dim", None), int):
            raise ValueError(f"a time-embedding module needs an integer attribute 'dim', {kind!r} has none")
        return kind
    key = kind.strip().lower() if isinstance(kind, str) else kind
    if key == "sinusoidal":
        return SinusoidalEmbedding(dim, scale=1000.0 if scale is None else scale)
    if key == "fourier":
        return GaussianFourierEmbedding(dim, scale=30.0 if scale is None else scale)
    raise ValueError(f"unknown time embedding {kind!r}; valid choices: {', '.join(TIME_EMBEDDINGS)} or an nn.Module with .dim")
