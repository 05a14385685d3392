"""Sampling notebook 07's digits: labels in class order, guided generation, seed 003's forward process and
partial-diffusion editing, and the sample sets the notebook scores (the guidance sweep, the edit sweep, DDIM
step counts against ancestral sampling).

Guided generation is :func:`nbhelpers.ddpm_sampling.guided_sample` (in chunks, ancestral or DDIM, w = 0 without the
unconditional pass) at the digits' shape ``(1, 28, 28)``; generated and edited digits come back on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..._checks import check_float, check_int, check_labels
from ...ddpm import DDPM, SAMPLERS, SampleResult
from ...ddpm_sampling import guided_sample
from ...guidance import CFGModel
from ...devices import autocast, randn
from .presets import DIGIT_SHAPE, NUM_CLASSES

__all__ = [
    "SAMPLERS", "class_labels", "device_generator", "first_per_class", "generate", "edit", "forward_process",
    "GuidanceSweep", "guidance_sweep", "edit_sweep", "ddim_and_ancestral_sets",
]


def class_labels(per_class: int, num_classes: int = NUM_CLASSES, device: str | torch.device = "cpu") -> torch.Tensor:
    """``[0]*per_class + [1]*per_class + …``: int64 ``(per_class · num_classes,)``, ordered by class."""
    per_class = check_int("per_class", per_class, min=0)
    num_classes = check_int("num_classes", num_classes, min=1)
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


def device_generator(device: str | torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (draws on the device avoid host round trips)."""
    return torch.Generator(device=torch.device(device)).manual_seed(check_int("seed", seed))


def first_per_class(x: torch.Tensor, per_class: int, k: int = 10) -> torch.Tensor:
    """The first ``k`` samples of each class of ``x``, ordered by class with ``per_class`` each (as
    :func:`class_labels`). Shapes: ``(C · per_class, …)`` → ``(C · k, …)``."""
    per_class = check_int("per_class", per_class, min=1)
    if x.shape[0] % per_class:
        raise ValueError(f"x holds {x.shape[0]} samples, not a multiple of per_class = {per_class}")
    return x.reshape(-1, per_class, *x.shape[1:])[:, :k].reshape(-1, *x.shape[1:])


def generate(
    ddpm: DDPM,
    model: nn.Module,
    labels: torch.Tensor,
    guidance_w: float,
    *,
    sampler: str = "ancestral",
    n_steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    return_steps: Sequence[int] | None = None,
    chunk: int = 1000,
    amp: bool = False,
    num_classes: int = NUM_CLASSES,
) -> SampleResult:
    """Guided digits ``(B, 1, 28, 28)`` for ``labels`` with weight ``guidance_w``: :func:`nbhelpers.ddpm_sampling.guided_sample`
    (ancestral with all T steps, or DDIM with ``n_steps`` and ``eta``; ``chunk`` labels at a time; w = 0 skips the
    unconditional pass; states and x̂₀ at ``return_steps`` kept on the CPU). ``x_T`` fixes the starting noise;
    otherwise it is drawn with ``generator``. Returns a :class:`nb.ddpm.SampleResult` (``x`` on the CPU, float32).
    """
    return guided_sample(ddpm, model, labels, guidance_w, num_classes, shape=DIGIT_SHAPE, sampler=sampler,
                         n_steps=n_steps, eta=eta, generator=generator, x_T=x_T, return_steps=return_steps,
                         chunk=chunk, amp=amp)


@torch.no_grad()
def edit(
    ddpm: DDPM,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    t0: float,
    guidance_w: float = 0.0,
    generator: torch.Generator | None = None,
    amp: bool = False,
    num_classes: int = NUM_CLASSES,
) -> torch.Tensor:
    """Seed 003's partial diffusion: diffuse ``images`` to k₀ = round(t0 · T),
    x_{k₀} ~ q(x_{k₀} | x₀) = N(√ᾱ_{k₀} x₀, (1 − ᾱ_{k₀}) I), then denoise k₀ → 0 ancestrally with
    ``labels`` (guided with ``guidance_w``). t0 = 0 returns the images unchanged; t0 = 1 is a fresh sample.
    Shapes: images ``(B, 1, 28, 28)``, labels ``(B,)`` → ``(B, 1, 28, 28)`` on the CPU.
    """
    if isinstance(t0, bool) or not isinstance(t0, (int, float)) or not 0.0 <= float(t0) <= 1.0:
        raise ValueError(f"t0 must be a fraction of T in [0, 1], got {t0!r}")
    guidance_w = check_float("guidance_w", guidance_w)
    num_classes = check_int("num_classes", num_classes, min=1)
    labels = check_labels("labels", labels, num_classes, images.shape[0])
    device = next(model.parameters()).device
    k0 = int(round(float(t0) * ddpm.T))
    if guidance_w != 0.0:
        model = CFGModel(model, guidance_w, num_classes)
    with autocast(device, enabled=amp):
        out = ddpm.sample(model, x_start=images.to(device), y=labels.to(device), start_step=k0, generator=generator)
    return out.x.float().cpu()


@torch.no_grad()
def forward_process(ddpm: DDPM, images: torch.Tensor, steps: Sequence[int],
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """x_k = √ᾱ_k x₀ + √(1 − ᾱ_k) ε at every k in ``steps`` (k = 0 is the image), with one ε per
    image shared by all k, so a row shows one image being overpowered by noise.
    Shapes: images ``(B, C, H, W)`` → ``(B, len(steps), C, H, W)`` on the images' device.
    """
    bad = [k for k in steps if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= ddpm.T]
    if bad or not len(steps):
        raise ValueError(f"steps must be integers in [0, {ddpm.T}] (T of this DDPM), got {list(steps)!r}")
    noise = randn(images.shape, generator, images.device).to(images)
    return torch.stack([ddpm.q_sample(images, int(k), noise) for k in steps], dim=1)


@dataclass
class GuidanceSweep:
    """Samples at each guidance weight w (``samples[w]`` on the CPU), the network calls per sample and the wall time."""

    samples: dict[float, torch.Tensor]
    nfe: dict[float, int]
    seconds: float


def guidance_sweep(ddpm: DDPM, model: nn.Module, labels: torch.Tensor, weights: Sequence[float], *, x_T: torch.Tensor,
                   sampler: str = "ancestral", n_steps: int | None = None, generator: torch.Generator | None = None,
                   chunk: int = 1000, amp: bool = False) -> GuidanceSweep:
    """:func:`generate` at every weight in ``weights`` from the same starting noise ``x_T``; each weight draws
    its sampler noise from a copy of ``generator`` in the state it is given, so the weights differ only in w."""
    import time

    samples, nfe = {}, {}
    t0 = time.perf_counter()
    for w in weights:
        g = None
        if generator is not None:
            g = torch.Generator(device=generator.device)
            g.set_state(generator.get_state())
        out = generate(ddpm, model, labels, w, sampler=sampler, n_steps=n_steps, x_T=x_T, generator=g, chunk=chunk,
                       amp=amp)
        samples[w], nfe[w] = out.x, out.nfe
    return GuidanceSweep(samples, nfe, time.perf_counter() - t0)


def edit_sweep(ddpm: DDPM, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, new_labels: torch.Tensor,
               t0s: Sequence[float], generators: Sequence[torch.Generator | None], guidance_w: float = 0.0,
               amp: bool = False, edit_fn: Callable[..., torch.Tensor] | None = None
               ) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """:func:`edit` of ``images`` at each t0, with their own ``labels`` and with ``new_labels`` in one batch
    (one generator per t0). Returns ``{t0: (edited with labels, edited with new_labels)}``, each ``(B, 1, 28, 28)``.
    ``edit_fn(images, labels, t0, generator)`` replaces :func:`edit` (notebook 07 writes its own, with its ``w``)."""
    if len(generators) != len(t0s):
        raise ValueError(f"need one generator per t0, got {len(generators)} for {len(t0s)} values of t0")
    if edit_fn is None:
        def edit_fn(x: torch.Tensor, y: torch.Tensor, f: float, g: torch.Generator | None) -> torch.Tensor:
            return edit(ddpm, model, x, y, f, guidance_w=guidance_w, generator=g, amp=amp)
    out = {}
    for f, g in zip(t0s, generators):
        x = edit_fn(torch.cat([images, images]), torch.cat([labels, new_labels]), f, g).float().cpu()
        out[f] = (x[:len(labels)], x[len(labels):])
    return out


def ddim_and_ancestral_sets(ddpm: DDPM, model: nn.Module, labels: torch.Tensor, guidance_w: float,
                            x_T: torch.Tensor, ddim_steps: Sequence[int], *, generator: torch.Generator | None = None,
                            chunk: int = 1000, amp: bool = False,
                            have: dict[str, tuple[torch.Tensor, int]] | None = None
                            ) -> dict[str, tuple[torch.Tensor, int]]:
    """``{"DDIM-<n>": (samples, nfe), …, "ancestral": (samples, nfe)}`` from the same ``x_T``: DDIM (η = 0) with
    each step count in ``ddim_steps``, then ancestral sampling with all T steps (its noise from ``generator``).
    A set already in ``have`` (same names) is taken from there instead of being sampled again."""
    have = have or {}
    sets = {}
    for n in ddim_steps:
        name = f"DDIM-{n}"
        if name in have:
            sets[name] = have[name]
            continue
        out = generate(ddpm, model, labels, guidance_w, sampler="ddim", n_steps=n, x_T=x_T, chunk=chunk, amp=amp)
        sets[name] = (out.x, out.nfe)
    if "ancestral" in have:
        sets["ancestral"] = have["ancestral"]
    else:
        out = generate(ddpm, model, labels, guidance_w, sampler="ancestral", x_T=x_T, generator=generator, chunk=chunk,
                       amp=amp)
        sets["ancestral"] = (out.x, out.nfe)
    return sets
