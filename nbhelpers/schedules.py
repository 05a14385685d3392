"""Noise schedules: continuous (α_t, β_t) for Gaussian paths and discrete DDPM β_k.

Direction. Continuous time t ∈ [0, 1] with **t = 0 noise, t = 1 data**:
x_t = α_t z + β_t ε with α_0 = β_1 = 0, α_1 = β_0 = 1, α increasing, β decreasing.
Every schedule carries hand-written derivatives α̇_t, β̇_t (the tests compare them with autograd).

Discrete DDPM keeps its integer step **k = 0 data, k = T noise**: β_k for k = 1…T,
α_k = 1 − β_k, ᾱ_k = ∏_{i≤k} α_i and q(x_k | x_0) = N(√ᾱ_k x_0, (1 − ᾱ_k) I).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ._checks import check_int
from .devices import exact

__all__ = [
    "ScheduleValues", "Schedule", "LinearSchedule", "CosineSchedule", "PolynomialSchedule",
    "CustomSchedule", "VPMarginalSchedule", "validate_schedule", "get_schedule", "SCHEDULES",
    "ddpm_betas", "alphas_cumprod", "DDPM_SCHEDULES", "discrete_snr",
]

TimeLike = float | Tensor


def _as_time(t: TimeLike) -> Tensor:
    """A float tensor view of ``t`` (Python numbers become default-dtype tensors)."""
    if isinstance(t, Tensor):
        return t if t.is_floating_point() else t.to(torch.get_default_dtype())
    return torch.as_tensor(t, dtype=torch.get_default_dtype())


@dataclass
class ScheduleValues:
    """α_t, β_t and their time derivatives, each with the shape of ``t``."""

    alpha: Tensor
    beta: Tensor
    d_alpha: Tensor
    d_beta: Tensor


class Schedule:
    """Base class: subclasses implement ``alpha``, ``beta``, ``d_alpha``, ``d_beta`` of a tensor ``t``.

    Convention: t = 0 noise (α = 0, β = 1), t = 1 data (α = 1, β = 0).
    """

    name: str = "schedule"

    def alpha(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def beta(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def d_alpha(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def d_beta(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, t: TimeLike) -> ScheduleValues:
        t = _as_time(t)
        return ScheduleValues(self.alpha(t), self.beta(t), self.d_alpha(t), self.d_beta(t))

    def snr(self, t: TimeLike) -> Tensor:
        """Signal-to-noise ratio α_t² / β_t² (0 at t = 0, +inf at t = 1)."""
        t = _as_time(t)
        return self.alpha(t) ** 2 / self.beta(t) ** 2

    def log_snr(self, t: TimeLike) -> Tensor:
        """log(α_t² / β_t²)."""
        t = _as_time(t)
        return 2 * (torch.log(self.alpha(t)) - torch.log(self.beta(t)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearSchedule(Schedule):
    """α_t = t, β_t = 1 − t (α̇ = 1, β̇ = −1): the straight-line (rectified-flow) path."""

    name = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        return t.clone()

    def beta(self, t: Tensor) -> Tensor:
        return 1 - t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def d_beta(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)


class CosineSchedule(Schedule):
    """α_t = sin(πt/2), β_t = cos(πt/2) (α̇ = π/2 cos(πt/2), β̇ = −π/2 sin(πt/2)); α² + β² = 1 (variance preserving)."""

    name = "cosine"

    def alpha(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * t)

    def beta(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def d_beta(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


class PolynomialSchedule(Schedule):
    """α_t = t^p, β_t = 1 − t^p (α̇ = p t^{p−1}, β̇ = −p t^{p−1}), p > 0.

    p > 1 keeps the sample noisy for longer (signal arrives late); p < 1 brings it early
    (then α̇ is infinite at t = 0).
    """

    name = "polynomial"

    def __init__(self, p: float = 2.0) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0:
            raise ValueError(f"PolynomialSchedule needs a finite exponent p > 0, got p={p!r}")
        self.p = float(p)

    def alpha(self, t: Tensor) -> Tensor:
        return t ** self.p

    def beta(self, t: Tensor) -> Tensor:
        return 1 - t ** self.p

    def d_alpha(self, t: Tensor) -> Tensor:
        return self.p * t ** (self.p - 1)

    def d_beta(self, t: Tensor) -> Tensor:
        return -self.p * t ** (self.p - 1)

    def __repr__(self) -> str:
        return f"PolynomialSchedule(p={self.p:g})"


class CustomSchedule(Schedule):
    """A schedule from four callables of a tensor ``t``; validated on construction.

    Raises ``ValueError`` (see :func:`validate_schedule`) when the boundary values, the
    monotonicity or the derivatives are wrong.
    """

    def __init__(self, alpha: Callable[[Tensor], Tensor], beta: Callable[[Tensor], Tensor],
                 d_alpha: Callable[[Tensor], Tensor], d_beta: Callable[[Tensor], Tensor],
                 name: str = "custom", check_derivatives: bool = True) -> None:
        for label, fn in (("alpha", alpha), ("beta", beta), ("d_alpha", d_alpha), ("d_beta", d_beta)):
            if not callable(fn):
                raise ValueError(f"CustomSchedule: {label} must be a callable of a tensor t, got {fn!r}")
        self._fns = (alpha, beta, d_alpha, d_beta)
        self.name = name
        validate_schedule(self, check_derivatives=check_derivatives)

    def _eval(self, i: int, t: Tensor) -> Tensor:
        out = self._fns[i](t)
        return out if isinstance(out, Tensor) else torch.as_tensor(out, dtype=t.dtype, device=t.device).expand_as(t)

    def alpha(self, t: Tensor) -> Tensor:
        return self._eval(0, t)

    def beta(self, t: Tensor) -> Tensor:
        return self._eval(1, t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return self._eval(2, t)

    def d_beta(self, t: Tensor) -> Tensor:
        return self._eval(3, t)

    def __repr__(self) -> str:
        return f"CustomSchedule(name={self.name!r})"


class VPMarginalSchedule(Schedule):
    """The VP-SDE marginal as a path schedule, in flow time τ = 1 − s (s: Song's time, s = 0 data).

    The VP-SDE dX = −½ b(s) X ds + √b(s) dW with b(s) = b_min + s (b_max − b_min) has
    X_s | X_0 = z ~ N(c_s z, σ_s² I), c_s = exp(−½ B(s)), σ_s² = 1 − exp(−B(s)),
    B(s) = ∫_0^s b = b_min s + ½ s² (b_max − b_min). As a path in τ (τ = 0 noise, τ = 1 data):

        α_τ = c_{1−τ},  β_τ = σ_{1−τ},  α̇_τ = ½ b(1−τ) α_τ,  β̇_τ = −½ b(1−τ) α_τ² / β_τ

    (dc/ds = −½ b c, σ² = 1 − c², dτ = −ds). The path never reaches pure noise (α_0 = c_1 ≈ 0.007
    for the default b), so it is not a :func:`validate_schedule` schedule; the mixture marginals
    (:meth:`~nbhelpers.distributions.GaussianMixture.marginal_score`) do not need it to be.
    β̇ divides by β, which is 0 at τ = 1. The s-time helpers (``sde_beta`` … ``std``) are what
    :class:`~nbhelpers.sde.VPSDE` evaluates, so the formula lives here once.
    """

    name = "vp-marginal"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        for label, v in (("beta_min", beta_min), ("beta_max", beta_max)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{label} must be a finite number > 0, got {v!r}")
        if beta_max < beta_min:
            raise ValueError(f"need beta_min <= beta_max, got beta_min={beta_min!r}, beta_max={beta_max!r}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    # ---------------------------------------------------------------- Song's time s (s = 0 data)
    def sde_beta(self, s: Tensor) -> Tensor:
        """b(s) = b_min + s (b_max − b_min)."""
        return self.beta_min + s * (self.beta_max - self.beta_min)

    def integrated_beta(self, s: Tensor) -> Tensor:
        """B(s) = ∫_0^s b = b_min s + ½ s² (b_max − b_min)."""
        return self.beta_min * s + 0.5 * s ** 2 * (self.beta_max - self.beta_min)

    def mean_coef(self, s: Tensor) -> Tensor:
        """c_s = exp(−½ B(s))."""
        return torch.exp(-0.5 * self.integrated_beta(s))

    def std(self, s: Tensor) -> Tensor:
        """σ_s = √(1 − exp(−B(s))) (expm1 keeps it accurate near s = 0)."""
        return torch.sqrt(-torch.expm1(-self.integrated_beta(s)))

    # ---------------------------------------------------------------- flow time τ = 1 − s
    def alpha(self, t: Tensor) -> Tensor:
        return self.mean_coef(1 - t)

    def beta(self, t: Tensor) -> Tensor:
        return self.std(1 - t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return 0.5 * self.sde_beta(1 - t) * self.alpha(t)

    def d_beta(self, t: Tensor) -> Tensor:
        return -0.5 * self.sde_beta(1 - t) * self.alpha(t) ** 2 / self.beta(t)

    def __repr__(self) -> str:
        return f"VPMarginalSchedule(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"


@exact()  # a check on the host, in float64
def validate_schedule(schedule: Schedule, n_grid: int = 1001, atol: float = 1e-6,
                      check_derivatives: bool = True) -> None:
    """Check a schedule on a float64 grid of [0, 1]; raise ``ValueError`` naming what failed.

    Checks: α_0 = 0, α_1 = 1, β_0 = 1, β_1 = 0; α non-decreasing and β non-increasing;
    finite values; and (optionally) that α̇, β̇ agree with central finite differences in the interior.
    """
    t = torch.linspace(0.0, 1.0, n_grid, dtype=torch.float64)
    with torch.no_grad():
        v = schedule(t)
    problems = []
    for label, val in (("alpha", v.alpha), ("beta", v.beta)):
        if not isinstance(val, Tensor) or val.shape != t.shape:
            raise ValueError(f"schedule {schedule!r}: {label}(t) must return a tensor shaped like t {tuple(t.shape)}, "
                             f"got {type(val).__name__} {tuple(getattr(val, 'shape', ()))}")
        if not torch.isfinite(val).all():
            problems.append(f"{label}(t) is not finite everywhere on [0, 1]")
    if problems:
        raise ValueError(f"invalid schedule {schedule!r}: " + "; ".join(problems))
    a, b = v.alpha, v.beta
    for label, got, want in (("alpha(0)", a[0], 0.0), ("alpha(1)", a[-1], 1.0), ("beta(0)", b[0], 1.0), ("beta(1)", b[-1], 0.0)):
        if abs(float(got) - want) > atol:
            problems.append(f"{label} = {float(got):.6g}, must be {want:g}")
    da, db = torch.diff(a), torch.diff(b)
    if (da < -atol).any():
        i = int(torch.nonzero(da < -atol)[0])
        problems.append(f"alpha must be non-decreasing, but it decreases near t = {float(t[i]):.3f}")
    if (db > atol).any():
        i = int(torch.nonzero(db > atol)[0])
        problems.append(f"beta must be non-increasing, but it increases near t = {float(t[i]):.3f}")
    if check_derivatives and not problems:
        h = 1e-5
        ti = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
        with torch.no_grad():
            vi = schedule(ti)
            for label, fn, deriv in (("d_alpha", schedule.alpha, vi.d_alpha), ("d_beta", schedule.beta, vi.d_beta)):
                fd = (fn(ti + h) - fn(ti - h)) / (2 * h)
                err = (deriv - fd).abs()
                tol = 1e-4 * (1 + fd.abs())
                if not torch.isfinite(deriv).all() or (err > tol).any():
                    i = int(torch.argmax(err - tol))
                    problems.append(f"{label}(t) disagrees with the finite difference of {label[2:]}(t) "
                                    f"(at t = {float(ti[i]):.2f}: {float(deriv[i]):.6g} vs {float(fd[i]):.6g})")
    if problems:
        raise ValueError(f"invalid schedule {schedule!r}: " + "; ".join(problems))


SCHEDULES: dict[str, type[Schedule]] = {
    "linear": LinearSchedule,
    "cosine": CosineSchedule,
    "polynomial": PolynomialSchedule,
}


def get_schedule(name: str | Schedule, p: float | None = None) -> Schedule:
    """``"linear" | "cosine" | "polynomial"`` (optional exponent ``p``, default 2) → a ``Schedule``.

    A ``Schedule`` instance passes through unchanged.
    """
    if isinstance(name, Schedule):
        return name
    if not isinstance(name, str) or name.strip().lower() not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid choices: {', '.join(SCHEDULES)}")
    key = name.strip().lower()
    if key == "polynomial":
        return PolynomialSchedule(2.0 if p is None else p)
    if p is not None:
        raise ValueError(f"schedule {key!r} takes no exponent p (only 'polynomial' does), got p={p!r}")
    return SCHEDULES[key]()


# --------------------------------------------------------------------------- discrete DDPM
DDPM_SCHEDULES: tuple[str, ...] = ("linear", "cosine")


@exact()
def ddpm_betas(name: str, T: int, beta_start: float = 1e-4, beta_end: float = 0.02, s: float = 0.008) -> Tensor:
    """Discrete DDPM noise levels β_1…β_T, float64 of shape ``(T,)`` on the CPU (k = 0 data, k = T noise).

    - ``"linear"`` (Ho et al. 2020): β_k = linspace(beta_start, beta_end, T). Built for T = 1000;
      with small T it leaves much of the signal at k = T (check ᾱ_T).
    - ``"cosine"`` (Nichol & Dhariwal 2021): ᾱ_k = f(k)/f(0) with f(k) = cos²((k/T + s)/(1 + s) · π/2),
      α_k = clip(ᾱ_k / ᾱ_{k−1}, 0.001, 1) and β_k = 1 − α_k (so β_k ≤ 0.999).
    """
    if not isinstance(name, str) or name.strip().lower() not in DDPM_SCHEDULES:
        raise ValueError(f"unknown DDPM schedule {name!r}; valid choices: {', '.join(DDPM_SCHEDULES)}")
    T = check_int("number of steps T", T, min=1)
    key = name.strip().lower()
    if key == "linear":
        if not (0 < beta_start <= beta_end < 1):
            raise ValueError(f"linear betas need 0 < beta_start <= beta_end < 1, got {beta_start!r}, {beta_end!r}")
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if not (s >= 0 and math.isfinite(s)):
        raise ValueError(f"cosine offset s must be a finite number >= 0, got s={s!r}")
    k = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    alphas = torch.clamp(abar[1:] / abar[:-1], 0.001, 1.0)
    return 1.0 - alphas


def alphas_cumprod(betas: Tensor) -> Tensor:
    """ᾱ_k = ∏_{i=1}^{k} (1 − β_i), shape ``(T,)`` (entry k−1 holds ᾱ_k)."""
    if not isinstance(betas, Tensor) or betas.ndim != 1 or betas.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D tensor, got {type(betas).__name__} "
                         f"{tuple(getattr(betas, 'shape', ()))}")
    if not torch.isfinite(betas).all() or (betas < 0).any() or (betas > 1).any():
        raise ValueError("betas must lie in [0, 1]")
    return torch.cumprod(1.0 - betas, dim=0)


def discrete_snr(abar: Tensor) -> Tensor:
    """SNR_k = ᾱ_k / (1 − ᾱ_k) of a discrete schedule."""
    return abar / (1.0 - abar)
