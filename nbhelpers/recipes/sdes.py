"""Notebook 01 (SDEs, seed 000 task 1): the Brownian, Ornstein–Uhlenbeck and Langevin studies.

Each study takes the SDE *class* the notebook built (a learner's ``Brownian`` or ``OU`` once
its exercise passes), simulates it with :meth:`nbhelpers.sde.SDE.simulate` and returns its
figure together with the numbers the notebook records (``metrics``: name → value, the
notebook's metric names). Simulations draw from the given ``generator`` in a fixed order, so a
seeded notebook reproduces its numbers exactly.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..metrics.toy import posterior_mode_fractions, total_variation
from ..plotting import plot_density, plot_paths, to_numpy
from ..sde import Langevin
from .study import Study

__all__ = ["Study", "brownian_study", "ou_endpoint_study", "ou_moments_study", "moments_figure", "langevin_mode_study",
           "langevin_modes_figure"]


def brownian_study(make_sde: Callable[[float], Any], sigmas: Sequence[float], t1: float, n_steps: int,
                   n_var: int, generator: torch.Generator | None = None, device: Any = "cpu",
                   n_show: int = 10) -> Study:
    """Brownian motion X_t = σW_t for each σ: ``n_show`` paths from 0 to ``t1`` with the ±σ√t
    envelope (one panel per σ), and the relative error |Var̂ X_t1 − σ²t1| / σ²t1 of ``n_var`` paths.

    ``make_sde(sigma)`` builds the SDE (e.g. ``nb.sde.BrownianMotion``). Metrics:
    ``bm_var_rel_err_sigma<σ>``.
    """
    fig, axes = plt.subplots(1, len(sigmas), figsize=(4.2 * len(sigmas), 3.4), sharey=True, squeeze=False)
    axes = axes[0]
    metrics = {}
    for ax, s in zip(axes, sigmas):
        bm = make_sde(s)
        sol = bm.simulate(torch.zeros(n_show, 1, device=device), 0.0, t1, n_steps, generator=generator,
                          return_trajectory=True)
        plot_paths(sol.ts, sol.trajectory, ax=ax, envelope=lambda tt, s=s: s * np.sqrt(tt), envelope_label="±σ√t",
                   lw=0.9)
        var = bm.simulate(torch.zeros(n_var, 1, device=device), 0.0, t1, n_steps, generator=generator).x.var().item()
        metrics[f"bm_var_rel_err_sigma{s:g}"] = abs(var - s**2 * t1) / (s**2 * t1)
        ax.set_title(f"σ = {s:g}   (Var X₁: {var:.3f} vs σ²t = {s**2 * t1:.3f})", fontsize=10)
    axes[0].set_ylabel("$X_t$")
    axes[0].legend(loc="upper left")
    fig.suptitle(f"Brownian motion: {n_show} paths per σ with the ±σ√t envelope")
    fig.tight_layout()
    return Study(fig, metrics)


def ou_endpoint_study(make_sde: Callable[[float, float], Any], settings: Sequence[tuple[float, float]],
                      n_paths: int, n_steps: int, plot_steps: int, generator: torch.Generator | None = None,
                      device: Any = "cpu", t_plot: float = 8.0, n_show: int = 12, start: float = 4.0) -> Study:
    """OU processes dX = −θX dt + σ dW, one column per ``(θ, σ)`` in ``settings``.

    Top: ``n_show`` paths from starts spread over [−start, start] up to ``t_plot`` (``plot_steps``
    steps), the stationary ±√(σ²/2θ) shaded. Bottom: where ``n_paths`` paths from starts spread
    over the same range end at T = 8/θ (``n_steps`` steps), against N(0, σ²/2θ). ``make_sde(θ, σ)``
    builds the SDE, which must have ``stationary_variance``. Metrics: the relative error of the
    endpoint variance, ``ou_stationary_var_rel_err_theta<θ>_sigma<σ>`` and their maximum
    ``ou_stationary_var_rel_err_max``.
    """
    fig, axes = plt.subplots(2, len(settings), figsize=(4.0 * len(settings), 6.4), squeeze=False)
    metrics, lines = {}, []
    for j, (th, sg) in enumerate(settings):
        proc = make_sde(th, sg)
        v = proc.stationary_variance
        starts = torch.linspace(-start, start, n_show, device=device)[:, None]
        few = proc.simulate(starts, 0.0, t_plot, plot_steps, generator=generator, return_trajectory=True)
        ax = axes[0, j]
        plot_paths(few.ts, few.trajectory, ax=ax, lw=0.8)
        ax.axhspan(-math.sqrt(v), math.sqrt(v), color="k", alpha=0.08)
        ax.set_title(f"θ = {th:g}, σ = {sg:g}   σ²/2θ = {v:g}", fontsize=10)
        ax.set_ylim(-start - 0.5, start + 0.5)
        many = torch.linspace(-start, start, n_paths, device=device)[:, None]
        end = proc.simulate(many, 0.0, 8.0 / th, n_steps, generator=generator).x
        var_hat = end.var().item()
        rel = abs(var_hat - v) / v
        metrics[f"ou_stationary_var_rel_err_theta{th:g}_sigma{sg:g}"] = rel
        lines.append(f"θ = {th:<4g} σ = {sg:<4g} σ²/2θ = {sg**2 / (2 * th):<5g} "
                     f"relative error of the simulated variance: {100 * rel:.2f} %")
        ax = axes[1, j]
        e = end.squeeze(1).cpu().numpy()
        ax.hist(e, bins=60, density=True, alpha=0.6, label=f"{n_paths} endpoints")
        grid = np.linspace(e.min(), e.max(), 200)
        ax.plot(grid, np.exp(-grid**2 / (2 * v)) / math.sqrt(2 * math.pi * v), "k", lw=1.5, label="N(0, σ²/2θ)")
        ax.set_title(f"Var = {var_hat:.4f} vs σ²/2θ = {v:.4f} ({100 * rel:.1f} %)", fontsize=9)
        ax.set_xlabel(f"$X_T$, T = {8 / th:g}")
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("$X_t$")
    axes[1, 0].set_ylabel("density")
    fig.suptitle("Ornstein–Uhlenbeck: paths from many starting points (top; shaded: ±√(σ²/2θ), "
                 "the stationary std) and where they end up (bottom)")
    fig.tight_layout()
    metrics["ou_stationary_var_rel_err_max"] = max(metrics.values())
    return Study(fig, metrics, "\n".join(lines))


def ou_moments_study(proc: Any, x0: float, n_paths: int, t1: float, n_steps: int,
                     generator: torch.Generator | None = None, device: Any = "cpu") -> Study:
    """``n_paths`` paths of an OU process ``proc`` (θ, σ; closed-form ``variance(t)``) all started at
    ``x0``: their mean and variance over [0, t1] beside x0·e^(−θt) and σ²/2θ·(1 − e^(−2θt))."""
    start = torch.full((n_paths, 1), float(x0), device=device)
    sol = proc.simulate(start, 0.0, t1, n_steps, generator=generator, return_trajectory=True)
    ts = sol.ts.cpu()
    fig = moments_figure(ts, sol.trajectory, x0 * torch.exp(-proc.theta * ts), proc.variance(ts),
                         "$X_0 e^{-θt}$", r"$\frac{\sigma^2}{2\theta}(1 - e^{-2\theta t})$",
                         mean_title=f"mean, X₀ = {x0:g}")
    return Study(fig)


def moments_figure(ts: Any, trajectory: Any, mean: Any, variance: Any, mean_label: str, variance_label: str,
                   mean_title: str = "mean") -> Figure:
    """Mean and variance over paths of a trajectory ``(len(ts), B, d)`` against time (two panels),
    each beside its closed form (``mean``, ``variance``: values at ``ts``, dashed)."""
    tr = torch.as_tensor(trajectory)
    if tr.dim() < 2 or tr.shape[0] != len(ts):
        raise ValueError(f"trajectory must be (len(ts), B, ...), got shape {tuple(tr.shape)} for {len(ts)} times")
    dims = tuple(range(1, tr.dim()))
    t = to_numpy(ts)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, est, ref, label, title in ((axes[0], tr.mean(dim=dims), mean, mean_label, mean_title),
                                       (axes[1], tr.var(dim=dims), variance, variance_label, "variance")):
        ax.plot(t, to_numpy(est), label="simulated")
        ax.plot(t, to_numpy(ref), "k--", label=label)
        ax.set_title(title)
        ax.set_xlabel("t")
        ax.legend()
    fig.tight_layout()
    return fig


def langevin_modes_figure(gmm: Any, exact: torch.Tensor, langevin: torch.Tensor, fractions: torch.Tensor,
                          langevin_title: str = "Langevin from a uniform start, T = 3") -> Figure:
    """Exact samples of a 2D mixture (modes numbered) and Langevin end points, each over the
    mixture's density contours, and the fraction of Langevin points per mode beside the weights.
    ``gmm`` has ``log_prob``, ``means (K, 2)`` and ``weights (K,)``; ``fractions``: ``(K,)``."""
    device = gmm.means.device
    log_prob = lambda p: gmm.log_prob(p.to(device)).cpu()  # noqa: E731 - the density backdrop on a CPU grid
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, pts, color, title in ((axes[0], exact, "tab:blue", "samples from p (modes numbered)"),
                                  (axes[1], langevin, "tab:red", langevin_title)):
        plot_density(log_prob, ax=ax, filled=False, alpha=0.5)
        ax.scatter(*to_numpy(pts).T, s=2, alpha=0.5, color=color)
        ax.set_title(title)
    for i, m in enumerate(gmm.means.cpu()):
        axes[0].text(m[0] + 0.45, m[1] + 0.35, str(i), fontsize=12, weight="bold")
    k = np.arange(len(gmm.weights))
    axes[2].bar(k - 0.2, to_numpy(gmm.weights), width=0.4, label="weights $w_k$")
    axes[2].bar(k + 0.2, to_numpy(fractions), width=0.4, label="Langevin")
    axes[2].set_xlabel("mode k")
    axes[2].set_title("fraction of points per mode")
    axes[2].legend()
    fig.tight_layout()
    return fig


def langevin_mode_study(gmm: Any, n: int, t1: float, n_steps: int, generator: torch.Generator | None = None,
                        device: Any = "cpu", sigma: float = 1.0, box: float = 3.5) -> Study:
    """Langevin dynamics dX = ½σ²∇log p dt + σ dW on a 2D mixture ``gmm`` from ``n`` points uniform
    on [−box, box]², run to ``t1``, against ``n`` exact samples: where each lands
    (:func:`langevin_modes_figure`) and how far the shares per mode
    (:func:`nbhelpers.metrics.toy.posterior_mode_fractions`) are from the weights in total variation.
    Metrics: ``langevin_gmm_mode_fraction_tv``, ``exact_samples_mode_fraction_tv``."""
    start = (torch.rand((n, 2), generator=generator, device=device) * 2 - 1) * box
    end = Langevin(gmm.score, sigma=sigma).simulate(start, 0.0, t1, n_steps, generator=generator).x
    exact = gmm.sample(n, generator=generator)
    frac_lan = posterior_mode_fractions(end, gmm)
    frac_exact = posterior_mode_fractions(exact, gmm)
    fig = langevin_modes_figure(gmm, exact, end, frac_lan, langevin_title=f"Langevin from a uniform start, T = {t1:g}")
    metrics = {"langevin_gmm_mode_fraction_tv": total_variation(frac_lan, gmm.weights),
               "exact_samples_mode_fraction_tv": total_variation(frac_exact, gmm.weights)}
    summary = (f"weights  : {[round(w, 3) for w in gmm.weights.tolist()]}\n"
               f"Langevin : {[round(f, 3) for f in frac_lan.tolist()]}")
    return Study(fig, metrics, summary)
