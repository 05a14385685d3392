"""Notebook 03 (flow matching in 2D, seed 000 task 3): its figures, the n_t sweep and the field checks.

Time runs t ∈ [0, 1] with t = 0 noise and t = 1 data; a flow is a callable ``field(x, t)`` on
``(B, 2)`` points and ``(B,)`` times. Scores are :class:`nbhelpers.metrics.toy.SampleScore`
(energy distance in units of the noise floor, mode weights, log-likelihood).
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..metrics.toy import NoiseFloor, SampleScore, ratio_separation, score_against_truth
from ..plotting import loss_curve, plot_density, plot_trajectories_2d, scatter_panels
from ..solvers import euler, heun
from ..checkpoints import checkpoint_path
from .study import Study

__all__ = ["loss_vs_floor_figure", "samples_and_trajectories_figure", "mode_weight_figure", "NtStudy", "nt_study",
           "nt_samples_figure", "steps_to_floor", "error_order", "field_quiver_figure", "field_error_study"]

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FlowModelSpec:
    """Notebook 03's flow model: ``TimeMLP(dim, hidden, depth)`` on raw t, trained by flow matching on the toy
    Gaussian mixture along the linear path, ``batch`` points per step. Notebook 05 reuses the trained model: both
    take its checkpoint key from :meth:`key` (and its file from :meth:`checkpoint`), so each finds the other's."""

    batch: int
    dim: int = 2
    hidden: int = 64
    depth: int = 4
    NAME: ClassVar[str] = "03_flow_mlp"

    def key(self) -> dict[str, Any]:
        return {"data": "toy_gmm", "schedule": "linear", "model": f"TimeMLP({self.dim},{self.hidden},{self.depth},raw t)",
                "loss": "flow_matching", "batch": self.batch}

    def checkpoint(self, profile: str) -> Path:
        return checkpoint_path(self.NAME, self.key(), profile=profile)


def loss_vs_floor_figure(losses: Any, floor_loss: float, smooth: int = 100) -> Figure:
    """Training loss beside the lowest reachable loss ``floor_loss`` (the exact field's): left, the loss
    and its moving average over ``smooth`` steps; right, means over blocks of 1/20 of training minus the floor."""
    losses = np.asarray(losses, dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    loss_curve(losses, smooth=smooth, ax=axes[0], logy=False, title="flow-matching loss")
    axes[0].axhline(floor_loss, color="k", ls="--", lw=1, label=f"exact field: {floor_loss:.3f}")
    axes[0].set_ylim(floor_loss - 0.3, floor_loss + 1.5)
    axes[0].legend()
    window = max(1, len(losses) // 20)
    blocks = losses[: len(losses) // window * window].reshape(-1, window).mean(1)
    axes[1].plot(np.arange(1, len(blocks) + 1) * window, blocks - floor_loss, "o-")
    axes[1].axhline(0, color="k", ls="--", lw=1)
    axes[1].set_ylim(-0.02, max(0.1, float(np.sort(blocks - floor_loss)[len(blocks) // 2]) * 3))
    axes[1].set_xlabel("step")
    axes[1].set_title(f"loss minus the exact field's (means of {window} steps)")
    fig.tight_layout()
    return fig


def samples_and_trajectories_figure(trajectory: torch.Tensor, log_prob: Callable[[torch.Tensor], torch.Tensor],
                                    lim: tuple[float, float] = (-3.5, 3.5)) -> Figure:
    """Left: the end points of a trajectory ``(n_steps + 1, B, 2)`` over the data density's contours;
    right: the whole trajectories from t = 0 (noise, blue) to t = 1 (samples, red)."""
    n = trajectory.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.3))
    plot_density(log_prob, ax=axes[0], filled=False, levels=8, alpha=0.6)
    axes[0].scatter(*trajectory[-1].T, s=5, color="C3")
    axes[0].set_title(f"{n} generated samples over p_data")
    plot_trajectories_2d(trajectory, ax=axes[1], max_paths=n, lw=0.4, alpha=0.35, mark_ends=False)
    axes[1].scatter(*trajectory[0].T, s=4, color="C0", label="t = 0 (noise)")
    axes[1].scatter(*trajectory[-1].T, s=4, color="C3", label="t = 1 (samples)")
    axes[1].set_title("their trajectories X_t, t: 0 → 1")
    axes[1].set_xlim(*lim)
    axes[1].set_ylim(*lim)
    axes[1].legend(loc="lower right", fontsize=8, markerscale=2)
    fig.tight_layout()
    return fig


def mode_weight_figure(scores: dict[str, SampleScore], title: str, band: float = 0.02) -> Figure:
    """Per mode, the weight error ŵ − w of each labelled score (grouped bars), ±``band`` shaded."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    first = next(iter(scores.values()))
    k = np.arange(len(first.true_weights))
    width = 0.75 / len(scores)
    offsets = (np.arange(len(scores)) - (len(scores) - 1) / 2) * width
    for off, (label, sc) in zip(offsets, scores.items()):
        ax.bar(k + off, sc.weight_errors.numpy(), width=width, label=label)
    ax.axhspan(-band, band, color="grey", alpha=0.15, label=f"±{band:g}")
    ax.set_xticks(k, [f"mode {i}\nw={w:.2f}" for i, w in enumerate(first.true_weights.tolist())])
    ax.set_ylabel("weight error ŵ − w")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the n_t sweep
@dataclass
class NtStudy(Study):
    """:func:`nt_study`'s result: besides figure, metrics and summary, ``results[(solver, n)]`` (nfe,
    error to the reference, energy ratio and its s.e., separation from the floor in s.e., largest
    weight error, the samples ``x``), the grids, and ``heun_match``: the fewest Heun steps as close
    to the reference as the finest Euler run (``None``: none)."""

    results: dict[tuple[str, int], dict[str, Any]] = dc_field(default_factory=dict)
    grids: dict[str, list[int]] = dc_field(default_factory=dict)
    heun_match: int | None = None


def nt_study(field: Field, x0: torch.Tensor, x_ref: torch.Tensor, euler_grid: Sequence[int],
             heun_grid: Sequence[int], gmm: Any, n_set: int, floor: NoiseFloor, score_seed: int) -> NtStudy:
    """Solve dx/dt = ``field`` from ``x0 (B, 2)`` with Euler for each n_t of ``euler_grid`` and Heun for
    each of ``heun_grid``; measure the mean distance to ``x_ref`` (a converged solve) and score the
    samples against ``gmm`` (:func:`nbhelpers.metrics.toy.score_against_truth` with sets of ``n_set``,
    a generator seeded ``score_seed`` for each). Figure: distance vs n_t (reference slopes −1, −2
    anchored near n_t = 10) and energy/floor vs NFE. Metrics: ``nt_study`` (every result but the
    samples), ``euler_max_steps_error``, ``heun_steps_to_match_euler_max``, ``heun_step_reduction``."""
    grids = {"euler": list(euler_grid), "heun": list(heun_grid)}
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for name, solver in (("euler", euler), ("heun", heun)):
        for n in grids[name]:
            s = solver(field, x0, 0.0, 1.0, n)
            sc = score_against_truth(s.x.cpu(), gmm, generator=torch.Generator().manual_seed(score_seed), n=n_set,
                                     floor=floor)
            results[name, n] = {"nfe": s.nfe, "error": (s.x - x_ref).norm(dim=1).mean().item(),
                                "ratio": sc.energy_ratio, "ratio_se": sc.energy_ratio_se,
                                "sep": ratio_separation(sc, 1.0), "weight_error": sc.max_weight_error,
                                "x": s.x.cpu()}
    target = results["euler", max(euler_grid)]["error"]
    heun_match = min((n for n in heun_grid if results["heun", n]["error"] <= target), default=None)
    metrics: dict[str, Any] = {
        "nt_study": {f"{k[0]}_{k[1]}": {kk: v for kk, v in d.items() if kk != "x"} for k, d in results.items()},
        "euler_max_steps_error": target, "heun_steps_to_match_euler_max": heun_match}
    if heun_match is not None:
        metrics["heun_step_reduction"] = max(euler_grid) / heun_match
    summary = (f"Euler with {max(euler_grid)} steps is {target:.1e} from the converged solution; "
               f"Heun reaches that with {heun_match} steps ({2 * heun_match if heun_match else '–'} NFE).")
    return NtStudy(_nt_figure(results, grids, target), metrics, summary, results, grids, heun_match)


def _nt_figure(results: dict[tuple[str, int], dict[str, Any]], grids: dict[str, list[int]], target: float) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, marker in [("euler", "o"), ("heun", "s")]:
        grid = grids[name]
        axes[0].loglog(grid, [results[name, n]["error"] for n in grid], marker + "-", label=name)
        axes[1].errorbar([results[name, n]["nfe"] for n in grid], [results[name, n]["ratio"] for n in grid],
                         yerr=[2 * results[name, n]["ratio_se"] for n in grid], fmt=marker + "-", capsize=2,
                         label=f"{name} (± 2 s.e.)")
    g = np.array([2.0, 1000.0])
    ne = min(grids["euler"], key=lambda n: abs(n - 10))  # anchor the reference slopes near n_t = 10
    nh = min(grids["heun"], key=lambda n: abs(n - 10))
    axes[0].loglog(g, results["euler", ne]["error"] * ne / g, "k:", lw=1, label="slope −1")
    axes[0].loglog(g, results["heun", nh]["error"] * nh**2 / g**2, "k--", lw=1, label="slope −2")
    axes[0].axhline(target, color="C0", lw=0.8, alpha=0.6)
    axes[0].set_xlabel("steps n_t")
    axes[0].set_ylabel(r"mean $\|X_1 - X_1^{\mathrm{ref}}\|$ (ref: a fine Heun solve)")
    errors = [v["error"] for v in results.values() if v["error"] > 0]
    axes[0].set_ylim(0.3 * min(errors), 3 * max(errors))
    axes[0].set_title("distance to the converged ODE solution")
    axes[1].axhline(1, color="k", lw=0.8, ls="--", label="noise floor")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("network evaluations (NFE)")
    axes[1].set_ylabel("energy distance / floor")
    axes[1].set_title("distance to the data distribution")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def nt_samples_figure(study: NtStudy, steps: Sequence[int] = (1, 3, 10, 1000), n: int = 2000) -> Figure:
    """The first ``n`` Euler samples for each n_t of ``steps`` that the sweep ran (all of them if none)."""
    grid = study.grids["euler"]
    show = [k for k in steps if k in grid] or grid
    return scatter_panels([study.results["euler", k]["x"][:n] for k in show], [f"Euler, n_t = {k}" for k in show],
                          s=2, alpha=0.4, size=2.8, colors=["C3"] * len(show))


def steps_to_floor(study: NtStudy, name: str, level: float = 2.0) -> int | None:
    """The fewest steps of solver ``name`` from which on every score is within ``level`` s.e. of the
    noise floor (``None``: never)."""
    grid = study.grids[name]
    above = [n for n in grid if study.results[name, n]["sep"] >= level]
    return next((n for n in grid if not above or n > max(above)), None)


def error_order(study: NtStudy, name: str, min_steps: int = 5) -> float:
    """Log-log slope of the distance to the converged solution over n_t ≥ ``min_steps`` (Euler −1, Heun −2)."""
    g = [n for n in study.grids[name] if n >= min_steps]
    if len(g) < 2:
        raise ValueError(f"need two step counts >= {min_steps} for a slope, got {g} from {study.grids[name]}")
    return float(np.polyfit(np.log(g), np.log([study.results[name, n]["error"] for n in g]), 1)[0])


# --------------------------------------------------------------------------- the learned field against the exact one
def _both_fields(gmm: Any, flow: Field, path: Any, x: torch.Tensor, t: torch.Tensor,
                 device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return gmm.marginal_velocity(x, t, path.schedule), flow(x.to(device), t.to(device)).cpu()


def field_quiver_figure(gmm: Any, flow: Field, path: Any, times: Sequence[float], device: Any = "cpu",
                        n: int = 21, lim: float = 3.0, density_lim: tuple[float, float] = (-3.3, 3.3)) -> Figure:
    """The exact marginal field of ``gmm`` along ``path`` (black) and the learned ``flow`` (red) on an
    n × n grid over [−lim, lim]², one panel per t, arrows only where p_t exceeds e⁻⁷ of its peak,
    over the contours of p_t on ``density_lim``²."""
    xs = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    fig, axes = plt.subplots(1, len(times), figsize=(3.4 * len(times), 3.6), squeeze=False)
    for ax, t0 in zip(axes[0], times):
        tt = torch.full((len(grid),), t0)
        u_true, u_learn = _both_fields(gmm, flow, path, grid, tt, device)
        with torch.no_grad():
            log_pt = gmm.marginal_log_prob(grid, tt, path.schedule)
        keep = log_pt > log_pt.max() - 7  # arrows only where p_t has mass (> e⁻⁷ of its peak)
        plot_density(lambda x: gmm.marginal_log_prob(x, t0, path.schedule), ax=ax, lim=density_lim,
                     n=120, levels=8, alpha=0.35, cmap="Blues")
        scale = float(u_true[keep].norm(dim=1).max()) * 12
        ax.quiver(*grid[keep].T, *u_true[keep].T, color="k", scale=scale, width=0.007, alpha=0.55)
        ax.quiver(*grid[keep].T, *u_learn[keep].T, color="C3", scale=scale, width=0.004)
        ax.set_title(f"t = {t0}: exact (black), learned (red)", fontsize=9)
    fig.tight_layout()
    return fig


def field_error_study(gmm: Any, flow: Field, path: Any, times: torch.Tensor, n: int,
                      generator: torch.Generator | None = None, device: Any = "cpu") -> Study:
    """Relative squared error E‖u_θ − u‖² / E‖u‖² of the learned ``flow`` against the exact marginal
    field at each t of ``times``, on ``n`` points x_t ~ p_t (fresh data and noise per t, from
    ``generator``). Metrics: ``field_rel_error_mean``, ``field_rel_error_max``, ``field_rel_error_argmax_t``."""
    rel = []
    for t0 in times:
        z = gmm.sample(n, generator=generator)
        ps = path.sample(z, torch.full((n,), float(t0)), generator=generator)
        u_true, u_learn = _both_fields(gmm, flow, path, ps.x, ps.t, device)
        rel.append(((u_learn - u_true).square().sum(1).mean() / u_true.square().sum(1).mean()).item())
    rel = np.array(rel)
    t_worst = float(times[int(rel.argmax())])
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.semilogy(times, rel, "o-", ms=3)
    ax.set_xlabel("t   (0 = noise, 1 = data)")
    ax.set_ylabel("relative squared error")
    ax.set_title("learned vs exact field along the path")
    fig.tight_layout()
    metrics = {"field_rel_error_mean": float(rel.mean()), "field_rel_error_max": float(rel.max()),
               "field_rel_error_argmax_t": t_worst}
    summary = f"relative error: mean over t {rel.mean():.3f}, largest {rel.max():.3f} at t = {t_worst:.2f}"
    return Study(fig, metrics, summary)
