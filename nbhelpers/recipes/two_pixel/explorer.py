"""Notebook 06's guidance explorer: a slider over the sampled guidance weights w (a static figure when headless)."""
from __future__ import annotations

from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ...plotting import density_image, guidance_tradeoff_panel
from ...widgets import show_explorer

__all__ = ["draw_two_pixel_guidance", "two_pixel_guidance_explorer"]


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
        guidance_tradeoff_panel(ax_m, metrics, w, second="spread", accuracy_label="in the requested mode (%)",
                                second_label="spread / true spread", accuracy_floor=90.0, accuracy_pad=1,
                                accuracy_top=100.5, second_floor=1.2, title="accuracy and spread against w")
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
