"""Notebook 05 (score-based models): the VP-SDE's reverse sampler built from one step, the studies and figures.

* :func:`reverse_sample` — the reverse-time VP-SDE integrated from t = 1 down to ``t_min`` by a one-step
  function ``step(sde, score_fn, x, t, dt, generator)`` (the notebook's exercise, or the library's step);
  with the library's step it is exactly ``nb.solvers.euler_maruyama(sde.reverse(score_fn), …)``.
* :class:`TruthJudge` — 2D samples scored against the true mixture (energy distance over its noise floor,
  mode weights, log-likelihood), one reference draw for every table, recorded in the run.
* Part I: the Q1/Q4/Q5 figures; the VP-SDE's SDE-vs-ODE study (:func:`vp_nfe_study`); task 5b in 2D — the flow
  and score MLPs (:func:`train_flow_and_score`), the σ sweep's figures and summaries (the sweep itself is a loop in notebook 05) and the equal-NFE study
  (:func:`flowscore_nfe_study`), each with its figure.
* Part II (MNIST): the agreement of the score UNet with the score read from the flow UNet
  (:func:`score_flow_agreement`) and the σ sweep on images (:func:`image_sigma_sweep`), with their figures.

Time: the VP-SDE keeps Song's direction (**t = 0 data, t = 1 noise**, :class:`nbhelpers.sde.VPSDE`); task 5b and
Part II use the flow convention of :mod:`nbhelpers.paths` (**t = 0 noise, t = 1 data**, linear path).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..checkpoints import checkpoint_path
from ..dryrun import budget
from ..losses import flow_matching_loss, score_matching_loss
from ..metrics.toy import NoiseFloor, SampleScore, score_against_truth
from ..models.mlp import ScoreFromNoise, TimeMLP
from ..paths import GaussianPath
from ..plotting import image_grid, loss_curve, plot_trajectories_2d, scatter_panels
from ..sde import FlowScoreSDE
from ..solvers import Solution, euler, euler_maruyama, heun, sample_from_noise, time_grid
from ..training import TrainConfig, TrainResult, train

__all__ = ["reverse_sample", "TruthJudge", "samples_figure", "loss_floor_figure", "trajectories_figure",
           "snapshots_figure", "VP_METHODS", "vp_sample", "vp_nfe_study", "vp_nfe_figure", "vp_nfe_summary",
           "FlowAndScore",
           "train_flow_and_score", "flow_score_losses_figure", "SIGMA_SHAPES", "sigma_settings",
           "sigma_samples_figure", "sigma_sweep_figure", "sigma_sweep_summary", "sweep_table", "flowscore_nfe_study",
           "flowscore_nfe_figure", "flowscore_nfe_summary",
           "score_flow_agreement", "agreement_figure", "image_sigma_sweep", "image_sigma_samples_figure",
           "image_sigma_sweep_figure", "image_sweep_summary"]

Step = Callable[..., Tensor]


def reverse_sample(step: Step, sde: Any, score_fn: Callable[[Tensor, Tensor], Tensor], x1: Tensor, t_min: float,
                   n_steps: int, generator: torch.Generator | None = None,
                   return_trajectory: bool = False) -> Solution:
    """Integrate the reverse VP-SDE dX = [f − g² s] dt + g dW̄ from t = 1 down to ``t_min`` in ``n_steps`` steps.

    Each step is ``step(sde, score_fn, x, t, dt, generator)`` with ``t`` the step's start, shape ``(B,)``, and
    ``dt = t_i − t_{i+1} > 0`` a 0-d tensor in x's dtype; the grid is :func:`nbhelpers.solvers.time_grid`
    (1, t_min, n_steps) in x's dtype, as in :func:`nbhelpers.solvers.euler_maruyama`, so the library's step
    reproduces that solver exactly.
    In a dry run (``$NBHELPERS_MAX_STEPS``) a network behind ``score_fn`` is capped like the solvers' fields.
    Shapes: x1 (B, ...); returns a :class:`~nbhelpers.solvers.Solution` (trajectory (n_steps + 1, B, ...) when asked).
    """
    if not callable(step) or not callable(score_fn):
        raise ValueError(f"step and score_fn must be callables, got {step!r} and {score_fn!r}")
    if not isinstance(x1, Tensor) or x1.ndim < 1 or not x1.is_floating_point():
        raise ValueError(f"x1 must be a floating-point tensor (B, ...), got {type(x1).__name__}")
    if not 0.0 <= float(t_min) < 1.0:
        raise ValueError(f"t_min must lie in [0, 1), got {t_min!r}")
    ts = time_grid(1.0, t_min, n_steps, x1)
    score = budget(score_fn)
    x, traj = x1, [x1] if return_trajectory else None
    with torch.no_grad():
        for i in range(len(ts) - 1):
            x = step(sde, score, x, ts[i].expand(x.shape[0]), ts[i] - ts[i + 1], generator)
            if traj is not None:
                traj.append(x)
    return Solution(x, ts, torch.stack(traj) if traj is not None else None, len(ts) - 1)


# --------------------------------------------------------------------------- scoring 2D samples against the truth
@dataclass(frozen=True)
class TruthJudge:
    """Scores 2D sample sets against a true mixture, every one against the same reference draw (``ref_seed``).

    The energy distance is in units of ``floor`` (:func:`nbhelpers.metrics.energy_noise_floor` at set size
    ``n_set``), so equal samples get equal scores in every table of the notebook.
    """

    truth: Any
    floor: NoiseFloor
    n_set: int
    ref_seed: int

    def ratio_se(self, n_total: int) -> float:
        """The standard error of a perfect sampler's energy ratio over ``n_total // n_set`` sets."""
        return self.floor.std / self.floor.mean / np.sqrt(n_total // self.n_set)

    def score(self, x: Tensor) -> SampleScore:
        """``x (N, 2)`` scored by :func:`nbhelpers.metrics.score_against_truth` (sets of ``n_set``)."""
        return score_against_truth(x.cpu(), self.truth, generator=torch.Generator().manual_seed(self.ref_seed),
                                   n=self.n_set, floor=self.floor)

    def record(self, run: Any, name: str, x: Tensor, perfect_se: bool = True) -> SampleScore:
        """Score ``x``, report every number as ``<name>/<key>`` (and the perfect sampler's s.e. when
        ``perfect_se``), save the samples with their reference draw, and return the score."""
        score = self.score(x)
        for k, v in score.as_dict().items():
            run.report(f"{name}/{k}", v)
        run.save_samples(name, samples=x.cpu(), reference=score.reference)
        if perfect_se:
            run.report(f"{name}/energy_ratio_se_perfect", self.ratio_se(len(x)))
        return score


def _square_axes(axes: Any, lim: tuple[float, float] = (-4, 4)) -> None:
    for ax in axes:
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")


# --------------------------------------------------------------------------- Q1, Q4, Q5 figures
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


# --------------------------------------------------------------------------- the VP-SDE: SDE vs ODE at equal NFE
VP_METHODS = ("reverse SDE (EM)", "PF-ODE (Euler)", "PF-ODE (Heun)")


def vp_sample(method: str, sde: Any, step: Step, score_fn: Callable, x1: Tensor, t_min: float, nfe: int,
              noise: Callable[[], torch.Generator]) -> Tensor:
    """Samples from ``x1`` at t = 1 to ``t_min`` with one of :data:`VP_METHODS` at ``nfe`` network evaluations:
    the reverse SDE by ``step`` (Euler–Maruyama, 1 per step, noise from ``noise()``), the probability-flow ODE
    by Euler (1 per step) or Heun (2 per step)."""
    if method == VP_METHODS[0]:
        return reverse_sample(step, sde, score_fn, x1, t_min, nfe, noise()).x
    if method == VP_METHODS[1]:
        return euler(sde.probability_flow(score_fn), x1, 1.0, t_min, nfe).x
    if method == VP_METHODS[2]:
        return heun(sde.probability_flow(score_fn), x1, 1.0, t_min, nfe // 2).x
    raise ValueError(f"unknown method {method!r}; valid choices: {', '.join(VP_METHODS)}")


def vp_nfe_study(sde: Any, step: Step, scores: dict[str, Callable], x1: Tensor, t_min: float,
                 nfe_grid: Sequence[int], judge: TruthJudge,
                 noise: Callable[[], torch.Generator]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Every method of :data:`VP_METHODS` × every score of ``scores`` (name → field) × every NFE, scored by
    ``judge``: ``{(method, score name, nfe): {"ratio", "weight_error", "loglik"}}``."""
    out = {}
    for m in VP_METHODS:
        for which, score in scores.items():
            for nfe in nfe_grid:
                sc = judge.score(vp_sample(m, sde, step, score, x1, t_min, nfe, noise))
                out[m, which, nfe] = {"ratio": sc.energy_ratio, "weight_error": sc.max_weight_error,
                                      "loglik": sc.log_likelihood}
    return out


def vp_nfe_figure(study: dict, nfe_grid: Sequence[int], band: float, true_loglik: float) -> Figure:
    """Energy ratio (log-log) and log-likelihood against NFE for :func:`vp_nfe_study`'s results, learned score
    solid and exact score dashed; the grey band is a perfect sampler's ± ``band``."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for m, color in zip(VP_METHODS, ["C3", "C0", "C2"]):
        for which, ls in [("learned", "-"), ("exact", "--")]:
            axes[0].loglog(nfe_grid, [study[m, which, n]["ratio"] for n in nfe_grid], ls, color=color, marker="o",
                           ms=3, label=f"{m}, {which}")
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


def vp_nfe_summary(study: dict, nfe_grid: Sequence[int], se: float) -> dict[str, Any]:
    """The numbers the SDE-vs-ODE answer cites from :func:`vp_nfe_study` (learned score), ``se`` the s.e. of a
    perfect sampler's ratio: the smallest and largest budgets, the better ODE solver at the smallest one
    (``ode_m``), the end gap in words (``gap_text``) and the budgets ≥ 100 where the SDE leaves the ±2 s.e. band
    (``zig``, in words; ``outside``)."""
    sde_m, heun_m = VP_METHODS[0], VP_METHODS[2]
    lr = {m: [study[m, "learned", n]["ratio"] for n in nfe_grid] for m in VP_METHODS}
    gap = lr[heun_m][-1] - lr[sde_m][-1]
    outside = [n for n, r in zip(nfe_grid, lr[sde_m]) if abs(r - 1) > 2 * se and n >= 100]
    ode_m = min(VP_METHODS[1:], key=lambda m: lr[m][0])  # the better ODE solver at the smallest budget
    if gap > 2 * se:
        gap_text = f"the SDE ends closer to the truth, {gap / se:.1f} s.e. lower"
    elif -gap > 2 * se:
        gap_text = f"the ODE ends closer to the truth, {-gap / se:.1f} s.e. lower"
    else:
        gap_text = (f"{'the SDE' if gap > 0 else 'the ODE'} ends lower, but by {abs(gap) / se:.1f} s.e., which this "
                    "sample size cannot tell from chance")
    zig = ("and at " + ", ".join(map(str, outside)) + " evaluations the learned SDE's ratio leaves the band, more "
           "than the scatter of a perfect sampler explains" if outside else "within the scatter of a perfect sampler")
    return {"lo": nfe_grid[0], "top": nfe_grid[-1], "se": se, "ode_m": ode_m, "sde_lo": lr[sde_m][0],
            "ode_lo": lr[ode_m][0], "ll_sde_lo": study[sde_m, "learned", nfe_grid[0]]["loglik"],
            "ll_ode_lo": study[ode_m, "learned", nfe_grid[0]]["loglik"], "sde": lr[sde_m][-1], "ode": lr[heun_m][-1],
            "gap_text": gap_text, "zig": zig, "outside": outside}


# --------------------------------------------------------------------------- 5b in 2D: flow + score = a family of SDEs
@dataclass
class FlowAndScore:
    """The two 2D networks of task 5b on one linear path (t = 0 noise, t = 1 data) and their training results."""

    path: GaussianPath
    flow: TrainResult
    score: TrainResult


def train_flow_and_score(truth: Any, batch: int, config: TrainConfig, device: torch.device | str, profile: str,
                         seed: int, retrain: bool = False) -> FlowAndScore:
    """Train (or load from the checkpoint cache) notebook 03's flow MLP by flow matching and a score MLP
    s_θ = −ε_θ/β_t by β²-weighted score matching (t ≤ 0.999) on ``truth``, the linear path, ``batch`` per step.

    The flow model's key is notebook 03's, so a model trained there is reused. Weights are initialised from the
    global seed (``seed`` and ``seed + 1``), as a notebook cell would.
    """
    path = GaussianPath("linear")
    data = lambda g: truth.sample(batch, generator=g)  # noqa: E731
    torch.manual_seed(seed)
    u_net = TimeMLP(dim=2, hidden=64, depth=4).to(device)
    fm_key = {"data": "toy_gmm", "schedule": "linear", "model": "TimeMLP(2,64,4,raw t)", "loss": "flow_matching",
              "batch": batch}
    fm = train(u_net, lambda m, z, g: flow_matching_loss(m, z, path, g), data, config,
               checkpoint=checkpoint_path("03_flow_mlp", fm_key, profile=profile), key=fm_key, retrain=retrain)
    torch.manual_seed(seed + 1)
    s_net = ScoreFromNoise(TimeMLP(dim=2, hidden=64, depth=4), lambda t: path.schedule(t).beta).to(device)
    sm_key = {"data": "toy_gmm", "schedule": "linear", "model": "ScoreFromNoise(TimeMLP(2,64,4,raw t))",
              "loss": "score_matching_beta2", "t_max": 0.999, "batch": batch}
    sm = train(s_net, lambda m, z, g: score_matching_loss(m, z, path, g, weighting="beta2", t_max=0.999), data,
               config, checkpoint=checkpoint_path("05_score_mlp", sm_key, profile=profile), key=sm_key, retrain=retrain)
    return FlowAndScore(path, fm, sm)


def flow_score_losses_figure(flow_losses: Any, score_losses: Any) -> Figure:
    """The two training losses of :func:`train_flow_and_score`, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    loss_curve(flow_losses, smooth=100, ax=axes[0], logy=False, title="flow model (flow matching)")
    loss_curve(score_losses, smooth=100, ax=axes[1], logy=False, title="score model (β²-weighted score matching)")
    axes[0].set_ylim(1.7, 3.5)
    axes[1].set_ylim(0.0, 1.2)
    fig.tight_layout()
    return fig


SIGMA_SHAPES: dict[str, Callable[[float], Any]] = {
    "constant": lambda sig: sig,
    "vanishing": lambda sig: (lambda t: sig * (1 - t)),
}
"""The two shapes of σ_t with scale σ: constant σ_t = σ, and vanishing σ_t = σ(1 − t) = σβ_t (linear path)."""


def sigma_settings(sigmas: Sequence[float]) -> list[tuple[str, float]]:
    """(shape, σ) for every shape of :data:`SIGMA_SHAPES` and σ, σ = 0 once (it is the same ODE for both)."""
    return [("constant", s) for s in sigmas] + [("vanishing", s) for s in sigmas if s > 0]


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


def flowscore_nfe_study(u_fn: Callable, s_fn: Callable, x0: Tensor, nfe_grid: Sequence[int],
                        noise: Callable[[], torch.Generator], judge: TruthJudge) -> dict[tuple[str, int], dict]:
    """The learned pair at equal NFE: the SDE with σ_t = 1 − t and σ_t = 1 (Euler–Maruyama, 2 NFE per step), the
    ODE by Euler (1 per step) and Heun (2 per step), from ``x0`` at t = 0. Returns ``{(method, nfe): {"ratio",
    "loglik"}}`` scored by ``judge``."""
    out = {}
    for nfe in nfe_grid:
        runs = {
            "SDE, σ_t = 1 − t (EM)": euler_maruyama(FlowScoreSDE(u_fn, s_fn, sigma=lambda t: 1 - t), x0, 0.0, 1.0,
                                                   nfe // 2, generator=noise()).x,
            "SDE, σ_t = 1 (EM)": euler_maruyama(FlowScoreSDE(u_fn, s_fn, sigma=1.0), x0, 0.0, 1.0, nfe // 2,
                                               generator=noise()).x,
            "ODE (Euler)": euler(u_fn, x0, 0.0, 1.0, nfe).x,
            "ODE (Heun)": heun(u_fn, x0, 0.0, 1.0, nfe // 2).x,
        }
        for m, x in runs.items():
            sc = judge.score(x)
            out[m, nfe] = {"ratio": sc.energy_ratio, "loglik": sc.log_likelihood}
    return out


def flowscore_nfe_figure(study: dict, nfe_grid: Sequence[int], band: float, true_loglik: float) -> Figure:
    """Energy ratio and log-likelihood against NFE for :func:`flowscore_nfe_study`'s results."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for m in dict.fromkeys(k[0] for k in study):
        axes[0].loglog(nfe_grid, [study[m, n]["ratio"] for n in nfe_grid], "o-", ms=3, label=m)
        axes[1].semilogx(nfe_grid, [study[m, n]["loglik"] for n in nfe_grid], "o-", ms=3, label=m)
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


def sigma_sweep_summary(sweep: dict, sigmas: Sequence[float], se: float) -> dict[str, Any]:
    """The numbers the 2D σ-sweep answer cites from the sweep (notebook 05): the exact fields' energy ratios (``ex``,
    every shape and σ), the learned vanishing ones (``van``), the largest constant σ's ratio and log-likelihood,
    the log-likelihood of true samples and the learned constant σ ≥ 1's log-likelihoods (``big_ll``)."""
    ex = [sweep["exact", sh, s].energy_ratio for sh in SIGMA_SHAPES for s in sigmas]
    van = [sweep["learned", "vanishing", s].energy_ratio for s in sigmas]
    top = sweep["learned", "constant", sigmas[-1]]
    return {"se": se, "ex": ex, "van": van, "ex_lo": min(ex), "ex_hi": max(ex), "van_lo": min(van),
            "van_hi": max(van), "s_max": sigmas[-1], "con_max": top.energy_ratio, "ll_max": top.log_likelihood,
            "true_ll": sweep["exact", "constant", sigmas[0]].true_log_likelihood,
            "big_ll": {s: sweep["learned", "constant", s].log_likelihood for s in sigmas if s >= 1}}


def flowscore_nfe_summary(study: dict, nfe_grid: Sequence[int], ode0: float, se: float,
                          true_ll: float) -> dict[str, Any]:
    """The numbers the equal-NFE answer of task 5b cites from :func:`flowscore_nfe_study`: Heun at 50 NFE (or the
    smallest budget) and at the largest, where the Euler ODE, the vanishing-σ SDE and the constant-σ SDE's
    log-likelihood end; ``ode0`` is the σ = 0 entry of the σ sweep, ``se`` a perfect sampler's s.e."""
    n_lo, top = (50 if 50 in nfe_grid else nfe_grid[0]), nfe_grid[-1]
    heun = [study["ODE (Heun)", n]["ratio"] for n in nfe_grid]
    return {"n_lo": n_lo, "n_hi": top, "h_lo": study["ODE (Heun)", n_lo]["ratio"], "h_hi": heun[-1], "heun": heun,
            "ode_end": study["ODE (Euler)", top]["ratio"], "ode0": ode0,
            "van_end": study["SDE, σ_t = 1 − t (EM)", top]["ratio"],
            "se": se, "ll": study["SDE, σ_t = 1 (EM)", top]["loglik"], "true_ll": true_ll}


# --------------------------------------------------------------------------- Part II: images
def score_flow_agreement(score_net: Callable, flow_net: Callable, path: GaussianPath, z: Tensor, t_grid: Tensor,
                         to_score: Callable, generator: torch.Generator | None,
                         device: torch.device | str) -> list[float]:
    """At each t of ``t_grid``: noise the images ``z`` along ``path`` (one draw from ``generator``) and compare
    the score network with the score ``to_score(path.schedule, u, x, t)`` read from the flow network's velocity
    (t of shape (B,)): mean ‖s_θ − s(u_θ)‖ over mean ‖s_θ‖, one number per t. The networks run on ``device``."""
    agreement = []
    for t in t_grid.tolist():
        x = path.sample(z, t, generator=generator).x
        with torch.no_grad():
            s_a = score_net(x.to(device), torch.full((len(x),), t, device=device)).cpu()
            u_b = flow_net(x.to(device), torch.full((len(x),), t, device=device)).cpu()
        s_b = to_score(path.schedule, u_b, x, torch.full((len(x),), t))
        agreement.append(float((s_a - s_b).flatten(1).norm(dim=1).mean() / s_a.flatten(1).norm(dim=1).mean()))
    return agreement


def agreement_figure(t_grid: Tensor, agreement: Sequence[float]) -> Figure:
    """:func:`score_flow_agreement` against t."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(t_grid, agreement, "o-")
    ax.set(xlabel="t", ylabel="‖s_θ − s(u_θ)‖ / ‖s_θ‖", title="score network vs the score implied by the flow network")
    return fig


def image_sigma_sweep(u_net: Callable, s_net: Callable, sigmas: Sequence[float], n: int, n_steps: int,
                      evaluator: Any, bars: Any, device: torch.device | str, seed: int, run: Any,
                      profile: str) -> tuple[dict, dict]:
    """The flow + score SDE on MNIST for every shape of :data:`SIGMA_SHAPES` and σ: ``n`` digits from the same
    starting noise (``seed``), ``n_steps`` Euler–Maruyama steps from t = 0 to 1, clamped to [−1, 1], scored by the
    MNIST ``evaluator`` and recorded in ``run`` as ``image/<shape>_sigma<σ>``. Returns ``(results, samples)`` keyed
    by ``(shape, σ)``; σ = 0 is run once and shared by both shapes."""
    results, samples = {}, {}
    for shape, make in SIGMA_SHAPES.items():
        for sigma in sigmas:
            if sigma == 0 and shape != "constant":  # σ = 0 is the same ODE for both shapes
                results[shape, sigma], samples[shape, sigma] = results["constant", 0.0], samples["constant", 0.0]
                continue
            sde = FlowScoreSDE(u_net, s_net, sigma=make(sigma))
            x = sample_from_noise(sde, n, (1, 28, 28), n_steps, method="euler_maruyama", device=device,
                                  seed=seed).x.clamp(-1, 1)
            r = evaluator.evaluate(x)
            name = f"image/{shape}_sigma{sigma:g}"
            r.report(run, name, bars)
            run.save_samples(name.replace("/", "_"), images=x)
            results[shape, sigma], samples[shape, sigma] = r, x
            print(f"{shape:<9} σ = {sigma:<4g} {r.summary()}  {'passes' if r.passes(bars) else 'misses'} "
                  f"the {profile} bars")
    return results, samples


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


def image_sweep_summary(results: dict, sigmas: Sequence[float]) -> dict[str, Any]:
    """The numbers the image σ-sweep answer cites from :func:`image_sigma_sweep`: the ODE (``r0``, σ = 0), the
    vanishing-σ results (``van``) and their ranges, the constant-σ results (``con``, σ → result), the smallest
    constant σ (``s1``, ``c1``), the constant σ that end in pure noise (one class takes over 90 %: ``noisy``) with
    their confidence and FD range, and two standard errors of a difference from the ODE (``se_fd``, ``se_rec``)."""
    r0 = results["constant", 0.0]
    van = [results["vanishing", s] for s in sigmas if s > 0]
    con = {s: results["constant", s] for s in sigmas if s > 0}
    noisy = [s for s in con if con[s].class_max > 0.9]  # one class takes (nearly) every sample: pure noise
    noisy_fd, nan, s1 = [con[s].fd_ratio for s in noisy], float("nan"), min(con)
    return {"r0": r0, "van": van, "con": con, "noisy_sigmas": noisy, "s1": s1, "c1": con[s1], "smax": max(sigmas),
            "rec_lo": min(r.recognised_fraction for r in van), "rec_hi": max(r.recognised_fraction for r in van),
            "cls_lo": min(r.class_min for r in van), "cls_hi": max(r.class_max for r in van),
            "fd_lo": min(r.fd_ratio for r in van), "fd_hi": max(r.fd_ratio for r in van),
            "noisy": ", ".join(f"{s:g}" for s in noisy) or "none",
            "conf": min((con[s].mean_confidence for s in noisy), default=nan),
            "nfd_lo": min(noisy_fd, default=nan), "nfd_hi": max(noisy_fd, default=nan),
            "se_fd": 2 * np.sqrt(2) * r0.fd_ratio_se, "se_rec": 2 * np.sqrt(2) * r0.recognised_se}


def sweep_table(sweep: dict) -> dict[str, dict[str, float]]:
    """The σ sweep's scores (notebook 05) as plain numbers for ``run.report``: ``{"<fields>|<shape>|<σ>": {"ratio",
    "weight_error", "loglik"}}``."""
    return {f"{w}|{sh}|{s:g}": {"ratio": sc.energy_ratio, "weight_error": sc.max_weight_error,
                                "loglik": sc.log_likelihood} for (w, sh, s), sc in sweep.items()}
