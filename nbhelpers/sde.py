"""Stochastic differential equations dX_t = f(X_t, t) dt + g(X_t, t) dW_t as small objects.

Each SDE exposes ``drift(x, t)`` (same shape as x) and ``diffusion(x, t)`` (a number or a tensor
broadcastable to x), the interface :func:`nbhelpers.solvers.euler_maruyama` integrates. Shapes:
``x`` is ``(B, ...)``, ``t`` a float tensor ``(B,)``.

Directions. Brownian motion, OU and Langevin are time-homogeneous (t ≥ 0 is ordinary time).
:class:`FlowScoreSDE` follows the flow-matching convention of :mod:`nbhelpers.paths`
(**t = 0 noise, t = 1 data**). :class:`VPSDE` keeps Song et al.'s direction
(**t = 0 data, t = 1 noise**) and is sampled backwards, from t = 1 to t ≈ 0.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import torch
from torch import Tensor

from .devices import randn
from .paths import PathSample, batch_time, expand_time
from .schedules import VPMarginalSchedule
from .solvers import Solution, euler_maruyama

__all__ = ["SDE", "BrownianMotion", "OrnsteinUhlenbeck", "Langevin", "FlowScoreSDE", "VPSDE", "ReverseVPSDE"]


def _check_nonneg(label: str, v: Any, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)) or v < 0 or (positive and v == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{label} must be a finite number {bound}, got {v!r}")
    return float(v)


def _check_callable(label: str, fn: Any) -> None:
    if not callable(fn):
        raise ValueError(f"{label} must be a callable, got {fn!r}")


class SDE:
    """Base class: dX = drift(X, t) dt + diffusion(X, t) dW."""

    def drift(self, x: Tensor, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor | float:  # pragma: no cover - abstract
        raise NotImplementedError

    def simulate(self, x0: Tensor, t0: float, t1: float, n_steps: int, generator: torch.Generator | None = None,
                 return_trajectory: bool = False) -> Solution:
        """Euler–Maruyama from ``x0`` at ``t0`` to ``t1`` (see :func:`nbhelpers.solvers.euler_maruyama`)."""
        return euler_maruyama(self.drift, self.diffusion, x0, t0, t1, n_steps,
                              generator=generator, return_trajectory=return_trajectory)


class BrownianMotion(SDE):
    """dX = σ dW: drift 0 (not noise!), diffusion σ. X_t ~ N(x0, σ² t I)."""

    def __init__(self, sigma: float = 1.0) -> None:
        self.sigma = _check_nonneg("sigma", sigma)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, x: Tensor, t: Tensor) -> float:
        return self.sigma

    def mean(self, x0: Tensor, t: float | Tensor) -> Tensor:
        """E[X_t | X_0 = x0] = x0."""
        return x0.clone()

    def variance(self, t: float | Tensor) -> Tensor:
        """Var[X_t] = σ² t (per coordinate)."""
        return self.sigma ** 2 * torch.as_tensor(t)

    def __repr__(self) -> str:
        return f"BrownianMotion(sigma={self.sigma:g})"


class OrnsteinUhlenbeck(SDE):
    """dX = −θ X dt + σ dW (θ > 0).

    X_t | X_0 = x0 ~ N(x0 e^{−θt}, σ²/(2θ) (1 − e^{−2θt})); stationary law N(0, σ²/(2θ)).
    """

    def __init__(self, theta: float = 1.0, sigma: float = 1.0) -> None:
        self.theta = _check_nonneg("theta", theta, positive=True)
        self.sigma = _check_nonneg("sigma", sigma)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -self.theta * x

    def diffusion(self, x: Tensor, t: Tensor) -> float:
        return self.sigma

    def mean(self, x0: Tensor, t: float | Tensor) -> Tensor:
        """E[X_t | X_0 = x0] = x0 e^{−θt} (t a scalar or per-sample (B,))."""
        t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
        if t.ndim == 1:
            t = expand_time(t, x0)
        return x0 * torch.exp(-self.theta * t)

    def variance(self, t: float | Tensor) -> Tensor:
        """Var[X_t | X_0] = σ²/(2θ) (1 − e^{−2θt})."""
        t = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not isinstance(t, Tensor) else t
        return self.stationary_variance * (1 - torch.exp(-2 * self.theta * t))

    @property
    def stationary_variance(self) -> float:
        """σ²/(2θ)."""
        return self.sigma ** 2 / (2 * self.theta)

    def stationary_score(self, x: Tensor) -> Tensor:
        """∇log N(x; 0, σ²/2θ) = −x / (σ²/2θ) = −2θx/σ²."""
        return -x / self.stationary_variance

    def __repr__(self) -> str:
        return f"OrnsteinUhlenbeck(theta={self.theta:g}, sigma={self.sigma:g})"


class Langevin(SDE):
    """Overdamped Langevin dynamics dX = ½σ² ∇log p(X) dt + σ dW; its stationary law is p.

    ``score_fn(x)`` returns ∇log p(x) for a fixed density p (e.g. ``gmm.score``).
    """

    def __init__(self, score_fn: Callable[[Tensor], Tensor], sigma: float = 1.0) -> None:
        _check_callable("score_fn", score_fn)
        self.score_fn = score_fn
        self.sigma = _check_nonneg("sigma", sigma)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return 0.5 * self.sigma ** 2 * self.score_fn(x)

    def diffusion(self, x: Tensor, t: Tensor) -> float:
        return self.sigma

    def __repr__(self) -> str:
        return f"Langevin(sigma={self.sigma:g})"


class FlowScoreSDE(SDE):
    """Sampling SDE of a Gaussian path (t = 0 noise → t = 1 data), seed 000 task 5b:

        dX = [u_t(X) + σ_t²/2 · ∇log p_t(X)] dt + σ_t dW.

    For every σ_t ≥ 0 its marginals are the path's p_t (σ = 0 is the flow ODE).
    ``velocity_fn(x, t)`` and ``score_fn(x, t)`` are the marginal fields (or trained networks);
    ``sigma`` a number or a callable σ(t) of a ``(B,)`` tensor.
    """

    def __init__(self, velocity_fn: Callable[[Tensor, Tensor], Tensor], score_fn: Callable[[Tensor, Tensor], Tensor],
                 sigma: float | Callable[[Tensor], Tensor] = 1.0) -> None:
        _check_callable("velocity_fn", velocity_fn)
        _check_callable("score_fn", score_fn)
        if not callable(sigma):
            sigma = _check_nonneg("sigma", sigma)
        self.velocity_fn, self.score_fn, self.sigma = velocity_fn, score_fn, sigma

    def _sigma(self, x: Tensor, t: Tensor) -> Tensor | float:
        if callable(self.sigma):
            return expand_time(torch.as_tensor(self.sigma(t), dtype=x.dtype, device=x.device).expand(x.shape[0]), x)
        return self.sigma

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        s = self._sigma(x, t)
        u = self.velocity_fn(x, t)
        if isinstance(s, float) and s == 0.0:
            return u  # skip the score network when it is not needed
        return u + 0.5 * s ** 2 * self.score_fn(x, t)

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor | float:
        return self._sigma(x, t)


class VPSDE(SDE):
    """Variance-preserving SDE (Song et al. 2021), **t = 0 data, t = 1 noise**:

        dX = −½ β(t) X dt + √β(t) dW,   β(t) = β_min + t (β_max − β_min).

    X_t | X_0 = x0 ~ N(c_t x0, σ_t² I) with c_t = exp(−½ ∫_0^t β) and σ_t² = 1 − exp(−∫_0^t β),
    ∫_0^t β = β_min t + ½ t² (β_max − β_min); the formulas live in ``marginal_schedule``
    (:class:`~nbhelpers.schedules.VPMarginalSchedule`, the same marginal as a path in τ = 1 − t,
    for the exact mixture scores of :mod:`nbhelpers.distributions`). Sample by integrating the reverse SDE
    dX = [f − g² ∇log p_t] dt + g dW̄ (or the probability-flow ODE dX = [f − ½ g² ∇log p_t] dt)
    from t = 1 down to a small t.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min = _check_nonneg("beta_min", beta_min, positive=True)
        self.beta_max = _check_nonneg("beta_max", beta_max, positive=True)
        if self.beta_max < self.beta_min:
            raise ValueError(f"need beta_min <= beta_max, got beta_min={beta_min!r}, beta_max={beta_max!r}")
        self.marginal_schedule = VPMarginalSchedule(self.beta_min, self.beta_max)

    def __repr__(self) -> str:
        return f"VPSDE(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"

    def beta(self, t: Tensor) -> Tensor:
        """β(t) = β_min + t (β_max − β_min)."""
        return self.marginal_schedule.sde_beta(t)

    def integrated_beta(self, t: Tensor) -> Tensor:
        """∫_0^t β(s) ds = β_min t + ½ t² (β_max − β_min)."""
        return self.marginal_schedule.integrated_beta(t)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t) = −½ β(t) x."""
        return -0.5 * expand_time(self.beta(batch_time(t, x)), x) * x

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        """g(t) = √β(t), shaped (B, 1, …) to broadcast against x."""
        return expand_time(torch.sqrt(self.beta(batch_time(t, x))), x)

    def marginal_mean_coef(self, t: float | Tensor) -> Tensor:
        """c_t = exp(−½ ∫_0^t β)."""
        t = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not isinstance(t, Tensor) else t
        return self.marginal_schedule.mean_coef(t)

    def marginal_std(self, t: float | Tensor) -> Tensor:
        """σ_t = sqrt(1 − exp(−∫_0^t β))."""
        t = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not isinstance(t, Tensor) else t
        return self.marginal_schedule.std(t)

    def marginal(self, x0: Tensor, t: float | Tensor, generator: torch.Generator | None = None) -> PathSample:
        """Draw x_t = c_t x0 + σ_t ε in closed form. Returns ``PathSample(x, eps, t)``; t (B,) or a scalar."""
        tb = batch_time(t, x0)
        eps = randn(x0.shape, generator, x0.device, x0.dtype)
        c = expand_time(self.marginal_mean_coef(tb), x0)
        s = expand_time(self.marginal_std(tb), x0)
        return PathSample(x=c * x0 + s * eps, eps=eps, t=tb)

    def reverse_drift(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Reverse-time drift f − g² s (integrate with dt < 0, i.e. t from 1 down to 0)."""
        return self.drift(x, t) - self.diffusion(x, t) ** 2 * score

    def probability_flow_drift(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Probability-flow ODE field f − ½ g² s (same marginals, no noise)."""
        return self.drift(x, t) - 0.5 * self.diffusion(x, t) ** 2 * score

    def prior_sample(self, shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """x_1 ~ N(0, I) (the t = 1 marginal is N(0, I) up to c_1 ≈ 0)."""
        return randn(shape, generator, device, dtype)

    def reverse(self, score_fn: Callable[[Tensor, Tensor], Tensor]) -> "ReverseVPSDE":
        """The reverse-time SDE as an object for ``euler_maruyama(sde, x1, 1.0, t_min, n_steps)``."""
        return ReverseVPSDE(self, score_fn)

    def probability_flow(self, score_fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        """The probability-flow ODE field (x, t) ↦ f − ½ g² s(x, t) for ``euler``/``heun`` from t = 1 to t_min."""
        _check_callable("score_fn", score_fn)
        return lambda x, t: self.probability_flow_drift(x, t, score_fn(x, t))


class ReverseVPSDE(SDE):
    """dX = [f(X, t) − g(t)² s(X, t)] dt + g(t) dW̄, to be integrated from t = 1 down to t ≈ 0 (h < 0)."""

    def __init__(self, vp: VPSDE, score_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        _check_callable("score_fn", score_fn)
        self.vp, self.score_fn = vp, score_fn

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return self.vp.reverse_drift(x, t, self.score_fn(x, t))

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return self.vp.diffusion(x, t)
