"""Exercises of notebook 08 (seed 004, AFHQ cats): the L1 training loss and the clamped x̂_0 of the sampler.

Direction, as in :mod:`nbhelpers.ddpm`: integer step t (``k`` in the library), t = 0 data and t = T noise; the
network reads the float t/T. Both exercises take the seed's :class:`~nbhelpers.recipes.afhq.Diffusion` as
their first argument (its ``q_sample``, ``model``, ``num_timesteps`` and buffers such as ``alphas_cumprod``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..recipes.afhq import Diffusion
from .core import Case, Exercise, register
from .core import gen as _gen
from .core import randn as _randn

T_CHECK = 20  # a short cosine chain keeps the cases fast; the notebooks' T = 10 and 50 behave alike


class _Affine(nn.Module):
    """ε̂ = 0.5·x − t: a fixed "network" that reads both x_t and the float time t/T."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return 0.5 * x - t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


class _Zero(nn.Module):
    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)


class _Oracle(nn.Module):
    """The exact noise of x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε for a known x_0: ε = (x_t − √ᾱ_t x_0)/√(1 − ᾱ_t)."""

    def __init__(self, x0: Tensor, T: int) -> None:
        super().__init__()
        self.x0, self.T = x0, T
        self.abar = Diffusion(nn.Identity(), 1, 1, T).alphas_cumprod

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        k = (t.double() * self.T).round().long()  # t = k/T back to the step k; k outside 1..T fails loudly
        ab = self.abar[k - 1].to(x).reshape(-1, *([1] * (x.ndim - 1)))
        return (x - ab.sqrt() * self.x0) / (1 - ab).sqrt()


def _diffusion(model: nn.Module) -> Diffusion:
    return Diffusion(model, image_size=8, channels=3, time_steps=T_CHECK)


# --------------------------------------------------------------------------- 08 · the L1 loss (Alg. 1)
def _p_losses_reference() -> Callable:
    def p_losses(diffusion: Diffusion, x_0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        return diffusion.p_losses(x_0, t, noise)
    return p_losses


def _p_losses_cases() -> list[Case]:
    x0 = _randn(6, 3, 8, 8, seed=81).clamp(-1, 1)
    noise = _randn(6, 3, 8, 8, seed=82)
    t = torch.randint(1, T_CHECK + 1, (6,), generator=_gen(83))
    x64, n64 = x0.double(), noise.double()
    affine = _diffusion(_Affine())
    return [
        Case(f"6 images (3, 8, 8), a fixed network ε̂ = 0.5·x − t, T = {T_CHECK}: against "
             "nbhelpers.recipes.afhq.Diffusion.p_losses (same t and ε)",
             lambda f: f(affine, x0, t, noise), lambda: affine.p_losses(x0, t, noise),
             "x_t = diffusion.q_sample(x_0, t, noise); ε̂ = diffusion.model(x_t, t / diffusion.num_timesteps) — the "
             "network reads the float time t/T, not the integer step; return the mean of |ε − ε̂|"),
        Case("a network that returns the true noise of x_t has loss 0 (float64)",
             lambda f: f(_diffusion(_Oracle(x64, T_CHECK)), x64, t, n64),
             lambda: torch.tensor(0.0, dtype=torch.float64),
             "call the network on the noised x_t = q_sample(x_0, t, noise) (not on x_0), at the time t/T of "
             "the same step t", atol=1e-8),
        Case("a network that always answers ε̂ = 0 costs the mean |ε| of the noise (L1, not squared)",
             lambda f: f(_diffusion(_Zero()), x0, t, noise), lambda: noise.abs().mean(),
             "the seed's loss is L1: (noise − ε̂).abs().mean() — an absolute value, averaged over the batch and "
             "every pixel (not squared, not summed)"),
    ]


# --------------------------------------------------------------------------- 08 · x̂_0 of the sampler (Alg. 2)
def _predict_x0_reference() -> Callable:
    def predict_x0(diffusion: Diffusion, x_t: Tensor, t: int | Tensor, eps: Tensor) -> Tensor:
        return diffusion.ddpm.predict_x0(x_t, t, eps).clamp(-1.0, 1.0)
    return predict_x0


def _predict_x0_cases() -> list[Case]:
    d = _diffusion(nn.Identity())
    t = torch.randint(1, T_CHECK + 1, (6,), generator=_gen(93))
    noise = _randn(6, 3, 8, 8, seed=92)
    x_t = d.q_sample(_randn(6, 3, 8, 8, seed=91).clamp(-1, 1), t, noise)
    eps = noise + 0.2 * _randn(6, 3, 8, 8, seed=97)  # an imperfect ε̂: most of x̂_0 stays inside [−1, 1]
    x0 = (torch.rand(6, 3, 8, 8, generator=_gen(94), dtype=torch.float64) * 1.8 - 0.9)  # inside [−1, 1]
    n64 = _randn(6, 3, 8, 8, seed=95, dtype=torch.float64)
    wide = torch.tensor([1.7, -2.5, 0.3, -1.0, 1.0, 0.999], dtype=torch.float64).reshape(6, 1, 1, 1).expand(6, 3, 2, 2)
    n_wide = _randn(6, 3, 2, 2, seed=96, dtype=torch.float64)
    k = T_CHECK // 2
    return [
        Case(f"6 images (3, 8, 8) at random steps t, T = {T_CHECK}: against nbhelpers.ddpm.DDPM.predict_x0, "
             "clamped to [−1, 1]",
             lambda f: f(d, x_t, t, eps), lambda: d.ddpm.predict_x0(x_t, t, eps).clamp(-1, 1),
             "ᾱ_t is diffusion.alphas_cumprod[t − 1] (step t sits at index t − 1); reshape it to (B, 1, 1, 1) so "
             "it broadcasts over the pixels, and clamp the result to [−1, 1]", atol=1e-4),
        Case("with the true noise, x̂_0 recovers x_0 exactly when x_0 lies inside [−1, 1] (float64)",
             lambda f: f(d, d.q_sample(x0, t, n64), t, n64), lambda: x0,
             "invert x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: x̂_0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t — ᾱ_t (the cumulative "
             "product), not α_t, under both square roots", atol=1e-8),
        Case(f"clamping at the boundary: x_0 = 1.7, −2.5, 0.3, −1, 1, 0.999 noised to one step t = {k} (a "
             "Python int) come back as 1, −1, 0.3, −1, 1, 0.999",
             lambda f: f(d, d.q_sample(wide, k, n_wide), k, n_wide), lambda: wide.clamp(-1, 1),
             "clamp x̂_0 to [−1, 1] (.clamp(-1, 1)) — the images live there, and values outside would be carried "
             "into the posterior mean; an int t applies to every image of the batch", atol=1e-8),
    ]


register(
    Exercise("p_losses", "08_afhq_ddpm",
             "write the seed's L1 loss: x_t = diffusion.q_sample(x_0, t, noise), "
             "ε̂ = diffusion.model(x_t, t / diffusion.num_timesteps), and return the mean of |noise − ε̂|",
             _p_losses_reference, "nbhelpers.recipes.afhq.Diffusion.p_losses", _p_losses_cases),
    Exercise("predict_x0", "08_afhq_ddpm",
             "return x̂_0 = clamp((x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, −1, 1) with ᾱ_t = diffusion.alphas_cumprod[t − 1], "
             "broadcast over the pixels (t is an int or an int64 (B,) tensor of steps 1..T)",
             _predict_x0_reference, "nbhelpers.ddpm.DDPM.predict_x0 (clamped to [−1, 1])", _predict_x0_cases),
)
