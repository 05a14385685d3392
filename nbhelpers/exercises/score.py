"""Exercises of notebook 05: the VP-SDE's denoising loss and reverse step, and the score read from a velocity.

Time directions are those of the modules checked: the VP-SDE (:class:`nbhelpers.sde.VPSDE`) keeps Song's
t = 0 data, t = 1 noise; the Gaussian path (:mod:`nbhelpers.paths`) has t = 0 noise, t = 1 data.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from .. import distributions as _distributions
from .. import losses as _losses
from .. import paths as _paths
from .. import schedules as _schedules
from .. import sde as _sde
from .. import solvers as _solvers
from ..recipes import score_sde as _recipe
from .core import Case, Exercise, register
from .core import path_of as _path_of
from .core import gen as _gen
from .core import randn as _randn
from .core import se_var as _se_var

_VP = _sde.VPSDE(beta_min=0.1, beta_max=20.0)


def _standard_normal_score(x: Tensor, t: Tensor) -> Tensor:
    """The exact score of N(0, I) data under the VP-SDE: c_t² + σ_t² = 1, so p_t = N(0, I) at every t."""
    return -x


# --------------------------------------------------------------------------- Q3 · the σ-weighted DSM loss
def _dsm_reference() -> Callable:
    def vp_dsm_loss(model: Callable, x0: Tensor, sde: Any, generator: torch.Generator | None = None,
                    eps: float = 1e-5) -> Tensor:
        return _losses.vpsde_dsm_loss(model, x0, sde, generator, eps)
    return vp_dsm_loss


def _c2_moments(eps: float = 1e-5) -> tuple[float, float]:
    """E[c_t²] and E[c_t⁴] for t ~ U[eps, 1] under :data:`_VP` (trapezoid rule on 200,001 points, float64)."""
    t = torch.linspace(eps, 1.0, 200_001, dtype=torch.float64)
    c2 = torch.exp(-_VP.integrated_beta(t))
    return (float(torch.trapezoid(c2, t)) / (1 - eps), float(torch.trapezoid(c2 ** 2, t)) / (1 - eps))


def _dsm_cases() -> list[Case]:
    x2, img = _randn(64, 2, seed=81), _randn(4, 1, 5, 5, seed=82)
    n = 20_000
    m2, m4 = _c2_moments()

    def field(x: Tensor, t: Tensor) -> Tensor:  # a fixed "score model" that reads t
        return -x + _paths.expand_time(t, x)

    return [
        Case("64 points in 2D, a fixed model −x + t: against nbhelpers.losses.vpsde_dsm_loss (same generator)",
             lambda f: f(field, x2, _VP, _gen(12)), lambda: _losses.vpsde_dsm_loss(field, x2, _VP, _gen(12)),
             "draw t = eps + (1 − eps)·torch.rand(B, generator=generator) first, then ε = torch.randn(x0.shape, "
             "generator=generator); x_t = c_t x0 + σ_t ε (sde.marginal_mean_coef(t), sde.marginal_std(t)); return "
             "the mean of (σ_t·model(x_t, t) + ε)²"),
        Case("an image batch (4, 1, 5, 5): c_t and σ_t broadcast over the pixels",
             lambda f: f(field, img, _VP, _gen(13)), lambda: _losses.vpsde_dsm_loss(field, img, _VP, _gen(13)),
             "c_t and σ_t have shape (B,): reshape them to (B, 1, …, 1) (nb.paths.expand_time) before multiplying"),
        Case(f"N(0, I) data: its exact score −x has loss E_t[c_t²] = {m2:.4f} ({n} points; per coordinate the "
             "residual is c_t·η with η ~ N(0, 1))",
             lambda f: float(f(_standard_normal_score, _randn(n, 2, seed=14), _VP, _gen(15))), lambda: m2,
             "the weight is σ_t on the model's output: σ_t·s(x_t, t) + ε, squared — not s + ε/σ_t, and not "
             "σ_t² or no weight at all",
             atol=4 * math.sqrt((2 * m4 - m2 ** 2) / n), rtol=0.0),
        Case(f"the zero model has loss E‖ε‖²/d = 1 ({n} points in 2D)",
             lambda f: float(f(lambda x, t: torch.zeros_like(x), _randn(n, 2, seed=16), _VP, _gen(17))),
             lambda: 1.0,
             "average the squared residual over the batch and the coordinates (.square().mean()), not a sum",
             atol=4 * math.sqrt(2 / (2 * n)), rtol=0.0),
    ]


# --------------------------------------------------------------------------- Q3 · one reverse-SDE step
def _reverse_reference() -> Callable:
    def vp_reverse_step(sde: Any, score_fn: Callable, x: Tensor, t: Tensor, dt: Tensor,
                        generator: torch.Generator | None = None) -> Tensor:
        rev = sde.reverse(score_fn)  # dX = [f − g² s] dt + g dW̄, stepped as euler_maruyama does with h = −dt
        dt = torch.as_tensor(dt, dtype=x.dtype, device=x.device)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x - dt * rev.drift(x, t) + rev.diffusion(x, t) * torch.sqrt(dt) * noise
    return vp_reverse_step


def _gmm_score(x: Tensor, t: Tensor) -> Tensor:
    """The exact score of the series' 5-mode mixture under :data:`_VP` (its marginal is a path in τ = 1 − t)."""
    return _distributions.toy_gmm().marginal_score(x, 1 - t, _VP.marginal_schedule)


def _reverse_cases() -> list[Case]:
    x, img = _randn(6, 2, seed=91), _randn(3, 1, 4, 4, seed=92)
    x1 = _randn(200, 2, seed=93)
    n, t0, dt = 20_000, 0.5, torch.tensor(0.01)
    beta, h = float(_VP.beta(torch.tensor(t0))), float(dt)

    def one_em_step(score: Callable, x: Tensor, seed: int) -> Tensor:
        return _solvers.euler_maruyama(_VP.reverse(score), None, x, t0, t0 - h, 1, generator=_gen(seed)).x

    def from_two(f: Callable) -> Tensor:  # n copies of x = 2 (1D), one step with the exact score −x
        return f(_VP, _standard_normal_score, torch.full((n, 1), 2.0), torch.full((n,), t0), dt, _gen(21))

    return [
        Case("one step from t = 0.5 with dt = 0.01 (6 points in 2D, the mixture's exact score): against "
             "nbhelpers.solvers.euler_maruyama on nbhelpers.sde.VPSDE.reverse, same seed",
             lambda f: f(_VP, _gmm_score, x, torch.full((6,), t0), dt, _gen(18)),
             lambda: one_em_step(_gmm_score, x, 18),
             "x + [−f(x, t) + g(t)²·s(x, t)]·dt + g(t)·√dt·ξ with f = sde.drift, g = sde.diffusion and "
             "ξ = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype), drawn once"),
        Case("an image batch (3, 1, 4, 4), score −x: the same step shape for shape",
             lambda f: f(_VP, _standard_normal_score, img, torch.full((3,), t0), dt, _gen(19)),
             lambda: one_em_step(_standard_normal_score, img, 19),
             "sde.drift(x, t) and sde.diffusion(x, t) already broadcast against x; keep every term shaped like x"),
        Case(f"a moment: from x = 2 with the exact score −x of N(0, I) data ({n} copies), the mean is "
             f"x·(1 − β(t)·dt/2) = {2 * (1 - beta * h / 2):.4f}",
             lambda f: float(from_two(f).mean()), lambda: 2 * (1 - beta * h / 2),
             "the reverse drift is −f + g²s = ½βx − βx here: the step moves against the forward drift f and "
             "adds g² times the score (check both signs and that g is squared)",
             atol=4 * math.sqrt(beta * h / n), rtol=0.0),
        Case(f"a moment: the same step has variance g(t)²·dt = β(t)·dt = {beta * h:.4f}",
             lambda f: float(from_two(f).var()), lambda: beta * h,
             "the noise is g(t)·√dt·ξ: scaled by √dt, not dt, and by g = √β, not β",
             atol=4 * _se_var(n) * beta * h, rtol=0.0),
        Case("50 steps from t = 1 to 10⁻³ (nbhelpers.recipes.score_sde.reverse_sample) equal the library's "
             "reverse sampler with the same generator",
             lambda f: _recipe.reverse_sample(f, _VP, _gmm_score, x1, 1e-3, 50, generator=_gen(20)).x,
             lambda: _solvers.euler_maruyama(_VP.reverse(_gmm_score), None, x1, 1.0, 1e-3, 50, generator=_gen(20)).x,
             "draw exactly one ξ per step from the generator you are given; dt > 0 is the step's length (a 0-d "
             "tensor) and t its start", atol=1e-4),
    ]


# --------------------------------------------------------------------------- 5b · the score a flow model implies
def _velocity_score_reference() -> Callable:
    def score_from_velocity(schedule: Any, u: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return _path_of(schedule).velocity_to_score(u, x, t)
    return score_from_velocity


def _velocity_score_cases() -> list[Case]:
    cos, lin = _schedules.CosineSchedule(), _schedules.LinearSchedule()
    ui, xi, ti = _randn(3, 1, 4, 4, seed=101), _randn(3, 1, 4, 4, seed=102), torch.tensor([0.2, 0.5, 0.8])
    u, x, t = _randn(5, 2, seed=103), _randn(5, 2, seed=104), torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    x64 = _randn(8, 2, seed=105, dtype=torch.float64)
    t64 = torch.linspace(0.05, 0.95, 8, dtype=torch.float64)
    v64 = (t64 ** 2 + (1 - t64) ** 2)[:, None]
    gmm = _distributions.toy_gmm().to(dtype=torch.float64)
    xg = 2 * _randn(16, 2, seed=106, dtype=torch.float64)
    tg = torch.linspace(0.05, 0.95, 16, dtype=torch.float64)
    return [
        Case("an image batch (3, 1, 4, 4), cosine schedule: against nbhelpers.paths.GaussianPath.velocity_to_score",
             lambda f: f(cos, ui, xi, ti), lambda: _paths.GaussianPath(cos).velocity_to_score(ui, xi, ti),
             "solve x = α ẑ + β ε̂ and u = α̇ ẑ + β̇ ε̂ for ε̂ = (α̇x − αu)/(α̇β − β̇α), then s = −ε̂/β; reshape the "
             "(B,) coefficients to (B, 1, …, 1) (nb.paths.expand_time)"),
        Case("linear schedule (α = t, β = 1 − t): s = −(x − t·u)/(1 − t)",
             lambda f: f(lin, u, x, t), lambda: -(x - t[:, None] * u) / (1 - t[:, None]),
             "with α̇ = 1 and β̇ = −1 the determinant α̇β − β̇α is 1, so ε̂ = x − t·u"),
        Case("N(0, I) data on the linear path: the velocity (2t − 1)x/v gives the score −x/v, v = t² + (1 − t)² "
             "(float64)",
             lambda f: f(lin, (2 * t64[:, None] - 1) * x64 / v64, x64, t64), lambda: -x64 / v64,
             "p_t = N(0, v I); check the sign of s = −ε̂/β and which of α, β multiplies u", atol=1e-10),
        Case("the 5-mode mixture's exact marginal velocity (cosine path) gives its exact marginal score (float64)",
             lambda f: f(cos, gmm.marginal_velocity(xg, tg, cos), xg, tg), lambda: gmm.marginal_score(xg, tg, cos),
             "the conversion is pointwise in (x, t) and holds for the marginal fields as for the conditional ones",
             atol=1e-8),
    ]


register(
    Exercise("vp_dsm_loss", "05_score_sde",
             "write the σ-weighted loss: t = eps + (1 − eps)·torch.rand(B, generator=generator), then "
             "ε = torch.randn(x0.shape, generator=generator), x_t = c_t·x0 + σ_t·ε, and return the mean of "
             "(σ_t·model(x_t, t) + ε)²",
             _dsm_reference, "nbhelpers.losses.vpsde_dsm_loss", _dsm_cases),
    Exercise("vp_reverse_step", "05_score_sde",
             "return one reverse-time step x + [−f(x, t) + g(t)²·score_fn(x, t)]·dt + g(t)·√dt·ξ with f = sde.drift, "
             "g = sde.diffusion, dt a 0-d tensor (torch.sqrt(dt)) and ξ = torch.randn(x.shape, generator=generator, "
             "device=x.device, dtype=x.dtype)",
             _reverse_reference, "nbhelpers.sde.VPSDE.reverse (one Euler–Maruyama step)", _reverse_cases),
    Exercise("score_from_velocity", "05_score_sde",
             "return the score s = −ε̂/β_t with ε̂ = (α̇_t·x − α_t·u)/(α̇_t·β_t − β̇_t·α_t) for (α_t, β_t, α̇_t, β̇_t) "
             "= schedule(t), t of shape (B,) broadcast over x",
             _velocity_score_reference, "nbhelpers.paths.GaussianPath.velocity_to_score", _velocity_score_cases),
)
