"""Notebook 06's figures: the data and its true density, the cosine schedule for several T, loss curves, one
denoising trajectory over the estimated densities of x_k (Q2), sample sets against the true density (Q3) and
trajectories over a density (Q4). Each draws what it is handed and returns the figure; none saves it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ...ddpm import DDPM
from ...distributions import GaussianMixture
from ...plotting import Limits, density_image, loss_curve, panel_grid, plot_density, sample_density, to_numpy
from .studies import SameNoise

__all__ = ["world_figure", "schedules_figure", "loss_curves_figure", "same_noise_figure", "trajectory_density_panels",
           "samples_vs_truth_rows", "paths_over_density"]


def world_figure(gmm: GaussianMixture, x: torch.Tensor, labels: torch.Tensor) -> Figure:
    """Left: the true density; right: samples ``x (N, 2)`` coloured by their ``labels (N,)``, with the diagonal
    (left pixel = right pixel) that separates the two classes."""
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4))
    plot_density(gmm.log_prob, ax=axes[0], lim=(-1.5, 1.5))
    axes[0].set_title("true PDF")
    for c in (0, 1):
        sel = labels == c
        axes[1].scatter(x[sel, 0], x[sel, 1], s=3, alpha=0.5, color=f"C{c}", label=f"y = {c}")
    axes[1].plot([-1.5, 1.5], [-1.5, 1.5], "k:", lw=0.8)
    axes[1].set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", xlabel="left pixel", ylabel="right pixel",
                title=f"{len(x)} images and their labels")
    axes[1].legend(markerscale=4)
    fig.tight_layout()
    return fig


def schedules_figure(T_list: Sequence[int], schedule: str = "cosine") -> Figure:
    """ᾱ_k (left) and β_k (right, log scale) of ``schedule`` against t = k / T, one curve per T."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for Tn in T_list:
        d = DDPM.from_schedule(schedule, Tn)
        k = np.arange(1, Tn + 1)
        axes[0].plot(k / Tn, d.alphas_cumprod.numpy(), "o-", ms=3, label=f"T = {Tn}")
        axes[1].semilogy(k / Tn, d.betas.numpy(), "o-", ms=3, label=f"T = {Tn}")
    axes[0].set(xlabel="t = k / T", ylabel="ᾱ_k", title="signal kept: the same curve for every T")
    axes[1].set(xlabel="t = k / T", ylabel="β_k", title="noise added per step: larger when T is small")
    axes[0].legend()
    fig.tight_layout()
    return fig


def loss_curves_figure(losses: dict[str, Sequence[float]], smooth: int = 100,
                       title: str = "ε-loss (moving averages of 100 steps)") -> Figure:
    """Moving averages of several loss histories (``{label: losses}``) on one axis; the raw curves are hidden."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, values in losses.items():
        loss_curve(values, smooth=smooth, ax=ax, title=title, label=label)
    for line in ax.lines[::2]:
        line.set_alpha(0.0)  # keep the moving averages only
    ax.legend()
    fig.tight_layout()
    return fig


def same_noise_figure(q4: SameNoise, x_T: torch.Tensor, log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                      n: int = 3) -> Figure:
    """The first ``n`` starting points of Q4, one panel each: the y = 0 and y = 1 paths over the true density."""
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2))
    for i, ax in enumerate(axes):
        paths_over_density([q4.paths[0][:, i], q4.paths[1][:, i]], log_prob_fn, colors=["C0", "C1"],
                           labels=["y = 0 (left darker)", "y = 1 (left lighter)"], ax=ax)
        ax.set_title(f"start x_T = {x_T[i].cpu().numpy().round(2)}", fontsize=10)
    fig.tight_layout()
    return fig


def _density_backdrop(ax: Axes, log_prob_fn: Callable[[torch.Tensor], torch.Tensor], lim: Limits,
                      filled: bool = True, n: int = 150) -> None:
    xs, ys, dens = density_image(log_prob_fn, lim, n)
    if filled:  # log-density bands down to e^-8 of the peak: narrow modes stay visible as discs, not dots
        with np.errstate(divide="ignore"):
            logd = np.log(dens)
        top = float(np.nanmax(logd))
        ax.contourf(xs, ys, np.clip(logd, top - 8.0, None), levels=np.linspace(top - 8.0, top, 9),
                    cmap="Greys", extend="neither")
    else:
        ax.contour(xs, ys, dens, levels=6, colors="w", linewidths=0.7, linestyles="--")


def _square(ax: Axes, lim: Limits, pixel_labels: bool = False) -> None:
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    ax.grid(False)
    if pixel_labels:  # the two-pixel world of notebook 06: x = (left pixel, right pixel)
        ax.set_xlabel("left pixel", fontsize=8)
        ax.set_ylabel("right pixel", fontsize=8)


def trajectory_density_panels(step_samples: dict[int, Any], path: dict[int, Any],
                              true_log_prob: Callable[[torch.Tensor], torch.Tensor],
                              step_log_probs: dict[int, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                              lim: Limits = (-3.0, 3.0), bins: int = 80, size: float = 2.8) -> Figure:
    """One denoising trajectory over the estimated densities of x_k (seed 001, Q2).

    One panel per step k of ``step_samples`` (``{k: (N, 2)}``, largest k first): the density of
    x_k estimated from the samples (:func:`sample_density`), the path from its start down to k
    (white line, current point ●) and, when ``step_log_probs[k]`` is given, the exact density of
    x_k as dashed contours. A last panel shows the whole path over ``true_log_prob`` (the data).
    ``path``: ``{k: (2,)}`` for every step from the start down to 0.
    """
    if not step_samples:
        raise ValueError("step_samples is empty; pass {k: (N, 2) samples of x_k}")
    ks = sorted(step_samples, reverse=True)
    order = sorted(path, reverse=True)
    pts = np.stack([to_numpy(path[k]).reshape(2) for k in order])
    fig, axes = panel_grid(len(ks) + 1, ncols=len(ks) + 1, size=size)
    for ax, k in zip(axes, ks):
        xs, ys, dens = sample_density(step_samples[k], lim, bins)
        ax.pcolormesh(xs, ys, dens, cmap="viridis", shading="auto")
        if step_log_probs is not None and k in step_log_probs:
            _density_backdrop(ax, step_log_probs[k], lim, filled=False)
        upto = [i for i, kk in enumerate(order) if kk >= k]
        if upto:
            seg = pts[: upto[-1] + 1]
            ax.plot(seg[:, 0], seg[:, 1], color="w", lw=1.0)
            ax.plot(seg[-1, 0], seg[-1, 1], "o", color="tab:red", ms=5, mec="w")
        _square(ax, lim, pixel_labels=True)
        ax.set_title(f"estimated p(x_k), k = {k}", fontsize=9)
    ax = axes[-1]
    _density_backdrop(ax, true_log_prob, lim)
    ax.plot(pts[:, 0], pts[:, 1], color="tab:blue", lw=1.0)
    ax.plot(pts[0, 0], pts[0, 1], "o", mfc="none", mec="tab:blue", ms=6)
    ax.plot(pts[-1, 0], pts[-1, 1], "o", color="tab:red", ms=5)
    _square(ax, lim, pixel_labels=True)
    ax.set_title("whole path over the true p(x_0)\n(grey: log-density, 8 bands)", fontsize=9)
    fig.tight_layout()
    return fig


def samples_vs_truth_rows(samples: dict[str, Any], log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                          lim: Limits = (-1.5, 1.5), bins: int = 80, size: float = 3.0,
                          notes: dict[str, str] | None = None, s: float = 1.5) -> Figure:
    """One row per sample set (seed 001, Q3): left the samples scattered over the true density,
    right the density estimated from the samples (:func:`sample_density`, shared colour scale).
    ``samples``: ``{row label: (N, 2)}``; ``notes``: optional text per row for the left title."""
    if not samples:
        raise ValueError("samples is empty; pass {label: (N, 2) samples}")
    labels = list(samples)
    dens = [sample_density(samples[k], lim, bins) for k in labels]
    vmax = max(float(d[2].max()) for d in dens)
    fig, axes = plt.subplots(len(labels), 2, figsize=(2 * size + 0.6, size * len(labels)), squeeze=False)
    for r, label in enumerate(labels):
        p = to_numpy(samples[label])
        ax = axes[r, 0]
        _density_backdrop(ax, log_prob_fn, lim)
        ax.scatter(p[:, 0], p[:, 1], s=s, color="tab:red", alpha=0.35, linewidths=0)
        _square(ax, lim)
        note = f"\n{notes[label]}" if notes and label in notes else ""
        ax.set_title(f"{label}: samples over the true PDF{note}", fontsize=9)
        ax = axes[r, 1]
        xs, ys, d = dens[r]
        ax.pcolormesh(xs, ys, d, cmap="viridis", shading="auto", vmin=0, vmax=vmax)
        _square(ax, lim)
        ax.set_title(f"{label}: estimated PDF", fontsize=9)
    fig.tight_layout()
    return fig


def paths_over_density(paths: Sequence[Any], log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                       colors: Sequence[Any] | None = None, labels: Sequence[str] | None = None,
                       ax: Axes | None = None, lim: Limits = (-3.0, 3.0), lw: float = 1.2) -> Figure:
    """Trajectories ``(S, 2)`` (first row = start) drawn over a true density; start ○, end ●."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
    else:
        fig = ax.figure
    _density_backdrop(ax, log_prob_fn, lim)
    for i, path in enumerate(paths):
        p = to_numpy(path)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"each path must have shape (S, 2), got {p.shape}")
        c = colors[i] if colors is not None else f"C{i}"
        ax.plot(p[:, 0], p[:, 1], color=c, lw=lw, label=labels[i] if labels is not None else None)
        ax.plot(p[0, 0], p[0, 1], "o", mfc="none", mec=c, ms=7)
        ax.plot(p[-1, 0], p[-1, 1], "o", color=c, ms=6, mec="k")
    _square(ax, lim, pixel_labels=True)
    if labels is not None:
        ax.legend(fontsize=8, loc="lower left")
    return fig
