"""Training losses: pure functions of (model, data batch, path or SDE, generator) → scalar.

Every network is called as ``model(x, t)`` (or ``model(x, t, y)`` when labels are given) with
float ``t`` of shape ``(B,)``. Data may have any shape ``(B, ...)`` (2D points or images); the
squared error is averaged over the batch *and* the data dimensions (‖·‖²/d per sample), so
the loss scale does not depend on the image size.

Time directions: :func:`flow_matching_loss` and :func:`score_matching_loss` follow
:mod:`nbhelpers.paths` (t = 0 noise, t = 1 data, x_t = α_t z + β_t ε); :func:`vpsde_dsm_loss`
keeps Song's VP-SDE direction (t = 0 data, t = 1 noise, x_t = m_t x_0 + σ_t ε).
The DDPM ε-loss lives in :mod:`nbhelpers.ddpm`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from .devices import randn
from .paths import GaussianPath, expand_time

__all__ = ["flow_matching_loss", "score_matching_loss", "vpsde_dsm_loss", "sample_training_times", "SCORE_WEIGHTINGS",
           "TIME_SAMPLINGS"]

Model = Callable[..., Tensor]

SCORE_WEIGHTINGS: tuple[str, ...] = ("beta2", "none")
TIME_SAMPLINGS: tuple[str, ...] = ("uniform", "logit_normal")


def _uniform_t(z: Tensor, lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(z.shape[0], generator=generator, device=z.device, dtype=z.dtype)
    return lo + (hi - lo) * u


def sample_training_times(z: Tensor, time_sampling: str = "uniform",
                          generator: torch.Generator | None = None) -> Tensor:
    """The flow-matching loss's t, one per example, on ``z``'s device.

    ``"uniform"``: t ~ U[0, 1] (seed 000, Algorithm 1). ``"logit_normal"``: t = sigmoid(n), n ~ N(0, 1)
    (Esser et al. 2024, "Scaling rectified flow transformers"): the same loss, its weight moved from the
    two ends, where the target is easy (pure noise, or the data itself), to the middle of the path, where
    the image is decided; a model trained on few steps spends them there.
    """
    if time_sampling == "uniform":
        return _uniform_t(z, 0.0, 1.0, generator)
    if time_sampling == "logit_normal":
        n = randn((z.shape[0],), generator, z.device, z.dtype)
        return torch.sigmoid(n)
    raise ValueError(f"unknown time_sampling {time_sampling!r}; valid choices: {', '.join(TIME_SAMPLINGS)}")


def _call(model: Model, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
    out = model(x, t) if y is None else model(x, t, y)
    if out.shape != x.shape:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for input {tuple(x.shape)}; it must match")
    return out


def _check_path(path: Any) -> GaussianPath:
    if not isinstance(path, GaussianPath):
        raise ValueError(f"path must be an nbhelpers.paths.GaussianPath, got {path!r}")
    return path


def flow_matching_loss(
    model: Model,
    z: Tensor,
    path: GaussianPath,
    generator: torch.Generator | None = None,
    y: Tensor | None = None,
    time_sampling: str = "uniform",
) -> Tensor:
    """Conditional flow matching (seed 000, Algorithm 1):

        t ~ U[0, 1], ε ~ N(0, I), x_t = α_t z + β_t ε,
        L(θ) = E ‖u_θ(x_t, t) − (α̇_t z + β̇_t ε)‖² / d.

    ``time_sampling="logit_normal"`` draws t from :func:`sample_training_times`' logit-normal instead; the
    minimiser is the same marginal field wherever the density of t is positive.

    α̇ z + β̇ ε is u_t(x_t | z) = (α̇ − β̇ α/β) z + (β̇/β) x_t with x_t on the conditional path
    (substitute x_t − α z = β ε); it needs no division by β. Its minimiser is the marginal field
    u_t(x) = E[α̇ z + β̇ ε | x_t = x]. Shapes: z ``(B, ...)``, y ``(B,)`` or None.
    """
    path = _check_path(path)
    t = sample_training_times(z, time_sampling, generator)
    s = path.sample(z, t, generator=generator)
    target = path.velocity_from_noise(z, s.eps, t)
    return (_call(model, s.x, t, y) - target).square().mean()


def score_matching_loss(
    model: Model,
    z: Tensor,
    path: GaussianPath,
    generator: torch.Generator | None = None,
    weighting: str = "beta2",
    t_max: float = 0.999,
    y: Tensor | None = None,
) -> Tensor:
    """Conditional score matching (seed 000 task 5a) with target ∇log p_t(x | z) = −(x − α_t z)/β_t² = −ε/β_t:

        t ~ U[0, t_max], x_t = α_t z + β_t ε,
        weighting "none":  L = E ‖s_θ(x_t, t) + ε/β_t‖² / d          (the assignment's loss)
        weighting "beta2": L = E β_t² ‖s_θ(x_t, t) + ε/β_t‖² / d = E ‖β_t s_θ + ε‖² / d.

    Both have the marginal score ∇log p_t as minimiser (a positive weight λ(t) does not move the
    minimiser at any t). Unweighted, the target's variance 1/β_t² explodes as t → 1 (β → 0): the
    gradient is dominated by the last few percent of t. λ = β² makes every t contribute O(1)
    (it is the ε-prediction loss written for a score network), which is why it is the default.
    ``t_max < 1`` keeps β_t away from 0.
    """
    path = _check_path(path)
    if weighting not in SCORE_WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid choices: {', '.join(SCORE_WEIGHTINGS)}")
    if not (0.0 < t_max < 1.0):
        raise ValueError(f"t_max must lie in (0, 1) so that β_t > 0, got {t_max!r}")
    t = _uniform_t(z, 0.0, t_max, generator)
    s = path.sample(z, t, generator=generator)
    beta = expand_time(path.schedule(t).beta, z)
    score = _call(model, s.x, t, y)
    if weighting == "beta2":
        return (beta * score + s.eps).square().mean()
    return (score + s.eps / beta).square().mean()


def vpsde_dsm_loss(
    model: Model,
    x0: Tensor,
    sde: Any,
    generator: torch.Generator | None = None,
    eps: float = 1e-5,
    y: Tensor | None = None,
) -> Tensor:
    """Denoising score matching for the VP-SDE (seed 002, eq. 2), Song's direction (t = 0 data):

        t ~ U[eps, 1], ε ~ N(0, I), x_t = m_t x_0 + σ_t ε,
        L = E ‖w(t) (s_θ(x_t, t) + ε/σ_t)‖² / d  with w(t) = σ_t,  i.e.  E ‖σ_t s_θ(x_t, t) + ε‖² / d.

    ``sde`` provides ``marginal_mean_coef(t)`` (m_t) and ``marginal_std(t)`` (σ_t), e.g.
    ``nb.sde.VPSDE``. ``eps`` keeps σ_t > 0.
    """
    if not (0.0 <= eps < 1.0):
        raise ValueError(f"eps must lie in [0, 1), got {eps!r}")
    t = _uniform_t(x0, eps, 1.0, generator)
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    m = expand_time(torch.as_tensor(sde.marginal_mean_coef(t), dtype=x0.dtype, device=x0.device), x0)
    std = expand_time(torch.as_tensor(sde.marginal_std(t), dtype=x0.dtype, device=x0.device), x0)
    xt = m * x0 + std * noise
    return (std * _call(model, xt, t, y) + noise).square().mean()
