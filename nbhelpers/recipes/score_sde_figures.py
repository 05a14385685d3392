"""Notebook 05's figures (score-based models): the Q1 samples, the Q4 loss against the exact score's, the Q5
trajectories and snapshots, the VP-SDE's SDE-vs-ODE study, task 5b's losses, σ sweep and equal-NFE study, and
Part II's score-vs-flow agreement and image σ sweep. Each draws what it is handed (the rows of the studies of
:mod:`nbhelpers.recipes.score_sde`) and returns the figure; none saves it.

Time as in :mod:`nbhelpers.recipes.score_sde`: the VP-SDE runs from t = 1 (noise) down to t ≈ 0 (data).
"""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..plotting import image_grid, loss_curve, plot_trajectories_2d, scatter_panels
from .score_sde import SIGMA_SHAPES, FlowScoreMethod, VPMethod

__all__ = ["samples_figure", "loss_floor_figure", "trajectories_figure", "snapshots_figure", "vp_nfe_figure",
           "flow_score_losses_figure", "sigma_samples_figure", "sigma_sweep_figure", "flowscore_nfe_figure",
           "agreement_figure", "image_sigma_samples_figure", "image_sigma_sweep_figure"]


def _square_axes(axes: Any, lim: tuple[float, float] = (-4, 4)) -> None:
    for ax in axes:
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")


def samples_figure(x_gauss: Tensor, x_gmm: Tensor, labels: Tensor) -> Figure:
    """Q1: samples of N(0, I) beside samples of the mixture, coloured by their mode."""
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 4.2))
    axes[0].scatter(*x_gauss.T, s=1, alpha=0.3)
    axes[0].set_title(f"{len(x_gauss):,} samples of N(0, I)")
    axes[1].scatter(*x_gmm.T, s=1, alpha=0.3, c=labels, cmap="tab10", vmin=0, vmax=9)
    axes[1].set_title(f"{len(x_gmm):,} samples of the mixture")
    _square_axes(axes)
    fig.tight_layout()
    return fig


def loss_floor_figure(losses: Any, floor: float, title: str) -> Figure:
    """A training loss (smoothed over 100 steps) with the dashed loss of the exact score, the lowest reachable."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    loss_curve(losses, smooth=100, ax=ax, logy=False, title=title)
    ax.axhline(floor, color="k", ls="--", lw=1, label=f"exact score: {floor:.3f}")
    ax.set_ylim(floor - 0.1, max(1.05, floor + 0.4))
    ax.legend()
    fig.tight_layout()
    return fig


def trajectories_figure(traj: Tensor, data: Tensor, t_min: float, n_show: int = 12) -> Figure:
    """Q5: the endpoints over the data, every trajectory, and ``n_show`` of them coloured by t.

    ``traj`` is ``(n_steps + 1, B, 2)`` from t = 1 down to ``t_min`` (VP-SDE time)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.7))
    axes[0].scatter(*data.T, s=2, color="grey", alpha=0.3, label="data")
    axes[0].scatter(*traj[-1].T, s=3, color="C3", label="sampled endpoints")
    axes[0].set_title(f"endpoints of the {traj.shape[1]} trajectories over the data")
    axes[0].legend(loc="lower right", fontsize=8, markerscale=3)
    plot_trajectories_2d(traj, ax=axes[1], max_paths=traj.shape[1], lw=0.1, alpha=0.04, mark_ends=False)
    axes[1].scatter(*traj[-1].T, s=1, color="C3", label="t ≈ 0 (data)")
    axes[1].set_title(f"all {traj.shape[1]} full trajectories")
    axes[1].legend(loc="lower right", fontsize=8, markerscale=4)
    tcol = np.broadcast_to(np.linspace(1.0, t_min, traj.shape[0])[:, None], traj.shape[:2])[:, :n_show]
    sc = axes[2].scatter(traj[:, :n_show, 0], traj[:, :n_show, 1], c=tcol, cmap="viridis", s=0.6)
    axes[2].scatter(*traj[-1, :n_show].T, s=25, color="C3", zorder=3, label="endpoint")
    fig.colorbar(sc, ax=axes[2], fraction=0.046, label="t")
    axes[2].set_title(f"{n_show} trajectories, coloured by t")
    axes[2].legend(loc="lower right", fontsize=8)
    _square_axes(axes)
    fig.tight_layout()
    return fig


def snapshots_figure(traj: Tensor, t_min: float, times: Sequence[float]) -> Figure:
    """The reverse trajectories' states nearest to each of ``times`` (grid from t = 1 down to ``t_min``)."""
    ts = torch.linspace(1.0, t_min, traj.shape[0])
    return scatter_panels([traj[int((ts - s).abs().argmin())] for s in times], [f"reverse, t = {s:g}" for s in times],
                          s=2, alpha=0.5, size=2.6, lim=(-4, 4), colors=["C3"] * len(times))


def vp_nfe_figure(study: dict[tuple[VPMethod, str, int], dict[str, float]], nfe_grid: Sequence[int], band: float, true_loglik: float) -> Figure:
    """Energy ratio (log-log) and log-likelihood against NFE for :attr:`VPNfeStudy.rows`, learned score
    solid and exact score dashed; the grey band is a perfect sampler's ± ``band``."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for m, color in zip(VPMethod, ["C3", "C0", "C2"]):
        for which, ls in [("learned", "-"), ("exact", "--")]:
            axes[0].loglog(nfe_grid, [study[m, which, n]["ratio"] for n in nfe_grid], ls, color=color, marker="o",
                           ms=3, label=f"{m.label}, {which}")
            axes[1].semilogx(nfe_grid, [study[m, which, n]["loglik"] for n in nfe_grid], ls, color=color,
                             marker="o", ms=3)
    axes[0].axhspan(max(1 - band, 0.3), 1 + band, color="grey", alpha=0.2, label="perfect sampler ±2 s.e.")
    axes[0].axhline(1, color="k", lw=0.8, ls=":")
    axes[0].set_ylabel("energy distance / floor")
    axes[1].axhline(true_loglik, color="k", lw=0.8, ls=":", label="true samples")
    axes[1].set_ylabel("mean log p_data(samples)")
    axes[1].set_ylim(true_loglik - 1.5, true_loglik + 0.3)
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("network evaluations (NFE)")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle("VP-SDE: reverse SDE vs probability-flow ODE at equal NFE")
    fig.tight_layout()
    return fig


def flow_score_losses_figure(flow_losses: Any, score_losses: Any) -> Figure:
    """The two training losses of :func:`train_flow_and_score`, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    loss_curve(flow_losses, smooth=100, ax=axes[0], logy=False, title="flow model (flow matching)")
    loss_curve(score_losses, smooth=100, ax=axes[1], logy=False, title="score model (β²-weighted score matching)")
    axes[0].set_ylim(1.7, 3.5)
    axes[1].set_ylim(0.0, 1.2)
    fig.tight_layout()
    return fig


def sigma_samples_figure(samples: dict, sigmas: Sequence[float], which: str = "learned", n: int = 2000) -> Figure:
    """One panel per shape (rows) and σ (columns) of the σ sweep's samples (notebook 05) of the fields ``which``."""
    panels = [samples[which, sh, s][:n] for sh in SIGMA_SHAPES for s in sigmas]
    return scatter_panels(panels, [f"{sh}, σ = {s:g}" for sh in SIGMA_SHAPES for s in sigmas], ncols=len(sigmas),
                          s=2, alpha=0.4, size=2.5, colors=["C3"] * len(panels),
                          suptitle=f"{which} u and s: samples for each σ (top: constant σ_t, bottom: σ_t = σ(1 − t))")


def sigma_sweep_figure(sweep: dict, sigmas: Sequence[float], band: float, n_steps: int) -> Figure:
    """Energy ratio, largest mode-weight error and log-likelihood against σ for the σ sweep's scores (notebook 05)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    styles = {("learned", "constant"): ("C3", "o-"), ("learned", "vanishing"): ("C1", "o-"),
              ("exact", "constant"): ("C0", "s--"), ("exact", "vanishing"): ("C2", "s--")}
    for (which, shape), (color, ls) in styles.items():
        lab = f"{which}, {shape} σ_t"
        axes[0].plot(sigmas, [sweep[which, shape, s].energy_ratio for s in sigmas], ls, color=color, label=lab)
        axes[1].plot(sigmas, [sweep[which, shape, s].max_weight_error for s in sigmas], ls, color=color, label=lab)
        axes[2].plot(sigmas, [sweep[which, shape, s].log_likelihood for s in sigmas], ls, color=color, label=lab)
    axes[0].axhspan(max(1 - band, 0.0), 1 + band, color="grey", alpha=0.2, label="perfect sampler ±2 s.e.")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("energy distance / floor")
    axes[1].axhline(0.02, color="k", lw=0.8, ls=":")
    axes[1].set_ylabel("max |mode weight error|")
    axes[2].axhline(sweep["exact", "constant", sigmas[0]].true_log_likelihood, color="k", lw=0.8, ls=":",
                    label="true samples")
    axes[2].set_ylabel("mean log p_data(samples)")
    for ax in axes:
        ax.set_xlabel("σ")
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle(f"dX = [u + σ_t²/2 · s] dt + σ_t dW, {n_steps} Euler–Maruyama steps")
    fig.tight_layout()
    return fig


def flowscore_nfe_figure(study: dict[tuple[FlowScoreMethod, int], dict[str, float]], nfe_grid: Sequence[int], band: float, true_loglik: float) -> Figure:
    """Energy ratio and log-likelihood against NFE for :attr:`FlowScoreNfeStudy.rows`."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for m in dict.fromkeys(k[0] for k in study):
        axes[0].loglog(nfe_grid, [study[m, n]["ratio"] for n in nfe_grid], "o-", ms=3, label=m.label)
        axes[1].semilogx(nfe_grid, [study[m, n]["loglik"] for n in nfe_grid], "o-", ms=3, label=m.label)
    axes[0].axhspan(max(1 - band, 0.3), 1 + band, color="grey", alpha=0.2, label="perfect sampler ±2 s.e.")
    axes[0].set_ylabel("energy distance / floor")
    axes[1].axhline(true_loglik, color="k", lw=0.8, ls=":", label="true samples")
    axes[1].set_ylabel("mean log p_data(samples)")
    for ax in axes:
        ax.set_xlabel("network evaluations (NFE)")
        ax.legend(fontsize=7)
    fig.suptitle("learned flow + score: SDE vs ODE at equal NFE")
    fig.tight_layout()
    return fig


def agreement_figure(t_grid: Tensor, agreement: Sequence[float]) -> Figure:
    """:func:`score_flow_agreement` against t."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(t_grid, agreement, "o-")
    ax.set(xlabel="t", ylabel="‖s_θ − s(u_θ)‖ / ‖s_θ‖", title="score network vs the score implied by the flow network")
    return fig


def image_sigma_samples_figure(samples: dict, settings: Sequence[tuple[str, float]], n: int = 12) -> Figure:
    """``n`` digits of each setting of :func:`image_sigma_sweep`, one row per (shape, σ)."""
    return image_grid(torch.cat([samples[k][:n] for k in settings]), nrow=n, size=0.55,
                      row_labels=[f"{sh}, σ = {s:g}" for sh, s in settings],
                      title=f"the same starting noise under each σ (rows) — {n} samples each")


def image_sigma_sweep_figure(results: dict, sigmas: Sequence[float], bars: Any) -> Figure:
    """Recognised fraction, FD over its floor and class imbalance against σ for :func:`image_sigma_sweep`."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    for shape, style in (("constant", "o-"), ("vanishing", "s--")):
        res = [results[shape, s] for s in sigmas]
        axes[0].plot(sigmas, [100 * r.recognised_fraction for r in res], style, label=shape)
        axes[1].plot(sigmas, [r.fd_ratio for r in res], style, label=shape)
        axes[2].plot(sigmas, [100 * (r.class_max - r.class_min) for r in res], style, label=shape)
    axes[0].axhline(100 * bars.min_recognised, color="k", ls=":", lw=1)
    axes[1].axhline(bars.max_fd_ratio, color="k", ls=":", lw=1)
    axes[1].set_yscale("log")
    axes[0].set(xlabel="σ", title="recognised (%)")
    axes[1].set(xlabel="σ", title="classifier FD / real-vs-real floor")
    axes[2].set(xlabel="σ", title="class imbalance: max − min share (points)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
