"""The Gaussian conditional probability path and the conversions between predictions.

Direction: t ∈ [0, 1], **t = 0 noise, t = 1 data**. For a data point z and ε ~ N(0, I),

    x_t = α_t z + β_t ε,            p_t(x | z) = N(α_t z, β_t² I).

Conditional targets (derived by differentiating x_t in t):

    u_t(x | z)       = (α̇ − β̇ α/β) z + (β̇/β) x        (general, any x)
                     = α̇ z + β̇ ε                      (x on the path; no division)
    ∇log p_t(x | z)  = −(x − α z) / β²  = −ε / β.

All four common network outputs — noise ε, score s, velocity u and data (z, "x̂₀") — describe
the same thing once x and t are known; :meth:`GaussianPath.convert` maps any one to any
other. Shapes: ``x``/``z``/``eps`` are ``(B, ...)``; ``t`` is ``(B,)`` (or a scalar) and is
broadcast over the data dimensions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import batch_time  # the time normaliser; re-exported here for existing callers
from .devices import randn
from .schedules import Schedule, ScheduleValues, get_schedule, validate_schedule

__all__ = ["PathSample", "GaussianPath", "PREDICTION_KINDS", "batch_time", "expand_time"]

PREDICTION_KINDS: tuple[str, ...] = ("eps", "score", "velocity", "data")


def expand_time(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample ``(B,)`` tensor to ``(B, 1, …, 1)`` so it broadcasts against ``x``."""
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


@dataclass
class PathSample:
    """A draw from the conditional path: ``x = α_t z + β_t eps`` at times ``t`` (B,)."""

    x: Tensor
    eps: Tensor
    t: Tensor


class GaussianPath:
    """p_t(x | z) = N(α_t z, β_t² I) for a schedule (t = 0 noise, t = 1 data).

    ``schedule`` is a :class:`~nbhelpers.schedules.Schedule` or a name for ``get_schedule``. Every
    schedule is checked on entry (:func:`~nbhelpers.schedules.validate_schedule`: α_0 = β_1 = 0,
    α_1 = β_0 = 1, monotone, derivatives), so one with α and β swapped stops here instead of training.
    """

    def __init__(self, schedule: Schedule | str = "linear") -> None:
        self.schedule = get_schedule(schedule)
        validate_schedule(self.schedule)

    def __repr__(self) -> str:
        return f"GaussianPath({self.schedule!r})"

    def coefficients(self, t: float | Tensor, x: Tensor) -> ScheduleValues:
        """α, β, α̇, β̇ at ``t``, each shaped ``(B, 1, …, 1)`` to broadcast against ``x``."""
        v = self.schedule(batch_time(t, x))
        return ScheduleValues(*(expand_time(c, x) for c in (v.alpha, v.beta, v.d_alpha, v.d_beta)))

    # ---------------------------------------------------------------- sampling
    def sample(self, z: Tensor, t: float | Tensor, generator: torch.Generator | None = None,
               eps: Tensor | None = None) -> PathSample:
        """x_t = α_t z + β_t ε. Shapes: z (B, ...), t (B,) or scalar, eps like z.

        ``eps=None`` draws a fresh ε ~ N(0, I) from ``generator``; a given ``eps`` is used as is
        (no draw, ``generator`` unused), so the same noise can be carried across times or schedules.
        """
        tb = batch_time(t, z)
        if eps is None:
            eps = randn(z.shape, generator, z.device, z.dtype)
        elif not isinstance(eps, Tensor) or eps.shape != z.shape:
            raise ValueError(f"eps must be a tensor shaped like z {tuple(z.shape)}, "
                             f"got {type(eps).__name__} {tuple(getattr(eps, 'shape', ()))}")
        c = self.coefficients(tb, z)
        return PathSample(x=c.alpha * z + c.beta * eps, eps=eps, t=tb)

    def mean_std(self, z: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """Mean α_t z and standard deviation β_t (broadcastable) of p_t(· | z)."""
        c = self.coefficients(t, z)
        return c.alpha * z, c.beta

    # ---------------------------------------------------------------- conditional targets
    def conditional_velocity(self, x: Tensor, z: Tensor, t: float | Tensor) -> Tensor:
        """u_t(x | z) = (α̇ − β̇ α/β) z + (β̇/β) x  (divides by β: use t < 1)."""
        c = self.coefficients(t, x)
        return (c.d_alpha - c.d_beta * c.alpha / c.beta) * z + (c.d_beta / c.beta) * x

    def velocity_from_noise(self, z: Tensor, eps: Tensor, t: float | Tensor) -> Tensor:
        """u_t(x_t | z) = α̇ z + β̇ ε for x_t = α z + β ε (the regression target; safe at every t)."""
        c = self.coefficients(t, z)
        return c.d_alpha * z + c.d_beta * eps

    def conditional_score(self, x: Tensor, z: Tensor, t: float | Tensor) -> Tensor:
        """∇_x log p_t(x | z) = −(x − α z) / β²  (divides by β²: use t < 1)."""
        c = self.coefficients(t, x)
        return -(x - c.alpha * z) / c.beta ** 2

    # ---------------------------------------------------------------- conversions
    def convert(self, pred: Tensor, x: Tensor, t: float | Tensor, source: str, target: str) -> Tensor:
        """Convert a prediction at (x, t) between ``"eps" | "score" | "velocity" | "data"``.

        Everything goes through the pair (ẑ, ε̂) with x = α ẑ + β ε̂:
        eps → ẑ = (x − β ε)/α;  data → ε̂ = (x − α ẑ)/β;  score → ε̂ = −β s;
        velocity u = α̇ ẑ + β̇ ε̂ → ẑ = (β u − β̇ x)/D, ε̂ = (α̇ x − α u)/D with D = α̇β − β̇α > 0.
        Outputs: score = −ε̂/β, velocity = α̇ ẑ + β̇ ε̂.
        Division by α (t = 0) or β (t = 1) happens only where the formulas above need it.
        """
        for label, kind in (("source", source), ("target", target)):
            if kind not in PREDICTION_KINDS:
                raise ValueError(f"unknown {label} prediction kind {kind!r}; valid choices: {', '.join(PREDICTION_KINDS)}")
        if pred.shape != x.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} must match x {tuple(x.shape)}")
        if source == target:
            return pred
        c = self.coefficients(t, x)
        z_hat = eps_hat = None
        if source == "eps":
            eps_hat = pred
        elif source == "score":
            eps_hat = -c.beta * pred
        elif source == "data":
            z_hat = pred
        else:  # velocity
            det = c.d_alpha * c.beta - c.d_beta * c.alpha
            z_hat = (c.beta * pred - c.d_beta * x) / det
            eps_hat = (c.d_alpha * x - c.alpha * pred) / det
        if target in ("eps", "score") and eps_hat is None:
            eps_hat = (x - c.alpha * z_hat) / c.beta
        if target in ("data", "velocity") and z_hat is None:
            z_hat = (x - c.beta * eps_hat) / c.alpha
        if target == "eps":
            return eps_hat
        if target == "score":
            return -eps_hat / c.beta
        if target == "data":
            return z_hat
        if eps_hat is None:
            eps_hat = (x - c.alpha * z_hat) / c.beta
        return c.d_alpha * z_hat + c.d_beta * eps_hat

    def eps_to_score(self, eps: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """s = −ε / β."""
        return self.convert(eps, x, t, "eps", "score")

    def score_to_eps(self, score: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """ε = −β s."""
        return self.convert(score, x, t, "score", "eps")

    def eps_to_data(self, eps: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """ẑ = (x − β ε) / α."""
        return self.convert(eps, x, t, "eps", "data")

    def score_to_velocity(self, score: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """u = (α̇/α) x + (α̇ β²/α − β̇ β) s."""
        return self.convert(score, x, t, "score", "velocity")

    def velocity_to_score(self, velocity: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """s = −ε̂/β with ε̂ = (α̇ x − α u)/(α̇β − β̇α)."""
        return self.convert(velocity, x, t, "velocity", "score")

    def eps_to_velocity(self, eps: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """u = α̇ (x − β ε)/α + β̇ ε."""
        return self.convert(eps, x, t, "eps", "velocity")

    def velocity_to_eps(self, velocity: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """ε̂ = (α̇ x − α u)/(α̇β − β̇α)."""
        return self.convert(velocity, x, t, "velocity", "eps")
