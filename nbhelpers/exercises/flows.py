"""Exercises of notebooks 01–03: SDE steps, schedules and paths, the flow-matching loss and its samplers."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from .. import losses as _losses
from .. import paths as _paths
from .. import schedules as _schedules
from .. import sde as _sde
from .. import solvers as _solvers
from .core import Case, Exercise, register
from .core import path_of as _path_of
from .core import gen as _gen
from .core import randn as _randn
from .core import se_var as _se_var


class _TimeDrift(_sde.SDE):
    """dX = t dt + 0 dW: a drift that reads t, to see that a step evaluates it at the step's start."""

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return _paths.expand_time(t, x).expand_as(x).to(x.dtype)

    def diffusion(self, x: Tensor, t: Tensor) -> float:
        return 0.0


# --------------------------------------------------------------------------- 01 · SDEs
def _em_reference() -> Callable:
    def em_step(sde: Any, x: Tensor, t: Tensor, h: float, generator: torch.Generator | None = None) -> Tensor:
        t0 = float(t[0]) if isinstance(t, Tensor) and t.ndim else float(t)
        return _solvers.euler_maruyama(sde.drift, sde.diffusion, x, t0, t0 + h, 1, generator=generator).x
    return em_step


def _em_cases() -> list[Case]:
    ou = _sde.OrnsteinUhlenbeck(2.0, 0.5)
    x = _randn(6, 2, seed=11)
    t = torch.full((6,), 0.3)
    n = 20_000
    return [
        Case("one step of an OU process (6 paths in 2D) against nbhelpers.solvers.euler_maruyama, same seed",
             lambda f: f(ou, x, t, 0.01, _gen(1)),
             lambda: _solvers.euler_maruyama(ou, x, 0.3, 0.31, 1, generator=_gen(1)).x,
             "X + h·u_t(X) + σ_t(X)·√h·ε, with ε = torch.randn(x.shape, generator=generator, device=x.device, "
             "dtype=x.dtype) drawn once per step"),
        Case("with σ = 0 the step is one Euler step x + h·(−θx)",
             lambda f: f(_sde.OrnsteinUhlenbeck(2.0, 0.0), x, t, 0.1, _gen(2)),
             lambda: x + 0.1 * (-2.0 * x),
             "without noise only the drift term is left: add h·sde.drift(x, t) to x"),
        Case("the drift is evaluated at the step's start t (dX = t dt from x = 0, t = 0.5, h = 0.1)",
             lambda f: f(_TimeDrift(), torch.zeros(4, 2), torch.full((4,), 0.5), 0.1, _gen(3)),
             lambda: torch.full((4, 2), 0.05),
             "call sde.drift(x, t) and sde.diffusion(x, t) with the t you are given"),
        Case(f"a moment: Brownian motion (σ = 1) from 0, one step h = 0.04: Var = σ²h over {n} paths",
             lambda f: f(_sde.BrownianMotion(1.0), torch.zeros(n, 1), torch.zeros(n), 0.04, _gen(4)).var().item(),
             lambda: 0.04,
             "the noise is scaled by √h, not by h: a Brownian increment over h has variance σ²h",
             atol=4 * _se_var(n) * 0.04, rtol=0.0),
    ]


def _brownian_cases() -> list[Case]:
    x = _randn(4, 3, seed=21)
    t = torch.full((4,), 0.5)
    n, steps = 20_000, 50

    def var_at_1(cls: Any) -> float:
        bm = cls(2.0)
        return _solvers.euler_maruyama(bm.drift, bm.diffusion, torch.zeros(n, 1), 0.0, 1.0, steps,
                                       generator=_gen(5)).x.var().item()

    def diffusion(cls: Any) -> Tensor:
        return torch.as_tensor(cls(0.7).diffusion(x, t), dtype=torch.float64).broadcast_to(x.shape)

    return [
        Case("the drift is zero and shaped like x (4, 3)", lambda cls: cls(0.7).drift(x, t), lambda: torch.zeros(4, 3),
             "Brownian motion has no drift: return torch.zeros_like(x) — not noise (the solver adds the noise)"),
        Case("the diffusion is σ = 0.7", diffusion, lambda: torch.full((4, 3), 0.7, dtype=torch.float64),
             "dX = σ dW: the diffusion coefficient is the constant σ (self.sigma), not σ² or √σ"),
        Case(f"a moment: X_1 from X_0 = 0 with σ = 2 has variance σ²t = 4 ({n} paths, Euler–Maruyama)",
             var_at_1, lambda: 4.0,
             "X_t = σW_t has variance σ²t; a wrong drift or σ shows here first",
             atol=4 * _se_var(n) * 4.0, rtol=0.0),
    ]


def _ou_cases() -> list[Case]:
    x = torch.tensor([[1.0, -0.5], [0.0, 3.0], [-2.0, 0.25]])
    t = torch.zeros(3)
    img = _randn(2, 1, 3, 3, seed=31)
    n, steps = 20_000, 400
    theta_h = 8.0 / steps  # θ = 1, T = 8

    def stationary(cls: Any) -> float:
        ou = cls(1.0, 1.0)
        return _solvers.euler_maruyama(ou.drift, ou.diffusion, torch.zeros(n, 1), 0.0, 8.0, steps,
                                       generator=_gen(6)).x.var().item()

    return [
        Case("the drift is −θx (θ = 2) at three points", lambda cls: cls(2.0, 0.5).drift(x, t), lambda: -2.0 * x,
             "the OU drift pulls x back towards 0: u(x) = −θx, with the minus sign (+θx pushes the paths away)"),
        Case("the drift keeps the shape of an image batch (2, 1, 3, 3)",
             lambda cls: cls(0.5, 1.0).drift(img, torch.zeros(2)), lambda: -0.5 * img,
             "work elementwise on x (−self.theta * x): no reshaping, no sum over coordinates"),
        Case("the diffusion is σ = 0.5", lambda cls: float(torch.as_tensor(cls(2.0, 0.5).diffusion(x, t)).mean()),
             lambda: 0.5, "dX = −θX dt + σ dW: the diffusion coefficient is the constant σ (self.sigma)"),
        Case(f"a moment: from X_0 = 0 to T = 8 (θ = σ = 1) the variance reaches σ²/2θ = 0.5 ({n} paths)",
             stationary, lambda: 0.5,
             "the stationary variance σ²/(2θ) balances the noise (σ²) against the pull to 0 (2θ): check both",
             atol=0.5 * (4 * _se_var(n) + theta_h / (2 - theta_h)), rtol=0.0),
    ]


# --------------------------------------------------------------------------- 02 · paths and schedules
def _schedule_cases() -> list[Case]:
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    grid = torch.linspace(0.0, 1.0, 41, dtype=torch.float64)
    inner = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    lib = _schedules.CosineSchedule()

    def autograd() -> Tensor:  # of the closed forms α = sin(πt/2), β = cos(πt/2), in float64
        tt = inner.clone().requires_grad_()
        with torch.enable_grad():
            da = torch.autograd.grad(lib.alpha(tt).sum(), tt)[0]
            db = torch.autograd.grad(lib.beta(tt).sum(), tt)[0]
        return torch.stack([da, db])

    return [
        Case("boundary values [α(0), α(1), β(0), β(1)] = [0, 1, 1, 0]",
             lambda cls: torch.cat([cls().alpha(ends), cls().beta(ends)]),
             lambda: torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64),
             "t = 0 is noise (α = 0, β = 1) and t = 1 data (α = 1, β = 0): α = sin(πt/2), β = cos(πt/2)",
             atol=1e-12),
        Case("α and β on a grid of 41 times, against nbhelpers.schedules.CosineSchedule",
             lambda cls: torch.stack([cls().alpha(grid), cls().beta(grid)]),
             lambda: torch.stack([lib.alpha(grid), lib.beta(grid)]),
             "α_t = sin(πt/2), β_t = cos(πt/2) (in radians: math.pi * t / 2)", atol=1e-12),
        Case("the hand-written derivatives [α̇, β̇] against autograd of sin(πt/2), cos(πt/2) (float64)",
             lambda cls: torch.stack([cls().d_alpha(inner), cls().d_beta(inner)]), autograd,
             "chain rule: d/dt sin(πt/2) = (π/2)·cos(πt/2) and d/dt cos(πt/2) = −(π/2)·sin(πt/2)",
             atol=1e-10),
        Case("variance preserving: α² + β² = 1 on the grid",
             lambda cls: cls().alpha(grid) ** 2 + cls().beta(grid) ** 2, lambda: torch.ones_like(grid),
             "with α = sin and β = cos of the same angle πt/2, α² + β² = 1 at every t", atol=1e-12),
    ]


def _sample_path_reference() -> Callable:
    def sample_path(schedule: Any, z: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        c = _paths.GaussianPath(schedule).coefficients(t, z)
        return c.alpha * z + c.beta * eps
    return sample_path


def _sample_path_cases() -> list[Case]:
    cos = _schedules.CosineSchedule()
    z, t = _randn(5, 2, seed=41), torch.rand(5, generator=_gen(42))
    zi, ti = _randn(3, 1, 4, 4, seed=43), torch.tensor([0.1, 0.5, 0.9])
    n = 20_000
    z1 = torch.tensor([[1.5, -1.0]])
    eps_many = _randn(n, 2, seed=44)
    return [
        Case("5 points in 2D at random t, against nbhelpers.paths.GaussianPath('cosine').sample (same ε)",
             lambda f: f(cos, z, t, torch.randn(z.shape, generator=_gen(7))),
             lambda: _paths.GaussianPath(cos).sample(z, t, generator=_gen(7)).x,
             "x_t = α_t·z + β_t·ε with (α_t, β_t) = schedule(t)"),
        Case("an image batch (3, 1, 4, 4) with one t per image",
             lambda f: f(cos, zi, ti, torch.randn(zi.shape, generator=_gen(8))),
             lambda: _paths.GaussianPath(cos).sample(zi, ti, generator=_gen(8)).x,
             "t has shape (B,): reshape α_t and β_t to (B, 1, …, 1) (nbhelpers.paths.expand_time) so they "
             "broadcast over the data dimensions"),
        Case("boundary values: x_0 = ε (pure noise) and x_1 = z (data), linear schedule",
             lambda f: torch.stack([f(_schedules.LinearSchedule(), z, torch.zeros(5), eps_many[:5]),
                                    f(_schedules.LinearSchedule(), z, torch.ones(5), eps_many[:5])]),
             lambda: torch.stack([eps_many[:5], z]),
             "t = 0 is noise and t = 1 data in this series: α_0 = 0, β_0 = 1, α_1 = 1, β_1 = 0"),
        Case(f"a moment: for one z at t = 0.25 (linear), the mean of {n} draws is α_t·z = 0.25·z",
             lambda f: f(_schedules.LinearSchedule(), z1.expand(n, 2), torch.full((n,), 0.25), eps_many).mean(0),
             lambda: 0.25 * z1[0],
             "the noise averages out: E[x_t | z] = α_t·z, the spread is β_t",
             atol=4 * 0.75 / math.sqrt(n), rtol=0.0),
    ]


def _cosine_betas_reference() -> Callable:
    def cosine_betas(T: int, s: float = 0.008) -> Tensor:
        return _schedules.ddpm_betas("cosine", T, s=s)
    return cosine_betas


def _cosine_betas_cases() -> list[Case]:
    s = 0.008

    def f(k: float, T: int) -> float:
        return math.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2

    return [
        Case("T = 1000 against nbhelpers.schedules.ddpm_betas('cosine', 1000): shape (T,), float64",
             lambda fn: fn(1000), lambda: _schedules.ddpm_betas("cosine", 1000),
             "ᾱ_k = f(k)/f(0), f(k) = cos²((k/T + s)/(1 + s)·π/2) for k = 0…T (torch.arange(T + 1, "
             "dtype=torch.float64)); β_k = 1 − ᾱ_k/ᾱ_{k−1}, one per step k = 1…T", atol=1e-10),
        Case("T = 10 against the library (short chains as in notebooks 06 and 08)",
             lambda fn: fn(10), lambda: _schedules.ddpm_betas("cosine", 10),
             "the schedule is defined by k/T, so the same code serves any T", atol=1e-10),
        Case("the clip: the last β of T = 50 is 0.999",
             lambda fn: float(fn(50)[-1]), lambda: 0.999,
             "f(T) = 0, so the last ratio ᾱ_T/ᾱ_{T−1} is 0 and β_T would be 1: clip α_k = ᾱ_k/ᾱ_{k−1} to "
             "[0.001, 1] (torch.clamp) before β_k = 1 − α_k", atol=1e-12),
        Case("ᾱ at k = 50 of T = 100 equals the closed form f(50)/f(0)",
             lambda fn: float(torch.cumprod(1 - fn(100), 0)[49]), lambda: f(50, 100) / f(0, 100),
             "ᾱ_k is the product of (1 − β_i) for i ≤ k, and it must equal f(k)/f(0) — check s and the π/2",
             atol=1e-10),
    ]


# --------------------------------------------------------------------------- 03 · flow matching
def _target_reference() -> Callable:
    def target_velocity(schedule: Any, z: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        return _paths.GaussianPath(schedule).velocity_from_noise(z, eps, t)
    return target_velocity


def _target_cases() -> list[Case]:
    cos, lin = _schedules.CosineSchedule(), _schedules.LinearSchedule()
    z, eps, t = _randn(5, 2, seed=51), _randn(5, 2, seed=52), torch.rand(5, generator=_gen(53))
    z64, e64 = z.double(), eps.double()
    t64 = torch.tensor([0.2, 0.4, 0.5, 0.7, 0.9], dtype=torch.float64)
    d = 1e-5

    def x_at(tt: Tensor) -> Tensor:
        return _paths.expand_time(torch.sin(math.pi * tt / 2), z64) * z64 \
            + _paths.expand_time(torch.cos(math.pi * tt / 2), z64) * e64

    zi, ei = _randn(3, 1, 4, 4, seed=54), _randn(3, 1, 4, 4, seed=55)
    ends = torch.tensor([1.0, 0.5, 0.0])
    return [
        Case("5 points in 2D (cosine schedule), against nbhelpers.paths.GaussianPath.velocity_from_noise",
             lambda f: f(cos, z, eps, t), lambda: _paths.GaussianPath(cos).velocity_from_noise(z, eps, t),
             "on the path u_t(x_t | z) = α̇_t·z + β̇_t·ε (schedule(t).d_alpha, .d_beta)"),
        Case("linear schedule: the target is z − ε at every t",
             lambda f: f(lin, z, eps, t), lambda: z - eps,
             "α_t = t, β_t = 1 − t, so α̇ = 1 and β̇ = −1"),
        Case("it is d/dt of x_t = α_t z + β_t ε (central difference, float64, cosine)",
             lambda f: f(cos, z64, e64, t64), lambda: (x_at(t64 + d) - x_at(t64 - d)) / (2 * d),
             "differentiate x_t in t with z and ε held fixed", atol=1e-7),
        Case("images (3, 1, 4, 4) at t = 1, 0.5, 0: finite at t = 1 (no division by β)",
             lambda f: f(cos, zi, ei, ends), lambda: _paths.GaussianPath(cos).velocity_from_noise(zi, ei, ends),
             "write it without β in a denominator, and reshape the (B,) coefficients to (B, 1, …, 1)"),
    ]


def _fm_reference() -> Callable:
    def fm_loss(model: Callable, z: Tensor, schedule: Any, generator: torch.Generator | None = None) -> Tensor:
        return _losses.flow_matching_loss(model, z, _path_of(schedule), generator)
    return fm_loss


def _fm_cases() -> list[Case]:
    lin, cos = _schedules.LinearSchedule(), _schedules.CosineSchedule()
    z = _randn(64, 2, seed=61)
    n = 20_000
    z0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64).expand(256, 2)

    def field(x: Tensor, t: Tensor) -> Tensor:
        return -x + t[:, None]

    weight = torch.nn.Parameter(torch.tensor(0.5))

    def learnable(x: Tensor, t: Tensor) -> Tensor:
        return -weight * x + t[:, None]

    def exact(x: Tensor, t: Tensor) -> Tensor:  # the marginal field of the single point z0 (linear path)
        return (z0[: len(x)] - x) / (1 - t[:, None])

    return [
        Case("64 points, a fixed field −x + t, cosine schedule: against nbhelpers.losses.flow_matching_loss",
             lambda f: f(field, z, cos, _gen(9)),
             lambda: _losses.flow_matching_loss(field, z, _paths.GaussianPath(cos), _gen(9)),
             "draw t = torch.rand(B, generator=generator) first, then ε = torch.randn(z.shape, generator=generator);"
             " x_t = α_t z + β_t ε; return the mean of (model(x_t, t) − (α̇_t z + β̇_t ε))² as a 0-d tensor"),
        Case("the exact field of a single data point has zero loss (linear schedule, float64)",
             lambda f: f(exact, z0, lin, _gen(10)), lambda: torch.tensor(0.0, dtype=torch.float64),
             "the model is evaluated at x_t (not at z or ε) and at the same t as the target", atol=1e-8),
        Case(f"a moment: the zero field on z = 0 (linear) has loss E‖ε‖²/d = 1 ({n} points)",
             lambda f: float(f(lambda x, t: torch.zeros_like(x), torch.zeros(n, 2), lin, _gen(11))), lambda: 1.0,
             "average the squared error over the batch and the coordinates (.square().mean()), not a sum",
             atol=4 * math.sqrt(2 / (2 * n)), rtol=0.0),
        Case("a field with a trainable weight: the loss carries its gradient (what training needs)",
             lambda f: f(learnable, z, lin, _gen(12)),
             lambda: _losses.flow_matching_loss(learnable, z, _paths.GaussianPath(lin), _gen(12)),
             "return the loss as a tensor built from model(x_t, t): no .item(), .detach() or torch.no_grad(), "
             "or the optimiser's step has nothing to follow"),
    ]


def _euler_reference() -> Callable:
    def euler_sample(f: Callable, x0: Tensor, n_steps: int) -> Tensor:
        return _solvers.euler(f, x0, 0.0, 1.0, n_steps).x
    return euler_sample


def _heun_reference() -> Callable:
    def heun_sample(f: Callable, x0: Tensor, n_steps: int) -> Tensor:
        return _solvers.heun(f, x0, 0.0, 1.0, n_steps).x
    return heun_sample


def _decay(x: Tensor, t: Tensor) -> Tensor:
    return -x


def _drift_in_t(x: Tensor, t: Tensor) -> Tensor:
    return _paths.expand_time(t, x).expand_as(x).to(x.dtype)


def _error_ratio(fn: Callable, n: int) -> float:
    """Error at n steps over the error at 2n steps on dx/dt = −x (exact: x0·e^{−1}): 2 for first order, 4 for second."""
    x0 = torch.ones(1, 1, dtype=torch.float64)
    exact = math.exp(-1.0)
    return abs(float(fn(_decay, x0, n)) - exact) / abs(float(fn(_decay, x0, 2 * n)) - exact)


def _sampler_cases(kind: str) -> list[Case]:
    lib = _solvers.euler if kind == "euler" else _solvers.heun
    x0 = _randn(8, 2, seed=71)
    ones = torch.ones(3, 1, dtype=torch.float64)

    def field(x: Tensor, t: Tensor) -> Tensor:
        return -x + torch.sin(3 * t)[:, None]

    if kind == "euler":
        closed = ("dx/dt = −x over [0, 1], 10 steps: Euler's closed form x0·(1 − h)^n", (1 - 0.1) ** 10,
                  "x ← x + h·f(x, t) with h = 1/n_steps, n_steps times")
        in_t = ("dx/dt = t from x = 1, 4 steps: Euler sums f at the left ends, 1 + h²·(0 + 1 + 2 + 3)", 1 + 6 / 16,
                "evaluate f at the start of each step, t_i = i·h, passed as a (B,) tensor")
        order = ("first order: halving h halves the error (n = 20 → 40)", 2.0, 0.15)
    else:
        closed = ("dx/dt = −x over [0, 1], 10 steps: Heun's closed form x0·(1 − h + h²/2)^n",
                  (1 - 0.1 + 0.005) ** 10,
                  "predict x̃ = x + h·f(x, t), then x ← x + h/2·(f(x, t) + f(x̃, t + h))")
        in_t = ("dx/dt = t from x = 1, 4 steps: the trapezoid rule is exact, 1 + 1/2", 1.5,
                "the corrector averages the slopes at both ends of the step: f(x, t_i) and f(x̃, t_{i+1})")
        order = ("second order: halving h quarters the error (n = 20 → 40)", 4.0, 0.3)
    return [
        Case(f"8 points in 2D, field −x + sin(3t), 7 steps: against nbhelpers.solvers.{kind}",
             lambda f: f(field, x0, 7), lambda: lib(field, x0, 0.0, 1.0, 7).x,
             "integrate from t = 0 to t = 1 in n_steps equal steps; times come from torch.linspace(0, 1, n_steps + 1)"),
        Case(closed[0], lambda f: f(_decay, ones, 10), lambda: closed[1] * ones, closed[2], atol=1e-10),
        Case(in_t[0], lambda f: f(_drift_in_t, ones, 4), lambda: in_t[1] * ones, in_t[2], atol=1e-10),
        Case(order[0], lambda f: _error_ratio(f, 20), lambda: order[1],
             "each step must use the slope(s) of this method exactly; an off-by-one in t or h changes the order",
             atol=order[2], rtol=0.0),
    ]


register(
    Exercise("em_step", "01_sdes",
             "write one Euler–Maruyama step: draw ε = torch.randn(x.shape, generator=generator, device=x.device, "
             "dtype=x.dtype) and return x + h·sde.drift(x, t) + sde.diffusion(x, t)·√h·ε (t is a (B,) tensor)",
             _em_reference, "nbhelpers.solvers.euler_maruyama (one step)", _em_cases),
    Exercise("brownian_motion", "01_sdes",
             "write drift(x, t) and diffusion(x, t) of Brownian motion dX = σ dW (σ is self.sigma)",
             lambda: _sde.BrownianMotion, "nbhelpers.sde.BrownianMotion", _brownian_cases),
    Exercise("ornstein_uhlenbeck", "01_sdes",
             "write drift(x, t) and diffusion(x, t) of the OU process dX = −θX dt + σ dW "
             "(θ is self.theta, σ is self.sigma)",
             lambda: _sde.OrnsteinUhlenbeck, "nbhelpers.sde.OrnsteinUhlenbeck", _ou_cases),
    Exercise("cosine_schedule", "02_paths_schedules",
             "write α_t = sin(πt/2), β_t = cos(πt/2) and their derivatives α̇_t, β̇_t by hand (t is a tensor)",
             lambda: _schedules.CosineSchedule, "nbhelpers.schedules.CosineSchedule",
             _schedule_cases),
    Exercise("sample_path", "02_paths_schedules",
             "return x_t = α_t·z + β_t·ε for (α_t, β_t) = schedule(t), t of shape (B,) broadcast over z's "
             "data dimensions",
             _sample_path_reference, "nbhelpers.paths.GaussianPath.sample", _sample_path_cases),
    Exercise("cosine_betas", "02_paths_schedules",
             "return the cosine DDPM betas β_1…β_T (float64, shape (T,)): ᾱ_k = f(k)/f(0) with "
             "f(k) = cos²((k/T + s)/(1 + s)·π/2), α_k = clip(ᾱ_k/ᾱ_{k−1}, 0.001, 1), β_k = 1 − α_k",
             _cosine_betas_reference, "nbhelpers.schedules.ddpm_betas('cosine', T)", _cosine_betas_cases),
    Exercise("target_velocity", "03_flow_matching_2d",
             "return the conditional target u_t(x_t | z) = α̇_t·z + β̇_t·ε, t of shape (B,) broadcast over z",
             _target_reference, "nbhelpers.paths.GaussianPath.velocity_from_noise", _target_cases),
    Exercise("fm_loss", "03_flow_matching_2d",
             "write the flow-matching loss: t = torch.rand(B, generator=generator), then "
             "ε = torch.randn(z.shape, generator=generator), x_t = α_t z + β_t ε, and return the mean of "
             "(model(x_t, t) − (α̇_t z + β̇_t ε))²",
             _fm_reference, "nbhelpers.losses.flow_matching_loss", _fm_cases),
    Exercise("euler_sample", "03_flow_matching_2d",
             "integrate dx/dt = f(x, t) from t = 0 to 1 with n_steps Euler steps x ← x + h·f(x, t) on the grid "
             "torch.linspace(0, 1, n_steps + 1) and return the final x",
             _euler_reference, "nbhelpers.solvers.euler", lambda: _sampler_cases("euler")),
    Exercise("heun_sample", "03_flow_matching_2d",
             "integrate dx/dt = f(x, t) from t = 0 to 1 with n_steps Heun steps (x̃ = x + h·f(x, t); "
             "x ← x + h/2·(f(x, t) + f(x̃, t + h))) and return the final x",
             _heun_reference, "nbhelpers.solvers.heun", lambda: _sampler_cases("heun")),
)
