"""Notebook 04 (flow matching on MNIST with the Figure-1 UNet, seed 000 task 4): its studies and figures.

The training recipe, the trainer and the evaluator live in :mod:`nbhelpers.recipes.mnist` (shared with
notebook 05); this module holds what only notebook 04 draws and compares: corrupted-image grids, the
reference image sets, sampling with the run's seeds, the Euler-step sweep and the schedule comparison.
Time runs t ∈ [0, 1] with t = 0 noise and t = 1 data; images are ``(B, 1, 28, 28)`` in [−1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..metrics.images import EvalResult, MNISTEvaluator, QualityBars
from ..paths import GaussianPath
from ..plotting import image_grid, loss_curve
from ..schedules import get_schedule
from ..solvers import sample_from_noise
from .study import Study

__all__ = ["corruption_grid", "reference_sets", "reference_study", "sample_images", "ScoredImages", "score_images",
           "trajectory_frames", "euler_steps_study", "schedule_curves_figure", "loss_curves_figure",
           "evaluation_figure",
           "ScheduleComparison", "compare_schedules"]

REFERENCE_KEYS = ("recognised", "recognised_se", "fd_ratio", "fd_ratio_se")


def corruption_grid(schedule: str, z: torch.Tensor, eps: torch.Tensor, times: Sequence[float]) -> torch.Tensor:
    """x_t = α_t z + β_t ε for each image of ``z (B, C, H, W)`` (rows) at each t of ``times`` (columns),
    with the same ``eps`` in every column; returns ``(B · len(times), C, H, W)`` row by row."""
    path = GaussianPath(schedule)
    cols = [path.sample(z, t, eps=eps).x for t in times]
    return torch.stack(cols, dim=1).reshape(-1, *z.shape[1:])


def reference_sets(test_images: torch.Tensor, n: int, generator: torch.Generator | None = None) -> dict[str, Any]:
    """Three yardsticks of ``n`` images each (at most 5000 real ones): a random draw from the second half
    of the test images (a contiguous block of the test set is one group of writers), uniform noise on
    [−1, 1] and Gaussian noise clamped to [−1, 1] — drawn in that order from ``generator``."""
    return {
        "real test digits": test_images[5000 + torch.randperm(5000, generator=generator)[:min(n, 5000)]],
        "uniform noise": torch.rand(n, 1, 28, 28, generator=generator) * 2 - 1,
        "Gaussian noise": torch.randn(n, 1, 28, 28, generator=generator).clamp(-1, 1),
    }


def reference_study(evaluator: MNISTEvaluator, references: dict[str, torch.Tensor]) -> Study:
    """Score each reference set with ``evaluator``. Metrics: ``reference/<name>_<key>`` (spaces in the
    name as ``_``) for recognised, recognised_se, fd_ratio and fd_ratio_se; summary: one line per set."""
    metrics, lines = {}, []
    for name, images in references.items():
        r = evaluator.evaluate(images)
        lines.append(f"{name:<18} {r.summary()}")
        d = r.as_dict()
        metrics.update({f"reference/{name.replace(' ', '_')}_{k}": d[k] for k in REFERENCE_KEYS})
    return Study(None, metrics, "\n".join(lines))


def sample_images(model: Any, n: int, n_steps: int, device: Any, seed: int,
                  trajectory: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Euler on dX = u_θ(X, t) dt from t = 0 (noise seeded ``seed``) to 1 for ``n`` MNIST-shaped images, in
    chunks of 1000 on ``device``; returns the images clamped to [−1, 1] and the trajectory
    ``(n_steps + 1, n, 1, 28, 28)`` when asked (else ``None``), both on the CPU."""
    sol = sample_from_noise(model.eval(), n, (1, 28, 28), n_steps, method="euler", device=device, seed=seed,
                            chunk=1000, return_trajectory=trajectory)
    return sol.x.clamp(-1, 1), sol.trajectory


@dataclass(frozen=True)
class ScoredImages:
    """Generated images scored by the MNIST evaluator (:func:`score_images`): the evaluation, whether it passes
    the profile's bars, and the images behind the numbers. ``.metrics`` are ``<name>/<key>`` for
    ``run.report_all``; the notebook saves the images with ``run.save_samples(name, images=...)``."""

    name: str
    result: EvalResult
    bars: QualityBars
    images: torch.Tensor

    @property
    def passes(self) -> bool:
        return self.result.passes(self.bars)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.result.metrics(self.name, self.bars)

    def summary(self) -> str:
        return f"{self.name:<12} {self.result.summary()}  {'passes' if self.passes else 'misses'} the quality bars"


def score_images(evaluator: MNISTEvaluator, bars: QualityBars, name: str, images: torch.Tensor) -> ScoredImages:
    """Score generated ``images`` with ``evaluator`` against ``bars`` (see :class:`ScoredImages`)."""
    return ScoredImages(name, evaluator.evaluate(images), bars, images)


def trajectory_frames(trajectory: torch.Tensor, n_frames: int = 11) -> torch.Tensor:
    """``n_frames`` evenly spaced states of a trajectory ``(n_steps + 1, B, C, H, W)``, laid out one row
    per sample: ``(B · n_frames, C, H, W)`` clamped to [−1, 1]."""
    if trajectory.dim() != 5:
        raise ValueError(f"trajectory must be (n_steps + 1, B, C, H, W), got shape {tuple(trajectory.shape)}")
    idx = np.linspace(0, trajectory.shape[0] - 1, n_frames).round().astype(int)
    return trajectory[idx].transpose(0, 1).reshape(-1, *trajectory.shape[2:]).clamp(-1, 1)


def euler_steps_study(sample: Callable[[int], torch.Tensor], step_counts: Sequence[int],
                      evaluator: MNISTEvaluator, per_row: int = 12) -> Study:
    """The same starting noise sampled with each number of Euler steps (``sample(k)`` → images) and
    scored. Metrics: ``euler_steps/<k>_fd_ratio`` and ``euler_steps/<k>_recognised``; figure: the first
    ``per_row`` images of each, one row per step count."""
    metrics, lines, images = {}, [], []
    for k in step_counts:
        x_k = sample(k)
        images.append(x_k[:per_row])
        r = evaluator.evaluate(x_k)
        metrics[f"euler_steps/{k}_fd_ratio"] = r.fd_ratio
        metrics[f"euler_steps/{k}_recognised"] = r.recognised_fraction
        lines.append(f"{k:>4} Euler steps: {r.summary()}")
    fig = image_grid(torch.cat(images), nrow=per_row, size=0.6, row_labels=[f"{k} steps" for k in step_counts],
                     title="the same noise, different numbers of Euler steps")
    return Study(fig, metrics, "\n".join(lines))


def schedule_curves_figure(schedules: Sequence[str], n: int = 201) -> Figure:
    """α_t and log₁₀ SNR = log₁₀(α²/β²) of each named schedule on ``n`` times in [0, 1]."""
    tt = torch.linspace(0, 1, n)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for s in schedules:
        v = get_schedule(s)(tt)
        axes[0].plot(tt, v.alpha, label=f"α {s}")
        axes[1].plot(tt, torch.log10(v.alpha ** 2 / v.beta ** 2), label=s)
    axes[0].set(xlabel="t", title="signal coefficient α_t")
    axes[1].set(xlabel="t", ylim=(-4, 4), title="log10 signal-to-noise ratio α²/β²")
    axes[0].legend()
    axes[1].legend()
    return fig


def loss_curves_figure(losses: dict[str, Any], smooth: int, title: str = "flow matching loss") -> Figure:
    """Each labelled loss history with its moving average over ``smooth`` steps, on one axis."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, v in losses.items():
        loss_curve(v, smooth=smooth, ax=ax, title=title, label=label)
    return fig


def evaluation_figure(evals: dict[str, EvalResult], bars: QualityBars) -> Figure:
    """Recognised fraction, FD ratio and class histogram of each labelled evaluation, with the pass marks."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    names = list(evals)
    axes[0].bar(names, [100 * evals[s].recognised_fraction for s in names])
    axes[0].axhline(100 * bars.min_recognised, color="k", ls="--", lw=1)
    axes[0].set(title="recognised (%)", ylim=(0, 100))
    axes[1].bar(names, [evals[s].fd_ratio for s in names])
    axes[1].axhline(bars.max_fd_ratio, color="k", ls="--", lw=1)
    axes[1].set(title="classifier FD / real-vs-real floor")
    for s in names:
        axes[2].plot(range(10), 100 * evals[s].class_histogram, marker="o", label=s)
    axes[2].axhspan(100 * bars.class_range[0], 100 * bars.class_range[1], color="grey", alpha=0.15)
    axes[2].set(title="predicted class (%)", xticks=range(10), xlabel="digit")
    axes[2].legend()
    return fig


@dataclass
class ScheduleComparison:
    """The schedules' evaluations as a Markdown ``table`` and two sentences that rank them by FD
    (``fd_text``) and by recognised fraction (``rec_text``) only when the spread exceeds two standard
    errors of a difference (2√2 × the largest s.e.), and say so otherwise."""

    table: str
    fd_text: str
    rec_text: str


def compare_schedules(evals: dict[str, EvalResult]) -> ScheduleComparison:
    """See :class:`ScheduleComparison`; ``evals``: schedule name → evaluation, in table order."""
    names = list(evals)
    table = "| schedule | recognised | classes | FD / floor |\n|---|---|---|---|\n" + "\n".join(
        f"| {s} | {e.recognised_fraction:.1%} ± {e.recognised_se:.1%} | {e.class_min:.1%}–"
        f"{e.class_max:.1%} | {e.fd_ratio:.2f} ± {e.fd_ratio_se:.2f} |" for s, e in evals.items())
    fd_spread = max(e.fd_ratio for e in evals.values()) - min(e.fd_ratio for e in evals.values())
    rec_spread = (max(e.recognised_fraction for e in evals.values())
                  - min(e.recognised_fraction for e in evals.values()))
    se2_fd = 2 * np.sqrt(2) * max(e.fd_ratio_se for e in evals.values())
    se2_rec = 2 * np.sqrt(2) * max(e.recognised_se for e in evals.values())
    ranked = sorted(names, key=lambda s: evals[s].fd_ratio)
    fd_text = (f"their FD ratios lie within {fd_spread:.2f} of each other, less than two standard errors of a "
               f"difference ({se2_fd:.2f}): this run cannot rank the schedules by FD" if fd_spread < se2_fd else
               f"{ranked[0]} has the lowest FD ratio and {ranked[-1]} the highest, {fd_spread:.2f} apart — more "
               f"than two standard errors of a difference ({se2_fd:.2f})")
    by_rec = sorted(names, key=lambda s: -evals[s].recognised_fraction)
    rec_text = (f"the recognised fractions differ by {rec_spread:.1%}, less than two standard errors of a "
                f"difference ({se2_rec:.1%})" if rec_spread < se2_rec else
                f"{by_rec[0]} is recognised most often and {by_rec[-1]} least, {rec_spread:.1%} apart — more "
                f"than two standard errors of a difference ({se2_rec:.1%})")
    return ScheduleComparison(table, fd_text, rec_text)
