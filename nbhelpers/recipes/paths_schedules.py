"""Notebook 02 (noise schedules and Gaussian paths, seed 000 task 2; DDPM schedules of seeds 003, 004).

Continuous schedules use t ∈ [0, 1] with t = 0 noise and t = 1 data; discrete DDPM chains count
k = 1 … T with k = 0 data and k = T noise. Each study takes what the notebook built (a learner's
``CosineSchedule``, ``sample_path`` or ``cosine_betas`` once its exercise passes) and returns a
:class:`~nbhelpers.recipes.study.Study`: figure, metrics under the notebook's names, summary.
Random draws follow the given ``generator`` in a fixed order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..plotting import plot_density, scatter_panels
from ..schedules import DDPM_SCHEDULES, Schedule, alphas_cumprod, ddpm_betas, discrete_snr, validate_schedule
from .study import Study

__all__ = ["FixedCorruption", "schedule_study", "path_moment_study", "labelled_samples_figure", "recognisability_study",
           "ddpm_schedule_study", "forward_chain_study"]


@dataclass
class FixedCorruption:
    """Data ``z (N, 2)`` with mixture-component ``labels (N,)`` corrupted with one fixed noise ``eps`` along
    any schedule: ``corruption(schedule, t)`` is x_t = ``sample_path(schedule, z, t, eps)``, so every
    schedule and time sees the same points and the same noise. ``gmm`` is the mixture ``z`` came from."""

    sample_path: Callable[..., torch.Tensor]
    gmm: Any
    z: torch.Tensor
    labels: torch.Tensor
    eps: torch.Tensor

    def __call__(self, schedule: Schedule, t: float) -> torch.Tensor:
        return self.sample_path(schedule, self.z, torch.full((len(self.z),), float(t)), self.eps)

    def recognised(self, schedule: Schedule, t: float) -> float:
        """Mean P(true mode | x_t) under the exact marginal p_t (``gmm.component_posterior``): the
        accuracy of the best possible mode classifier at t."""
        post = self.gmm.component_posterior(self(schedule, t), t, schedule)
        return post[torch.arange(len(self.z)), self.labels].mean().item()


def schedule_study(schedules: dict[str, Schedule], n: int = 201) -> Study:
    """Validate each schedule (:func:`nbhelpers.schedules.validate_schedule`), compare its hand-written
    α̇, β̇ with autograd in float64 on 99 interior times, and draw α/β, α̇/β̇ and log₁₀ SNR on ``n``
    times. Metrics: ``schedule_derivative_err_<name>`` (max |hand-written − autograd|)."""
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64, requires_grad=True)
    metrics, lines = {}, []
    for name, s in schedules.items():
        validate_schedule(s)
        v = s(t)
        da = torch.autograd.grad(v.alpha.sum(), t)[0]
        db = torch.autograd.grad(s.beta(t).sum(), t)[0]
        err = max((v.d_alpha - da).abs().max().item(), (v.d_beta - db).abs().max().item())
        lines.append(f"{name:<11} valid; max |hand-written − autograd derivative| = {err:.1e}")
        metrics[f"schedule_derivative_err_{name}"] = err
    tt = torch.linspace(0, 1, n, dtype=torch.float64)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (name, s) in enumerate(schedules.items()):
        color = f"C{i}"
        v = s(tt)
        axes[0].plot(tt, v.alpha, color=color, label=f"α {name}")
        axes[0].plot(tt, v.beta, color=color, ls="--", label=f"β {name}")
        axes[1].plot(tt, v.d_alpha, color=color, label=f"α̇ {name}")
        axes[1].plot(tt, v.d_beta, color=color, ls="--", label=f"β̇ {name}")
        inner = tt[1:-1]
        axes[2].plot(inner, torch.log10(s.snr(inner)), color=color, label=name)
    axes[0].set_title("α_t (solid) and β_t (dashed)")
    axes[1].set_title("derivatives α̇_t (solid) and β̇_t (dashed)")
    axes[2].set_title("log₁₀ SNR = log₁₀(α²/β²)")
    axes[2].axhline(0, color="grey", lw=0.8)
    for ax in axes:
        ax.set_xlabel("t   (0 = noise, 1 = data)")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=7, ncol=2)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return Study(fig, metrics, "\n".join(lines))


def path_moment_study(sample_path: Callable[..., torch.Tensor], path: Any, z0: torch.Tensor, times: Sequence[float],
                      n: int, generator: torch.Generator | None = None) -> Study:
    """Sample x_t = ``sample_path(path.schedule, z, t, ε)`` ``n`` times for one point ``z0 (1, d)`` at
    each t of ``times`` and compare the sample mean and std with α_t z and β_t (``path.mean_std``).
    Metric ``path_sample_worst_deviation_se``: the largest deviation, in standard errors of a mean
    (β/√n) and of a std (β/√(2n)), over times with β_t > 0. Summary: a table per t."""
    d = z0.shape[1]
    lines = [" t    empirical mean      α_t z             empirical std   β_t"]
    worst = 0.0
    for t0 in times:
        eps = torch.randn(n, d, generator=generator)
        x_t = sample_path(path.schedule, z0.expand(n, d), torch.full((n,), t0), eps)
        mean, std = path.mean_std(z0, t0)
        if float(std) > 0:
            z_mean = (x_t.double().mean(0) - mean[0]).abs().max() / (float(std) / math.sqrt(n))
            z_std = (x_t.double().std(0) - float(std)).abs().max() / (float(std) / math.sqrt(2 * n))
            worst = max(worst, float(z_mean), float(z_std))
        lines.append(f"{t0:4.2f}  {np.round(x_t.mean(0).numpy(), 3)!s:<18} {np.round(mean[0].numpy(), 3)!s:<18}"
                     f"{x_t.std(0).mean().item():6.3f}        {float(std):.3f}")
    return Study(None, {"path_sample_worst_deviation_se": worst}, "\n".join(lines))


def labelled_samples_figure(log_prob: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
                            labels: torch.Tensor, title: str, size: float = 4.2) -> Figure:
    """2D points ``(N, 2)`` coloured by their integer ``labels`` (tab10) over a density's contours."""
    fig, ax = plt.subplots(figsize=(size, size))
    plot_density(log_prob, ax=ax, filled=False, levels=8, alpha=0.6)
    ax.scatter(*points.T, s=3, c=labels, cmap="tab10", vmin=0, vmax=9)
    ax.set_title(title)
    return fig


def recognisability_study(schedules: dict[str, Schedule], times: torch.Tensor, corrupt: FixedCorruption,
                          level: float = 0.9) -> Study:
    """For each schedule and each t of ``times``: ``corrupt.recognised(schedule, t)`` (the best classifier's
    accuracy) and the std per coordinate of x_t = ``corrupt(schedule, t)``, drawn against t. Metrics:
    ``t_mode_recognisable_90_<name>`` (first t with accuracy ≥ ``level``) and ``xt_std_at_t0.5_<name>``
    (the std at the middle time of ``times``)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    metrics, lines = {}, []
    mid = len(times) // 2
    for name, s in schedules.items():
        acc, spread = [], []
        for t0 in times:
            acc.append(corrupt.recognised(s, float(t0)))
            spread.append(corrupt(s, float(t0)).std(0).mean().item())
        acc = torch.tensor(acc)
        axes[0].plot(times, acc, label=name)
        axes[1].plot(times, spread, label=name)
        hits = torch.nonzero(acc >= level)
        if len(hits) == 0:
            raise ValueError(f"schedule {name!r} never reaches accuracy {level} on the given times")
        t90 = float(times[int(hits[0])])
        metrics[f"t_mode_recognisable_90_{name}"] = t90
        metrics[f"xt_std_at_t0.5_{name}"] = spread[mid]
        lines.append(f"{name:<11} P(true mode | x_t) ≥ {level:g} from t = {t90:.3f};  "
                     f"std of x_t at t = 0.5: {spread[mid]:.2f}")
    axes[0].axhline(level, color="grey", lw=0.8, ls=":")
    axes[0].set_title("mean P(true mode | x_t)  (exact marginal)")
    axes[1].set_title("std of x_t per coordinate")
    for ax in axes:
        ax.set_xlabel("t")
        ax.legend()
    fig.tight_layout()
    return Study(fig, metrics, "\n".join(lines))


def ddpm_schedule_study(betas: dict[str, torch.Tensor], short_T: int = 50) -> Study:
    """Discrete schedules ``{name: β_1…β_T}`` (k = 0 data, k = T noise): β_k, ᾱ_k, √ᾱ_k and √(1 − ᾱ_k),
    log₁₀ SNR_k per step. Metrics: ``ddpm_<name>_abar_T``, ``ddpm_<name>_snr_below_1_from_k`` (first k
    with SNR < 1), ``ddpm_cosine_clipped_steps`` (cosine steps at the clip β = 0.999, when a "cosine"
    entry is given) and ``ddpm_<name>_T<short_T>_abar_T`` for every library schedule with ``short_T`` steps."""
    metrics, lines = {}, []
    abar = {name: alphas_cumprod(b) for name, b in betas.items()}
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for i, (name, b) in enumerate(betas.items()):
        color = f"C{i}"
        k = np.arange(1, len(b) + 1)
        snr = discrete_snr(abar[name])
        axes[0].plot(k, b, color=color, label=name)
        axes[1].plot(k, abar[name], color=color, label=name)
        axes[2].plot(k, abar[name].sqrt(), color=color, label=f"√ᾱ {name}")
        axes[2].plot(k, (1 - abar[name]).sqrt(), color=color, ls="--", label=f"√(1−ᾱ) {name}")
        axes[3].plot(k, torch.log10(snr), color=color, label=name)
        k_half = int(torch.nonzero(snr < 1)[0]) + 1
        metrics[f"ddpm_{name}_abar_T"] = abar[name][-1].item()
        metrics[f"ddpm_{name}_snr_below_1_from_k"] = k_half
        lines.append(f"{name:<7} ᾱ_T = {abar[name][-1].item():.2e}   SNR < 1 from k = {k_half}   "
                     f"max β = {b.max().item():.4f}")
    if "cosine" in betas:
        n_clip = int((betas["cosine"] >= 0.999 - 1e-12).sum())
        metrics["ddpm_cosine_clipped_steps"] = n_clip
        lines.append(f"cosine: {n_clip} step(s) hit the clip β = 0.999")
    axes[0].set_yscale("log")
    axes[0].set_title("β_k")
    axes[1].set_title("ᾱ_k")
    axes[2].set_title("√ᾱ_k (signal) and √(1−ᾱ_k) (noise)")
    axes[3].set_title("log₁₀ SNR_k = log₁₀ ᾱ/(1−ᾱ)")
    axes[3].axhline(0, color="grey", lw=0.8)
    for ax in axes:
        ax.set_xlabel("step k   (0 = data, T = noise)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    for name in DDPM_SCHEDULES:  # the same recipes with a short chain
        a_T = alphas_cumprod(ddpm_betas(name, short_T))[-1].item()
        metrics[f"ddpm_{name}_T{short_T}_abar_T"] = a_T
        lines.append(f"T = {short_T}: {name:<7} ᾱ_T = {a_T:.3g}")
    return Study(fig, metrics, "\n".join(lines))


def forward_chain_study(betas: dict[str, torch.Tensor], x_start: torch.Tensor, labels: torch.Tensor,
                        means: torch.Tensor, every: int = 100, n_shown: int = 1000,
                        generator: torch.Generator | None = None) -> Study:
    """Run the Markov chain x_k = √(1 − β_k) x_{k−1} + √β_k ε_k from ``x_start (N, 2)`` for each
    schedule of ``betas`` and, every ``every`` steps, compare the per-coordinate variance with the
    closed form ᾱ_k Var(x_0) + 1 − ᾱ_k. Figure: the first ``n_shown`` points (coloured by ``labels``)
    every 2·``every`` steps, one row per schedule, with the shrunk means √ᾱ_k·μ as ×. Metrics:
    ``ddpm_<name>_chain_vs_closed_form_var_max_rel`` (largest relative variance error)."""
    metrics, lines, snaps, panels = {}, [], {}, []
    for name, b in betas.items():
        abar = alphas_cumprod(b)
        keep_coef, noise_coef = (1 - b).sqrt().tolist(), b.sqrt().tolist()
        x = x_start.clone()
        keep, rel = [x[:n_shown]], []
        for kk in range(1, len(b) + 1):
            x = keep_coef[kk - 1] * x + noise_coef[kk - 1] * torch.randn(x.shape, generator=generator)
            if kk % every == 0:
                keep.append(x[:n_shown])
                a = abar[kk - 1].item()
                want_var = a * x_start.var(0) + (1 - a)  # closed form given this x_0 sample
                rel.append(((x.var(0) - want_var).abs() / want_var).max().item())
        snaps[name] = keep
        metrics[f"ddpm_{name}_chain_vs_closed_form_var_max_rel"] = max(rel)
        lines.append(f"{name:<7} chain vs q(x_k|x_0): max relative variance error over snapshots "
                     f"{100 * max(rel):.1f} % (n = {len(x_start)})")
        shown = list(range(0, len(b) + 1, 2 * every))
        panels += [(name, kk, 1.0 if kk == 0 else abar[kk - 1].sqrt().item()) for kk in shown]
    fig = scatter_panels([snaps[name][kk // every] for name, kk, _ in panels],
                         [f"{name}, k = {kk}" for name, kk, _ in panels], ncols=len(shown), size=2.4, s=2.5,
                         alpha=0.6, colors=[labels[:n_shown]] * len(panels), cmap="tab10", clim=(0, 9), lim=(-4, 4))
    for ax, (name, kk, shrink) in zip(fig.axes, panels):
        ax.scatter(*(shrink * means).T.cpu(), marker="x", c="k", s=30)
        ax.set_xticks([-3, 0, 3]), ax.set_yticks([-3, 0, 3])
        ax.title.set_fontsize(9)
    return Study(fig, metrics, "\n".join(lines))
