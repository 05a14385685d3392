"""Exercises of notebook 07 (classifier-free guidance on MNIST): one deterministic DDIM step.

Direction as in :mod:`nbhelpers.ddpm`: integer step k = 0 is data and k = T noise; the buffers are indexed
from step 1 (``alphas_cumprod[k - 1] = ᾱ_k``) and ᾱ_0 = 1.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from .. import ddpm as _ddpm
from .core import Case, Exercise, register
from .core import gen as _gen
from .core import randn as _randn


# --------------------------------------------------------------------------- 07 · DDIM
def _ddim_reference() -> Callable:
    def ddim_step(ddpm: Any, x: Tensor, k: int, k_next: int, eps: Tensor, clip_x0: bool = True) -> Tensor:
        """The library's step, :meth:`nbhelpers.ddpm.DDPM.ddim_step` at η = 0 (the one ``ddim_sample`` takes)."""
        return ddpm.ddim_step(x, k, k_next, eps, clip_x0=clip_x0).x_prev
    return ddim_step


def _ddim_cases() -> list[Case]:
    cos = _ddpm.DDPM.from_schedule("cosine", 200)
    lin = _ddpm.DDPM.from_schedule("linear", 1000)
    x = _randn(4, 1, 6, 6, seed=81, dtype=torch.float64)
    eps = _randn(4, 1, 6, 6, seed=82, dtype=torch.float64)
    x0 = torch.rand(4, 1, 6, 6, generator=_gen(83), dtype=torch.float64) * 1.8 - 0.9  # inside [−1, 1]
    abar = cos.alphas_cumprod

    def noised(k: int) -> Tensor:  # x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε: the true noise is eps
        return abar[k - 1].sqrt() * x0 + (1 - abar[k - 1]).sqrt() * eps

    def first_ddim_step(clip: bool) -> Tensor:  # ddim_steps(5, 120) = [120, 90, 60, 31, 1]: the state at 90
        out = cos.ddim_sample(lambda x_, t_: eps, x, 5, start_step=120, clip_x0=clip, return_steps=[90])
        return out.trajectory[90]

    xi = _randn(3, 1, 8, 8, seed=84)
    ei = _randn(3, 1, 8, 8, seed=85)
    return [
        Case("k = 120 → k' = 90 without clipping (cosine, T = 200), against the first step of "
             "nbhelpers.ddpm.DDPM.ddim_sample(n_steps=5, start_step=120, clip_x0=False) with the same ε̂",
             lambda f: f(cos, x, 120, 90, eps, clip_x0=False), lambda: first_ddim_step(False),
             "x̂_0 = (x_k − √(1 − ᾱ_k)·ε̂)/√ᾱ_k, then x_k' = √ᾱ_k'·x̂_0 + √(1 − ᾱ_k')·ε̂, with "
             "ᾱ_k = ddpm.alphas_cumprod[k − 1]"),
        Case("the same step with clip_x0=True (the default): most of x̂_0 lies outside [−1, 1] here",
             lambda f: f(cos, x, 120, 90, eps), lambda: first_ddim_step(True),
             "as ddim_sample does: clamp x̂_0 to [−1, 1] and recompute ε̂ = (x_k − √ᾱ_k·x̂_0)/√(1 − ᾱ_k) from "
             "the clamped x̂_0 before the update"),
        Case("a closed form: if ε̂ is the true noise of x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε, then x̂_0 = x_0 and "
             "the step k = 150 → k' = 40 lands on √ᾱ_40 x_0 + √(1 − ᾱ_40) ε",
             lambda f: f(cos, noised(150), 150, 40, eps), lambda: noised(40),
             "the buffers start at step 1: ᾱ_k is ddpm.alphas_cumprod[k − 1], ᾱ_k' is "
             "ddpm.alphas_cumprod[k' − 1]"),
        Case("k' = 0, the step after the last one: with the true noise, k = 30 → 0 returns x_0 itself",
             lambda f: f(cos, noised(30), 30, 0, eps), lambda: x0,
             "k' = 0 is the data, ᾱ_0 = 1 (so x_0' = x̂_0); ddpm.alphas_cumprod[0 − 1] would read ᾱ_T"),
        Case("float32 images, linear schedule (T = 1000), k = T → 0: the single step of "
             "ddim_sample(n_steps=1), a clamped x̂_0",
             lambda f: f(lin, xi, 1000, 0, ei), lambda: lin.ddim_sample(lambda x_, t_: ei, xi, 1).x,
             "work in x's dtype and device (ddpm.alphas_cumprod.to(x)); at k' = 0 the result is x̂_0 clamped "
             "to [−1, 1]"),
    ]


register(
    Exercise("ddim_step", "07_mnist_cfg",
             "write one deterministic DDIM step (η = 0) from step k to k_next < k given ε̂ = eps: "
             "x̂_0 = (x − √(1 − ᾱ_k)·eps)/√ᾱ_k, clamped to [−1, 1] with eps recomputed from it when clip_x0; "
             "return √ᾱ_k'·x̂_0 + √(1 − ᾱ_k')·eps, with ᾱ_k = ddpm.alphas_cumprod[k − 1] and ᾱ_0 = 1",
             _ddim_reference, "nbhelpers.ddpm.DDPM.ddim_step (the update ddim_sample takes)", _ddim_cases),
)
