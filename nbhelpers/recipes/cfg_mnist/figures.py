"""Notebook 07's figures and the guidance explorer.

The schedules and the time input, the forward process, the guidance sweep (diversity, fidelity against
diversity), one generation and when its pixels settle, the edits, DDIM against ancestral sampling; the digit
grids are :func:`nbhelpers.plotting.class_grid_figure`. Every function returns the matplotlib ``Figure``.
:func:`guidance_explorer` is a slider over the sampled weights redrawing :func:`draw_guidance_explorer`.
"""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ...ddpm import DDPM
from ...plotting import class_grid_figure, guidance_tradeoff_panel, tile_images
from ...widgets import show_explorer
from .settle import SettleSummary

__all__ = [
    "forward_process_figure", "schedule_and_time_input_figure", "diversity_figure", "guidance_tradeoff_figure",
    "trajectory_figure", "settling_figure", "edits_figure", "edit_distance_figure", "ddim_vs_ancestral_figure",
    "draw_guidance_explorer", "guidance_explorer",
]


def forward_process_figure(frames: torch.Tensor, steps: Sequence[int], ddpm: DDPM, size: float = 0.85,
                           title: str | None = None):
    """One row per image, one column per step k of :func:`forward_process`; every panel on the
    same grey scale, [−1, 1] (values beyond it are clipped), so the fading of the digit is not
    hidden by per-panel contrast. Column titles give k and √ᾱ_k, the share of the image left."""
    if frames.ndim != 5 or frames.shape[2] != 1 or frames.shape[1] != len(steps):
        raise ValueError(f"frames must have shape (B, {len(steps)}, 1, H, W) for {len(steps)} steps, "
                         f"got {tuple(frames.shape)}")
    B, K = frames.shape[:2]
    sqrt_ab = torch.cat([torch.ones(1, dtype=torch.float64), ddpm.alphas_cumprod.double().cpu().sqrt()])
    fig, axes = plt.subplots(B, K, figsize=(size * K + 0.4, size * B + 0.7), squeeze=False)
    x = frames.detach().float().cpu().clamp(-1, 1)
    for i in range(B):
        for j, k in enumerate(steps):
            ax = axes[i, j]
            ax.imshow(x[i, j, 0].numpy(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(f"k = {int(k)}\n√ᾱ = {sqrt_ab[int(k)].item():.2f}", fontsize=8)
    fig.suptitle(title or f"forward process q(x_k | x_0), T = {ddpm.T}; one ε per row", fontsize=10)
    fig.tight_layout()
    return fig


def schedule_and_time_input_figure(model: nn.Module, T: int, schedule: str) -> Figure:
    """Left: ᾱ_k against k/T for both variants' schedules (cosine, T = 200; linear, T = 1000), ``schedule``
    drawn thicker; right: the time input ``model.time_embed(k / T)`` for k = 0…T, one row per feature."""
    fig, (ax_a, ax_e) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1, 1.3]})
    for name, T_s in (("cosine", 200), ("linear", 1000)):
        ab = DDPM.from_schedule(name, T_s).alphas_cumprod
        ax_a.plot(np.arange(1, T_s + 1) / T_s, ab.numpy(), lw=2.4 if name == schedule else 1.2,
                  label=f"{name}, T = {T_s}" + ("  (this run)" if name == schedule else ""))
    ax_a.set_xlabel("k / T")
    ax_a.set_ylabel("ᾱ_k  (signal kept)")
    ax_a.set_title("noise schedules", fontsize=10)
    ax_a.legend(fontsize=8)
    k_grid = torch.arange(T + 1, device=next(model.parameters()).device)
    with torch.no_grad():
        codes = model.time_embed(k_grid.float() / T).float().cpu().numpy()
    im = ax_e.imshow(codes.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, extent=(0, T, codes.shape[1] - 0.5, -0.5),
                     interpolation="nearest")
    ax_e.set_xlabel("step k")
    ax_e.set_ylabel("feature")
    ax_e.set_title(f"time input of this run: {codes.shape[1]} features of t = k/T", fontsize=10)
    ax_e.grid(False)
    fig.colorbar(im, ax=ax_e, fraction=0.04)
    fig.tight_layout()
    return fig


def diversity_figure(rows: dict[float, dict[str, Any]], weights: Sequence[float] = (0.0, 2.0)) -> Figure:
    """Bars of the within-class diversity relative to real digits, one group per digit: real (= 1) and the
    generated sets at ``weights`` (``rows[w]["diversity_per_class"]``, as :func:`score_samples`)."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    width = 0.26
    xs = np.arange(10)
    ax.bar(xs - width, np.ones(10), width, color="0.6", label="real digits (= 1 by definition)")
    for j, w in enumerate(weights):
        ax.bar(xs + j * width, rows[w]["diversity_per_class"], width, label=f"generated, w = {w:g}")
    ax.set_xticks(xs)
    ax.set_xlabel("digit")
    ax.set_ylabel("diversity / real")
    ax.set_title("within-class diversity: mean pairwise evaluator-feature distance, relative to real digits",
                 fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    fig.tight_layout()
    return fig


def guidance_tradeoff_figure(rows: dict[float, dict[str, Any]]) -> Figure:
    """Class accuracy against within-class diversity, one point per guidance weight, coloured by log₁₀(FD/floor)."""
    ws = list(rows)
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    div = [rows[w]["diversity"] for w in ws]
    acc = [100 * rows[w]["accuracy"] for w in ws]
    ratio = [rows[w]["fd_ratio"] for w in ws]
    ax.plot(div, acc, "-", color="0.7", zorder=1)
    sc = ax.scatter(div, acc, c=np.log10(ratio), cmap="magma_r", s=90, zorder=2, edgecolor="k")
    for i, (w, d, a) in enumerate(zip(ws, div, acc)):  # labels alternate below / above: neighbours may share a height
        ax.annotate(f"w = {w:g}", (d, a), textcoords="offset points", xytext=(7, -12) if i % 2 == 0 else (-8, 9),
                    fontsize=9)
    cb = fig.colorbar(sc, ax=ax)
    cb.set_label("log₁₀ (FD / floor)")
    ax.axvline(1.0, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("within-class diversity / real digits  (→ more varied)")
    ax.set_ylabel("class accuracy (%)  (↑ more faithful)")
    ax.set_title("classifier-free guidance: fidelity against diversity", fontsize=10)
    fig.tight_layout()
    return fig


def _bare(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def trajectory_figure(states: dict[int, torch.Tensor], x0_preds: dict[int, torch.Tensor], final: torch.Tensor,
                      i: int, steps: Sequence[int]) -> Figure:
    """Sample ``i`` of a recorded generation at ``steps``: the state x_k (top) and the prediction x̂₀ at k
    (bottom; the final digit at k = 0). ``states``/``x0_preds`` as ``SampleResult.trajectory``/``x0_preds``."""
    fig, axes = plt.subplots(2, len(steps), figsize=(1.25 * len(steps), 3.0))
    for j, k in enumerate(steps):
        xk = states[k][i, 0]
        x0k = x0_preds[k][i, 0] if k > 0 else final[i, 0]
        axes[0, j].imshow(xk.clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[1, j].imshow(x0k.clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[0, j].set_title(f"k = {k}", fontsize=9)
    for ax in axes.flat:
        _bare(ax)
    axes[0, 0].set_ylabel("x_k", fontsize=9)
    axes[1, 0].set_ylabel("x̂₀ at k", fontsize=9)
    fig.suptitle("one generation, noise (left) to digit (right)", fontsize=10)
    fig.tight_layout()
    return fig


def settling_figure(digit: torch.Tensor, settle: torch.Tensor, summary: SettleSummary) -> Figure:
    """One digit ``(H, W)``, the step at which each of its pixels settles ``(H, W)`` (:func:`settle_steps`), and
    the fraction of ink pixels and coarse blocks settled against k over the batch of ``summary``."""
    T = summary.T
    fig, (ax_d, ax_s, ax_f) = plt.subplots(1, 3, figsize=(11, 3.3), gridspec_kw={"width_ratios": [1, 1.2, 1.8]})
    ax_d.imshow(digit.numpy(), cmap="gray", vmin=-1, vmax=1)
    ax_d.set_title("final digit", fontsize=10)
    im = ax_s.imshow(settle.numpy(), cmap="viridis", vmin=0, vmax=T)
    ax_s.set_title("step k at which each pixel settles", fontsize=10)
    fig.colorbar(im, ax=ax_s, fraction=0.046)
    for ax in (ax_d, ax_s):
        _bare(ax)
    ax_f.plot(summary.steps, summary.fraction_settled, label="ink pixels")
    ax_f.plot(summary.steps, summary.fraction_settled_coarse, label="coarse shape (4×4 blocks)")
    ax_f.axvspan(summary.ink_q10 * T, summary.ink_q90 * T, color="C0", alpha=0.12,
                 label="10–90 % of ink pixels settle")
    ax_f.set_xlim(T, 0)
    ax_f.set_xlabel("step k (generation runs right →)")
    ax_f.set_ylabel("fraction settled")
    ax_f.set_title(f"over {summary.n} digits", fontsize=10)
    ax_f.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def edits_figure(images: torch.Tensor, labels: torch.Tensor, new_labels: torch.Tensor,
                 edits: dict[float, tuple[torch.Tensor, torch.Tensor]], n_show: int = 5) -> Figure:
    """``n_show`` originals (evenly spaced over the batch), each followed by its edits at every t0: with the own
    label (left) and with the new one (right)."""
    t0s = list(edits)
    n_show = min(n_show, len(labels))
    pick = torch.linspace(0, len(labels) - 1, n_show).round().long()
    panel_same = torch.cat([torch.stack([images[i]] + [edits[f][0][i] for f in t0s]) for i in pick])
    panel_new = torch.cat([torch.stack([images[i]] + [edits[f][1][i] for f in t0s]) for i in pick])
    steps = ", ".join(f"{f:g}" for f in t0s)
    return class_grid_figure([panel_same, panel_new],
                             [f"own label: original, t₀ = {steps}", f"label + 1: original, t₀ = {steps}"],
                             per_row=len(t0s) + 1, size=0.7,
                             row_labels=[f"{int(labels[i])} → {int(labels[i])}/{int(new_labels[i])}" for i in pick])


def edit_distance_figure(rows: dict[float, dict[str, Any]], ref_same: float, ref_diff: float) -> Figure:
    """Left: RMS distance of the edits to the originals against t0 (mean ± s.d.) beside the distance between two
    real digits of the same and of different classes; right: what the evaluator reads in the edits."""
    t0s = list(rows)
    fig, (ax_d, ax_c) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key_, label in (("rms_same", "own label"), ("rms_new", "label + 1")):
        m = [rows[f][key_].mean().item() for f in t0s]
        s = [rows[f][key_].std().item() for f in t0s]
        ax_d.errorbar(t0s, m, yerr=s, marker="o", capsize=3, label=label)
    ax_d.axhline(ref_same, color="0.4", ls="--", lw=1, label="two real digits, same class")
    ax_d.axhline(ref_diff, color="0.4", ls=":", lw=1, label="two real digits, different class")
    ax_d.set_xlabel("t₀ = k₀ / T")
    ax_d.set_ylabel("RMS distance to the original")
    ax_d.set_title("how far an edit moves a digit", fontsize=10)
    ax_d.legend(fontsize=8)
    ax_c.plot(t0s, [100 * rows[f]["acc_same"] for f in t0s], "o-", label="own label: reads as own digit")
    ax_c.plot(t0s, [100 * rows[f]["acc_new"] for f in t0s], "s-", label="label + 1: reads as the new digit")
    ax_c.plot(t0s, [100 * rows[f]["still_original"] for f in t0s], "^--",
              label="label + 1: still reads as the original")
    ax_c.set_xlabel("t₀ = k₀ / T")
    ax_c.set_ylabel("% of edits")
    ax_c.set_ylim(-3, 103)
    ax_c.set_title("what the evaluator reads", fontsize=10)
    ax_c.legend(fontsize=8)
    fig.tight_layout()
    return fig


def ddim_vs_ancestral_figure(rows: dict[str, dict[str, Any]], guidance_w: float, T: int) -> Figure:
    """Class accuracy (left) and FD/floor (right) against network calls per sample: DDIM at each step count,
    ancestral sampling with all T steps as a star (``rows`` of :func:`score_sets`)."""
    fig, (ax_a, ax_f) = plt.subplots(1, 2, figsize=(10, 3.5))
    ddim_names = [n for n in rows if n.startswith("DDIM")]
    for ax, key_, label in ((ax_a, "accuracy", "class accuracy (%)"), (ax_f, "fd_ratio", "FD / floor")):
        scale = 100 if key_ == "accuracy" else 1
        ax.plot([rows[n]["nfe"] for n in ddim_names], [scale * rows[n][key_] for n in ddim_names], "o-",
                label="DDIM (η = 0)")
        ax.plot([rows["ancestral"]["nfe"]], [scale * rows["ancestral"][key_]], "*", ms=14,
                label=f"ancestral, all T = {T}")
        for n in ddim_names:
            ax.annotate(n.split("-")[1], (rows[n]["nfe"], scale * rows[n][key_]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per sample")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    ax_a.set_title(f"fidelity at w = {guidance_w:g}", fontsize=10)
    ax_f.set_title("distance to real digits", fontsize=10)
    fig.tight_layout()
    return fig


def draw_guidance_explorer(w: float, samples: dict[float, Any], metrics: dict[float, dict[str, float]] | None = None,
                           per_class: int = 8, num_classes: int = 10, fig: Figure | None = None) -> Figure:
    """Left: digits drawn with classifier-free guidance weight ``w`` (row = requested digit).
    Right (when ``metrics`` are given): class accuracy and within-class diversity (relative to real
    digits) against w, with the chosen w marked.

    ``samples[w]``: ``(N, 1, H, W)`` in [−1, 1] ordered by requested class, N / num_classes per class;
    ``metrics[w]``: ``{"accuracy": …, "diversity": …}`` (any extra keys are ignored).
    """
    if not samples:
        raise ValueError("samples is empty; pass {w: images} for at least one guidance weight")
    ws = sorted(float(k) for k in samples)
    if isinstance(w, bool) or not isinstance(w, (int, float, np.floating)) or float(w) not in ws:
        raise ValueError(f"w must be one of the sampled guidance weights {ws}, got {w!r}")
    x = torch.as_tensor(samples[float(w)]).detach().float().cpu()
    if x.ndim != 4 or x.shape[0] % num_classes:
        raise ValueError(f"samples[{w}] must be (N, C, H, W) with N a multiple of num_classes={num_classes}, got {tuple(x.shape)}")
    n_per = x.shape[0] // num_classes
    k = min(per_class, n_per)
    H, W = x.shape[-2:]
    first_k = torch.tensor([c * n_per + j for c in range(num_classes) for j in range(k)])  # row = class
    canvas = tile_images(x[first_k, :1], k)[..., 0]
    if fig is None:
        fig = plt.figure(figsize=(8.5 if metrics else 4.0, 4.2))
    else:
        fig.clf()
    if metrics:
        ax_img, ax_m = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    else:
        ax_img, ax_m = fig.subplots(1, 1), None
    ax_img.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_img.set_xticks([])
    ax_img.set_yticks([c * (H + 2) + 1 + H / 2 for c in range(num_classes)])
    ax_img.set_yticklabels([str(c) for c in range(num_classes)])
    ax_img.grid(False)
    ax_img.set_title(f"guidance w = {float(w):g}", fontsize=10)
    if ax_m is not None:
        guidance_tradeoff_panel(ax_m, metrics, w, second="diversity", accuracy_label="class accuracy (%)",
                                second_label="within-class diversity / real digits", accuracy_floor=50.0,
                                accuracy_pad=2, accuracy_top=101, second_floor=1.1,
                                title="quality (accuracy) against diversity")
    fig.tight_layout()
    return fig


def guidance_explorer(samples: dict[float, Any], metrics: dict[float, dict[str, float]] | None = None, w: float = 2.0,
                      per_class: int = 8, interactive: bool | None = None) -> Figure:
    """A slider over the sampled guidance weights redrawing :func:`draw_guidance_explorer` (static figure when headless)."""
    ws = sorted(float(k) for k in samples)
    initial = {"w": float(w), "samples": {float(k): v for k, v in samples.items()},
               "metrics": {float(k): v for k, v in metrics.items()} if metrics else None, "per_class": per_class}

    def controls() -> dict[str, Any]:
        import ipywidgets as widgets

        return {"w": widgets.SelectionSlider(options=ws, value=float(w), description="w", continuous_update=False)}

    return show_explorer(draw_guidance_explorer, initial, controls, interactive)
