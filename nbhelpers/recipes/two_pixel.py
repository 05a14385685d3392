"""Notebook 06 (two-pixel DDPM and classifier-free guidance, seed 001): its figures and its guidance explorer.

The "images" are two pixels, x = (left pixel, right pixel), so every density can be drawn.
Figures: one denoising trajectory over the estimated densities of x_k (Q2), sample sets against
the true density (Q3), trajectories over a density; :func:`two_pixel_guidance_explorer` slides
the guidance weight w. The network is :class:`nbhelpers.models.two_pixel.TwoPixelUNet`, the
sampler :class:`nbhelpers.ddpm.DDPM` (k = 0 data, k = T noise).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..plotting import Limits, density_image, panel_grid, sample_density, to_numpy
from ..widgets import show_explorer

__all__ = ["trajectory_density_panels", "samples_vs_truth_rows", "paths_over_density", "draw_two_pixel_guidance",
           "two_pixel_guidance_explorer"]


# --------------------------------------------------------------------------- figures (Q2, Q3)
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


# --------------------------------------------------------------------------- the guidance explorer (section 3)
def draw_two_pixel_guidance(w: float, samples: dict[float, tuple[Any, Any]], log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                            metrics: dict[float, dict[str, float]] | None = None, lim: tuple[float, float] = (-1.5, 1.5),
                            fig: Figure | None = None) -> Figure:
    """Left: two-pixel samples drawn with guidance weight ``w`` over the true density, coloured by
    the requested label. Right (when ``metrics`` are given): accuracy (fraction in the requested
    mode) and spread against w, the chosen w marked.

    ``samples[w] = (x (N, 2), y (N,))``; ``metrics[w] = {"accuracy": …, "spread": …}`` (extra keys ignored).
    """
    if not samples:
        raise ValueError("samples is empty; pass {w: (x, y)} for at least one guidance weight")
    ws = sorted(float(k) for k in samples)
    if isinstance(w, bool) or not isinstance(w, (int, float, np.floating)) or float(w) not in ws:
        raise ValueError(f"w must be one of the sampled guidance weights {ws}, got {w!r}")
    x, y = (torch.as_tensor(v).detach().cpu() for v in {float(k): v for k, v in samples.items()}[float(w)])
    if x.ndim != 2 or x.shape[1] != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"samples[{w}] must be (x (N, 2), y (N,)), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if fig is None:
        fig = plt.figure(figsize=(8.6 if metrics else 4.2, 4.0))
    else:
        fig.clf()
    if metrics:
        ax, ax_m = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    else:
        ax, ax_m = fig.subplots(1, 1), None
    xs, ys, dens = density_image(log_prob_fn, lim, 150)
    ax.contourf(xs, ys, dens, levels=12, cmap="Greys")
    for c in sorted(int(v) for v in y.unique()):
        sel = (y == c).numpy()
        ax.scatter(x[sel, 0].numpy(), x[sel, 1].numpy(), s=3, alpha=0.5, linewidths=0, color=f"C{c}", label=f"y = {c}")
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    ax.grid(False)
    ax.legend(fontsize=8, loc="lower left", markerscale=3)
    ax.set_title(f"guidance w = {float(w):g}", fontsize=10)
    if ax_m is not None:
        mw = sorted(float(v) for v in metrics)
        ms = {float(k): v for k, v in metrics.items()}
        acc = [100 * ms[v]["accuracy"] for v in mw]
        spread = [ms[v]["spread"] for v in mw]
        ax_m.plot(mw, acc, "o-", color="C0")
        ax_m.set_xlabel("guidance weight w")
        ax_m.set_ylabel("in the requested mode (%)", color="C0")
        ax_m.set_ylim(min(acc + [90.0]) - 1, 100.5)
        ax2 = ax_m.twinx()
        ax2.plot(mw, spread, "s--", color="C1")
        ax2.set_ylabel("spread / true spread", color="C1")
        ax2.set_ylim(0, max(spread + [1.2]) * 1.05)
        ax2.axhline(1.0, color="C1", lw=0.8, ls=":")
        ax2.grid(False)
        ax_m.axvline(float(w), color="k", lw=1.0, ls=":")
        if float(w) in ms:
            ax_m.plot([float(w)], [100 * ms[float(w)]["accuracy"]], "o", ms=10, mfc="none", mec="k")
        ax_m.set_title("accuracy and spread against w", fontsize=10)
    fig.tight_layout()
    return fig


def two_pixel_guidance_explorer(samples: dict[float, tuple[Any, Any]], log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                                metrics: dict[float, dict[str, float]] | None = None, w: float = 1.0,
                                interactive: bool | None = None) -> Figure:
    """A slider over the sampled guidance weights redrawing :func:`draw_two_pixel_guidance` (static figure when headless)."""
    ws = sorted(float(k) for k in samples)
    initial = {"w": float(w), "samples": {float(k): v for k, v in samples.items()}, "log_prob_fn": log_prob_fn,
               "metrics": {float(k): v for k, v in metrics.items()} if metrics else None}

    def controls() -> dict[str, Any]:
        import ipywidgets as widgets

        return {"w": widgets.SelectionSlider(options=ws, value=float(w), description="w", continuous_update=False)}

    return show_explorer(draw_two_pixel_guidance, initial, controls, interactive)
