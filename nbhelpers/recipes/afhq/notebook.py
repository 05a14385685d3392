"""Notebook 08's experiments around the recipe: its settings per profile, the Monte Carlo check of eq. 18,
the loss at each step of the chain, the 5.1 run scored by FID and its continuation in 5.5, the offline
scores of 5.2 (FID where the weights exist, the copy check) and the lines that report on the runs.

Steps as everywhere in this recipe: integer t (``k`` in :mod:`nbhelpers.ddpm`), t = 0 data, t = T noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..._checks import check_param
from ...layout import PROFILES
from ...runtime import train_steps
from ...checkpoints import checkpoint_path, load_checkpoint
from ...metrics.nearest import copy_check
from ...standin import mark_key
from ...training import TrainResult, train
from .data import AFHQImages, count_images, find_afhq
from .diffusion import Diffusion, make_batch_fn, sample_images
from .figures import copy_summary, fid_figure
from .trainer import AFHQConfig, SampleAndScore, adopt_checkpoint, train_config, train_key

__all__ = ["NotebookSettings", "notebook_settings", "PosteriorRegression", "posterior_regression", "loss_per_step",
           "training_line", "training_metrics", "continue_training", "continued_line", "ScoredRun", "train_with_fid",
           "FIDCurve", "fid_curve", "OfflineScores", "score_offline"]

FULL_RUN_STEPS = 10_000  # seed 004's 5.5


@dataclass(frozen=True)
class NotebookSettings:
    """Notebook 08's sizes for one profile: the assignment's settings (cpu and gpu) or a seconds-long smoke run.

    ``steps_1k``: the 5.1–5.4 run; ``steps_long``: 5.5's (the assignment's 10,000 in the gpu profile);
    ``n_nearest`` samples and ``n_train_nearest`` training images for the copy check; ``smooth_*`` the
    moving-average windows of the loss curves.
    """

    profile: str
    image_size: int
    batch_size: int
    time_steps: int
    unet_dim: int
    n_images: int | None
    steps_1k: int
    fid_every: int
    fid_samples: int
    steps_long: int
    sample_every_long: int
    n_nearest: int
    n_train_nearest: int
    smooth_1k: int
    smooth_long: int

    def config(self, seed: int) -> AFHQConfig:
        """The trainer's settings of the 5.1 run (learning rate 1e-3 as in the assignment)."""
        return AFHQConfig(image_size=self.image_size, batch_size=self.batch_size, time_steps=self.time_steps,
                          unet_dim=self.unet_dim, learning_rate=1e-3, train_steps=self.steps_1k,
                          save_and_sample_every=self.fid_every, seed=seed)


def notebook_settings(profile: str, steps: int | None = None, epochs: float | None = None,
                      retrain: bool = False) -> NotebookSettings:
    """The settings for ``profile`` (``run.profile``); ``steps`` or ``epochs`` (at most one) override the 5.1 run's
    length, epochs counted over the cat images used. The cat images are looked for first (:func:`find_afhq`: fetched
    on first use), so a run without them stops before any work."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid choices: {', '.join(PROFILES)}")

    def pick(smoke: Any, cpu: Any, gpu: Any) -> Any:
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[profile]

    check_param("retrain", retrain, kind=bool)
    find_afhq(data_class="cat")  # the data first: fetched on first use, or one line saying where to put it
    image_size = pick(smoke=16, cpu=32, gpu=32)
    batch = pick(smoke=16, cpu=32, gpu=32)
    T = pick(smoke=10, cpu=50, gpu=50)
    unet_dim = pick(smoke=8, cpu=16, gpu=16)
    n_images = pick(smoke=256, cpu=None, gpu=None)  # cat images used (None: all)
    steps_1k = train_steps(profile, steps, epochs, default=pick(smoke=20, cpu=1_000, gpu=1_000), batch_size=batch,
                               n_examples=lambda: count_images(data_class="cat", limit=n_images))
    fid_samples = pick(smoke=32, cpu=500, gpu=1_000)
    return NotebookSettings(
        profile=profile, image_size=image_size, batch_size=batch, time_steps=T, unet_dim=unet_dim,
        n_images=n_images, steps_1k=steps_1k, fid_every=pick(smoke=10, cpu=100, gpu=100), fid_samples=fid_samples,
        steps_long=pick(smoke=40, cpu=2_000, gpu=FULL_RUN_STEPS), sample_every_long=pick(smoke=20, cpu=1000, gpu=1000),
        n_nearest=pick(smoke=32, cpu=256, gpu=fid_samples), n_train_nearest=pick(smoke=64, cpu=500, gpu=2000),
        smooth_1k=pick(smoke=5, cpu=50, gpu=50), smooth_long=pick(smoke=5, cpu=100, gpu=200))


@dataclass(frozen=True)
class PosteriorRegression:
    """Least-squares fit x_{t−1} ≈ slope·x_t + intercept over draws of the forward chain from one pixel value
    x_0, beside eq. 18's x_t coefficient, x_0 coefficient and variance σ̃_t² (the library's buffers)."""

    step: int
    x0: float
    n: int
    slope: float
    intercept: float
    residual_variance: float
    coef_xt: float
    coef_x0: float
    variance: float

    def __str__(self) -> str:
        return (f"t = {self.step}: slope {self.slope:.4f} vs {self.coef_xt:.4f}, intercept {self.intercept:.4f} vs "
                f"{self.coef_x0 * self.x0:.4f}, residual variance {self.residual_variance:.5f} vs "
                f"σ̃² = {self.variance:.5f}")


def posterior_regression(diffusion: Diffusion, step: int, x0: float = 0.6, n: int = 400_000,
                         generator: torch.Generator | None = None) -> PosteriorRegression:
    """Eq. 18 by Monte Carlo: draw x_{t−1} ~ q(x_{t−1} | x_0) and x_t ~ q(x_t | x_{t−1}) for ``n`` copies of
    one pixel (float64) and regress x_{t−1} on x_t. The pair is jointly Gaussian, so the regression is exact:
    slope → the x_t coefficient, intercept → the x_0 coefficient × x_0, residual variance → σ̃_t²."""
    if not 1 <= step <= diffusion.num_timesteps:
        raise ValueError(f"step must lie in 1..{diffusion.num_timesteps}, got {step}")
    a, ab_prev, i = diffusion.alphas, diffusion.alphas_cumprod_prev, step - 1
    x_prev = ab_prev[i].sqrt() * x0 + (1 - ab_prev[i]).sqrt() * torch.randn(n, generator=generator, dtype=torch.float64)
    x_t = a[i].sqrt() * x_prev + (1 - a[i]).sqrt() * torch.randn(n, generator=generator, dtype=torch.float64)
    slope, intercept = np.polyfit(x_t.numpy(), x_prev.numpy(), 1)
    resid = (x_prev - (slope * x_t + intercept)).var().item()
    return PosteriorRegression(step, x0, n, float(slope), float(intercept), resid,
                               float(diffusion.posterior_mean_coef2[i]), float(diffusion.posterior_mean_coef1[i]),
                               float(diffusion.posterior_variance[i]))


def _library_p_losses(diffusion: Diffusion, x_0: torch.Tensor, t: torch.Tensor,
                      noise: torch.Tensor) -> torch.Tensor:
    return diffusion.p_losses(x_0, t, noise)


@torch.no_grad()
def loss_per_step(diffusion: Diffusion, data: AFHQImages, generator: torch.Generator,
                  p_losses: Callable = _library_p_losses, n: int = 256) -> list[float]:
    """The loss ``p_losses(diffusion, x_0, t, ε)`` at every step t = 1…T on one fixed batch: ``n`` images and
    one ε drawn from ``generator`` (on the data's device), the same for every t. Where the training loss comes from."""
    x = data.batch(n, generator)
    noise = torch.randn(x.shape, generator=generator, device=data.device)
    return [p_losses(diffusion, x, torch.full((len(x),), k, device=data.device), noise).item()
            for k in range(1, diffusion.num_timesteps + 1)]


@dataclass
class ScoredRun:
    """A training run with its FID history (step → FID, ``None`` where it could not be measured)."""

    result: TrainResult
    checkpoint: Path
    fid_history: dict[int, float | None]
    config: AFHQConfig


def train_with_fid(diffusion: Diffusion, data: AFHQImages, cfg: AFHQConfig, loss_fn: Callable, fid: Any, *,
                   fid_samples: int, profile: str, retrain: bool = False, desc: str = "AFHQ cats") -> ScoredRun:
    """5.1–5.2: train ``diffusion`` by :func:`nbhelpers.training.train` under ``cfg`` (checkpoint
    ``afhq_ddpm_<steps>steps`` in ``profile``'s cache), scoring ``fid_samples`` EMA samples with ``fid`` (a
    :class:`nbhelpers.metrics.fid.FID`) every ``cfg.save_and_sample_every`` steps and at the end."""
    key = mark_key(train_key(cfg), data.folder)
    ckpt = checkpoint_path(f"afhq_ddpm_{cfg.train_steps}steps", key, profile=profile)
    hook = SampleAndScore(diffusion, ckpt, every=cfg.save_and_sample_every, fid=fid, fid_samples=fid_samples,
                          seed=cfg.seed)
    hook.catch_up()  # a resumed run first scores the step its interrupted run checkpointed but never scored
    res = train(diffusion, loss_fn, make_batch_fn(data, diffusion, cfg.batch_size), train_config(cfg),
                checkpoint=ckpt, key=key, retrain=retrain, on_step=hook, desc=desc)
    hook.finish(res)
    return ScoredRun(res, ckpt, hook.fid_history, cfg)


def training_line(res: TrainResult) -> str:
    """Steps, time (or "cached") and the mean loss of the first and last hundred steps."""
    losses = np.array(res.losses)
    speed = "cached" if res.loaded_from_cache else f"{res.steps_per_s:.2f} steps/s"
    return (f"{res.steps} steps in {res.seconds:.0f} s ({speed}); mean loss, first 100 steps "
            f"{losses[:100].mean():.4f}, last 100 steps {losses[-100:].mean():.4f}")


def training_metrics(res: TrainResult) -> dict[str, Any]:
    """The 5.1 run's recorded numbers: steps, seconds, mean loss of the first and of the last hundred steps."""
    losses = np.array(res.losses)
    return {"train_steps_1k": res.steps, "train_seconds_1k": res.seconds, "loss_first100": losses[:100].mean(),
            "loss_last100": losses[-100:].mean()}


def continue_training(first: ScoredRun, diffusion: Diffusion, data: AFHQImages, loss_fn: Callable, steps: int,
                      save_and_sample_every: int, *, profile: str, retrain: bool = False) -> TrainResult:
    """5.5: train the model of the run ``first`` (:func:`train_with_fid`) on to ``steps`` steps under its own
    checkpoint, saving every ``save_and_sample_every`` steps.

    Outside the smoke profile a finished 10,000-step model already in the cache is used instead (the
    assignment's run). The continued run starts from the first one's checkpoint (adopted, so it resumes).
    """
    cfg = first.config
    key = mark_key(train_key(cfg), data.folder)
    full = checkpoint_path(f"afhq_ddpm_{FULL_RUN_STEPS}steps", key, profile=profile)
    if profile != "smoke" and not retrain and full.exists() and load_checkpoint(full).get("finished"):
        steps = FULL_RUN_STEPS
    cfg_long = AFHQConfig(**{**cfg.__dict__, "train_steps": steps, "save_and_sample_every": save_and_sample_every})
    ckpt_long = checkpoint_path(f"afhq_ddpm_{steps}steps", key, profile=profile)
    if not ckpt_long.exists() or retrain:
        adopt_checkpoint(first.checkpoint, ckpt_long, key, train_config(cfg_long))  # continue the first run
    return train(diffusion, loss_fn, make_batch_fn(data, diffusion, cfg.batch_size), train_config(cfg_long),
                 checkpoint=ckpt_long, key=key, desc="AFHQ cats, longer")


def continued_line(res: TrainResult) -> str:
    """Where the 5.5 model came from: the cache, or how many steps were trained here and how long they took."""
    how = ("cached" if res.loaded_from_cache
           else f"{res.steps - res.resumed_from} steps trained here in {res.seconds:.0f} s")
    return f"model at {res.steps} steps ({how})"


@dataclass
class FIDCurve:
    """5.2's FID over training: the figure (``None`` without values), the recorded numbers, and the
    sentence to print when FID is missing."""

    figure: Any
    metrics: dict[str, Any]
    missing: str


def fid_curve(history: dict[int, float | None], fid: Any, fid_samples: int) -> FIDCurve:
    """The FID history of a :class:`ScoredRun` as a figure and metrics (``fid_available``, ``fid_history``
    and, when there is a curve, ``fid_final``, its last value)."""
    metrics: dict[str, Any] = {"fid_available": fid.available,
                               "fid_history": {str(s): v for s, v in sorted(history.items())}}
    fig = fid_figure(history, "5.2 · " + fid.describe(fid_samples)) if fid.available else None
    if fig is not None:
        metrics["fid_final"] = [v for _, v in sorted(history.items()) if v is not None][-1]
    missing = (f"FID is missing at steps {sorted(history)} (the reason is printed above); "
               "the curve needs the Inception weights.")
    return FIDCurve(fig, metrics, missing)


@dataclass
class OfflineScores:
    """5.2 measured on the 5.5 model: its FID (``None`` without the Inception weights) and the copy check
    of its samples against the training images (:func:`nbhelpers.metrics.nearest.copy_check`)."""

    steps: int
    samples: torch.Tensor = field(repr=False)
    fid: float | None
    fid_note: str
    copies: Any = field(repr=False)

    @property
    def metrics(self) -> dict[str, Any]:
        return {"fid_long": self.fid, "fid_long_samples": len(self.samples),
                **{f"copies/{k}": v for k, v in self.copies.as_dict().items()}}

    def __str__(self) -> str:
        return f"FID after {self.steps} steps: {self.fid_note}\n{copy_summary(self.copies)}"


def score_offline(model: torch.nn.Module, train_images: torch.Tensor, fid: Any, n: int, n_train: int, seed: int,
                  steps: int) -> OfflineScores:
    """Draw ``n`` samples of ``model`` (generator seed + 2), score their FID where ``fid`` is available, and
    check them for copies against ``n_train`` training images (generator ``seed``)."""
    samples = sample_images(model, n, torch.Generator().manual_seed(seed + 2))
    value = fid(samples) if fid.available else None
    note = f"{value:.1f}, {fid.describe(n)}" if value is not None else f"not measured ({fid.reason})"
    chk = copy_check(samples, train_images, n_train=n_train, generator=torch.Generator().manual_seed(seed))
    return OfflineScores(steps, samples, value, note, chk)
