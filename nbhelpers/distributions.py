"""Toy data distributions with exact ``sample``, ``log_prob`` and ``score``.

The Gaussian mixture also gives the exact marginal of the Gaussian path over it
(direction of :mod:`nbhelpers.paths`: t = 0 noise, t = 1 data; x_t = α_t z + β_t ε):

    p_t(x) = Σ_k w_k N(x; α_t μ_k, (α_t² s_k² + β_t²) I),
    ∇log p_t(x) = Σ_k r_k(x) · (−(x − α_t μ_k) / (α_t² s_k² + β_t²)),   r_k = posterior of component k,
    u_t(x) = E[α̇ z + β̇ ε | x_t = x] = (β̇/β) x + (α̇ − β̇ α/β) E[z | x_t = x].

The velocity is evaluated in the division-free form Σ_k r_k (α̇ E[z | x, k] + β̇ E[ε | x, k]) with
E[z | x, k] = μ_k + α s_k² (x − α μ_k)/v_k and E[ε | x, k] = β (x − α μ_k)/v_k, so it is finite at
t = 0 and t = 1. Shapes: points ``(B, d)``, ``t`` ``(B,)`` or a scalar.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor

from ._checks import batch_time, check_float
from .devices import exact, from_exact, randn, to_exact, to_like
from .schedules import Schedule, get_schedule

__all__ = [
    "LabeledSample", "GaussianMixture", "Gaussian", "Moons", "Checkerboard",
    "two_pixel", "toy_gmm", "TWO_PIXEL_CLASSES",
]

TWO_PIXEL_CLASSES = {
    0: "left pixel darker than right (peak [-0.35, 0.65], weight 0.35)",
    1: "left pixel lighter than right (peak [0.75, -0.45], weight 0.65)",
}
"""Class labels of :func:`two_pixel` (as in seed 001: y = 0 → left darker, y = 1 → left lighter)."""


@dataclass
class LabeledSample:
    """Points ``x`` (n, d) with integer ``labels`` (n,); unpacks as ``x, labels = ...``."""

    x: Tensor
    labels: Tensor

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.x, self.labels))


class GaussianMixture:
    """Σ_k w_k N(μ_k, diag(s_k²)) with isotropic (``stds`` shape (K,)) or diagonal ((K, d)) components.

    Shapes: weights (K,), means (K, d), stds scalar, (K,) or (K, d). Labels are component indices.
    """

    def __init__(self, weights: Sequence[float] | Tensor, means: Sequence[Sequence[float]] | Tensor,
                 stds: float | Sequence[float] | Tensor, dtype: torch.dtype | None = None) -> None:
        dtype = dtype or (means.dtype if isinstance(means, Tensor) and means.is_floating_point() else torch.get_default_dtype())
        device = means.device if isinstance(means, Tensor) else None
        try:
            w = torch.as_tensor(weights, dtype=dtype, device=device)
            mu = torch.as_tensor(means, dtype=dtype, device=device)
            s = torch.as_tensor(stds, dtype=dtype, device=device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"weights, means and stds must be numbers or tensors: {exc}") from None
        if mu.ndim != 2 or mu.shape[0] < 1 or mu.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d), got {tuple(mu.shape)}")
        K, d = mu.shape
        if w.shape != (K,):
            raise ValueError(f"weights must have shape ({K},) to match means {tuple(mu.shape)}, got {tuple(w.shape)}")
        if not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
        if abs(float(w.sum()) - 1.0) > 1e-5:
            raise ValueError(f"weights must sum to 1, got sum {float(w.sum()):.6g} ({w.tolist()})")
        if s.ndim == 0:
            s = s.expand(K)
        if s.shape not in ((K,), (K, d)):
            raise ValueError(f"stds must be a scalar or have shape ({K},) or ({K}, {d}), got {tuple(s.shape)}")
        if not torch.isfinite(s).all() or (s <= 0).any():
            raise ValueError(f"stds must be finite and positive, got {s.tolist()}")
        if not torch.isfinite(mu).all():
            raise ValueError("means must be finite")
        self.weights = w
        self.means = mu
        self.stds = s.clone()
        self._var = (s[:, None] if s.ndim == 1 else s).expand(K, d) ** 2  # (K, d)

    # ---------------------------------------------------------------- basics
    @property
    def modes(self) -> Tensor:
        """Component means (K, d) (the modes when components are well separated)."""
        return self.means

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def device(self) -> torch.device:
        return self.means.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "GaussianMixture":
        """A copy on another device / dtype."""
        conv = lambda v: v.to(device=device, dtype=dtype)  # noqa: E731
        return GaussianMixture(conv(self.weights), conv(self.means), conv(self.stds))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(K={self.n_components}, d={self.dim})"

    def mean(self) -> Tensor:
        """E[x] = Σ w_k μ_k."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Cov[x] = Σ w_k (diag(s_k²) + μ_k μ_kᵀ) − E[x] E[x]ᵀ."""
        m = self.mean()
        second = torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means) + torch.diag(self.weights @ self._var)
        return second - torch.outer(m, m)

    # ---------------------------------------------------------------- sampling
    def sample_with_labels(self, n: int, generator: torch.Generator | None = None) -> LabeledSample:
        """n points and their component labels."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"number of samples n must be a non-negative integer, got {n!r}")
        dev = self.device
        if n == 0:
            return LabeledSample(self.means.new_zeros((0, self.dim)), torch.zeros(0, dtype=torch.long, device=dev))
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = randn((n, self.dim), generator, dev, self.means.dtype)
        x = self.means[labels] + self._var[labels].sqrt() * noise
        return LabeledSample(x, labels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n points, shape (n, d)."""
        return self.sample_with_labels(n, generator).x

    # ---------------------------------------------------------------- noising
    def noised(self, alpha: float | Tensor, beta: float | Tensor) -> "GaussianMixture":
        """The law of α X + β ε for X from this mixture and independent ε ~ N(0, I):

            Σ_k w_k N(α μ_k, diag(α² s_k² + β²)),

        again a mixture. It is p_t of a Gaussian path at one time (α = α_t, β = β_t) and DDPM's
        q(x_k) (α = √ᾱ_k, β = √(1 − ᾱ_k)). ``alpha``, ``beta``: numbers or 0-d tensors, β ≥ 0 and
        α² s_k² + β² > 0. The variances are formed in float64 (on the host where this mixture's device has
        none) and rounded once to this dtype.
        """
        a, b = check_float("alpha", alpha), check_float("beta", beta, min=0.0)
        with exact():
            var = a ** 2 * to_exact(self._var) + b ** 2  # (K, d)
            if not (var > 0).all():
                raise ValueError(f"alpha = {a!r}, beta = {b!r} leave a component with zero variance")
            stds = from_exact(var.sqrt(), self.means)
        if self.stds.ndim == 1:
            stds = stds[:, 0]  # isotropic components stay isotropic
        return GaussianMixture(self.weights, a * self.means, stds)

    # ---------------------------------------------------------------- marginal of the Gaussian path
    def _component_terms(self, x: Tensor, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log w_k + log N_k(x)) (B, K), residual x − α μ_k (B, K, d) and variance v_k (B, K, d)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        mu = to_like(self.means, x)
        var = alpha[:, None, None] ** 2 * to_like(self._var, x)[None] + beta[:, None, None] ** 2  # (B, K, d)
        resid = x[:, None, :] - alpha[:, None, None] * mu[None]
        log_n = -0.5 * (torch.log(2 * math.pi * var) + resid ** 2 / var).sum(-1)
        return torch.log(to_like(self.weights, x))[None] + log_n, resid, var

    def _coeffs(self, x: Tensor, t: float | Tensor, schedule: Schedule | str):
        sched = get_schedule(schedule)
        return sched(batch_time(t, x))

    def marginal_log_prob(self, x: Tensor, t: float | Tensor, schedule: Schedule | str) -> Tensor:
        """log p_t(x), p_t = Σ w_k N(α_t μ_k, α_t² s_k² + β_t²). Shapes: x (B, d), t (B,) → (B,)."""
        v = self._coeffs(x, t, schedule)
        logits, _, _ = self._component_terms(x, v.alpha, v.beta)
        return torch.logsumexp(logits, dim=1)

    def marginal_score(self, x: Tensor, t: float | Tensor, schedule: Schedule | str) -> Tensor:
        """∇_x log p_t(x) = Σ_k r_k (−(x − α μ_k)/v_k). Shapes: (B, d)."""
        v = self._coeffs(x, t, schedule)
        logits, resid, var = self._component_terms(x, v.alpha, v.beta)
        r = torch.softmax(logits, dim=1)
        return -(r[..., None] * resid / var).sum(1)

    def posterior_mean(self, x: Tensor, t: float | Tensor, schedule: Schedule | str) -> Tensor:
        """The ideal denoiser E[z | x_t = x] = Σ_k r_k (μ_k + α s_k² (x − α μ_k)/v_k). Shapes: (B, d)."""
        v = self._coeffs(x, t, schedule)
        logits, resid, var = self._component_terms(x, v.alpha, v.beta)
        r = torch.softmax(logits, dim=1)
        ez = to_like(self.means, x)[None] + v.alpha[:, None, None] * to_like(self._var, x)[None] * resid / var
        return (r[..., None] * ez).sum(1)

    def marginal_velocity(self, x: Tensor, t: float | Tensor, schedule: Schedule | str) -> Tensor:
        """u_t(x) = E[α̇ z + β̇ ε | x_t = x] (the field whose ODE carries noise to the mixture). Shapes: (B, d)."""
        v = self._coeffs(x, t, schedule)
        logits, resid, var = self._component_terms(x, v.alpha, v.beta)
        r = torch.softmax(logits, dim=1)
        a, b = v.alpha[:, None, None], v.beta[:, None, None]
        ez = to_like(self.means, x)[None] + a * to_like(self._var, x)[None] * resid / var
        eeps = b * resid / var
        u = v.d_alpha[:, None, None] * ez + v.d_beta[:, None, None] * eeps
        return (r[..., None] * u).sum(1)

    def component_posterior(self, x: Tensor, t: float | Tensor = 1.0, schedule: Schedule | str = "linear") -> Tensor:
        """P(component k | x_t = x), shape (B, K) (t = 1: the clean mixture)."""
        v = self._coeffs(x, t, schedule)
        logits, _, _ = self._component_terms(x, v.alpha, v.beta)
        return torch.softmax(logits, dim=1)

    # ---------------------------------------------------------------- clean density (t = 1)
    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x), shape (B,)."""
        one = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if x.ndim == 2 else torch.ones(1)
        logits, _, _ = self._component_terms(x, one, one - 1)
        return torch.logsumexp(logits, dim=1)

    def score(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """∇_x log p(x) = Σ_k r_k (−(x − μ_k)/s_k²), shape (B, d).

        ``keep`` (B, K) bool restricts point i's mixture to the components with ``keep[i]`` (the
        weights renormalised): the score of p(x | component ∈ keep[i]), e.g. of a class label.
        """
        one = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if x.ndim == 2 else torch.ones(1)
        logits, resid, var = self._component_terms(x, one, one - 1)
        if keep is not None:
            if not isinstance(keep, Tensor) or keep.dtype != torch.bool or keep.shape != logits.shape:
                raise ValueError(f"keep must be a bool tensor of shape {tuple(logits.shape)}, got "
                                 f"{getattr(keep, 'dtype', type(keep).__name__)} {tuple(getattr(keep, 'shape', ()))}")
            if not keep.any(1).all():
                raise ValueError("keep must leave at least one component for every point")
            logits = logits.masked_fill(~keep, float("-inf"))
        r = torch.softmax(logits, dim=1)
        return -(r[..., None] * resid / var).sum(1)


class Gaussian(GaussianMixture):
    """N(mean, diag(std²)): a one-component mixture (so it has the exact path marginals too).

    ``mean`` shape (d,); ``std`` a scalar or shape (d,).
    """

    def __init__(self, mean: Sequence[float] | Tensor, std: float | Sequence[float] | Tensor = 1.0,
                 dtype: torch.dtype | None = None) -> None:
        dtype = dtype or (mean.dtype if isinstance(mean, Tensor) and mean.is_floating_point() else torch.get_default_dtype())
        m = torch.as_tensor(mean, dtype=dtype, device=mean.device if isinstance(mean, Tensor) else None)
        if m.ndim != 1:
            raise ValueError(f"mean must have shape (d,), got {tuple(m.shape)}")
        s = torch.as_tensor(std, dtype=dtype, device=m.device)
        if s.ndim == 0:
            s = s.reshape(1)
        elif s.shape == m.shape:
            s = s[None]
        else:
            raise ValueError(f"std must be a scalar or have shape {tuple(m.shape)}, got {tuple(s.shape)}")
        super().__init__(torch.ones(1, dtype=dtype, device=m.device), m[None], s)

    @property
    def std(self) -> Tensor:
        return self._var[0].sqrt()

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Gaussian":
        return Gaussian(self.means[0].to(device=device, dtype=dtype), self.std.to(device=device, dtype=dtype))

    def __repr__(self) -> str:
        return f"Gaussian(mean={self.means[0].tolist()}, std={self.std.tolist()})"


def two_pixel() -> GaussianMixture:
    """The two-pixel world of seed 001: peaks [−0.35, 0.65] and [0.75, −0.45], σ = 0.1, weights 0.35 / 0.65.

    Labels: 0 = left pixel darker than right (first peak), 1 = left pixel lighter (second peak).
    """
    return GaussianMixture([0.35, 0.65], [[-0.35, 0.65], [0.75, -0.45]], 0.1)


def toy_gmm() -> GaussianMixture:
    """The series' default 2D mixture: 5 modes on a circle of radius 2, σ = 0.3, unequal weights.

    Weights 0.30, 0.25, 0.20, 0.15, 0.10 counter-clockwise from the top; neighbouring modes are
    about 7.8 σ apart and all mass lies within [−3, 3]².
    """
    with exact():  # on the host, like the mixture
        angles = torch.pi / 2 + 2 * torch.pi * torch.arange(5, dtype=torch.float64) / 5
        means = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1).to(torch.get_default_dtype())
    return GaussianMixture([0.30, 0.25, 0.20, 0.15, 0.10], means, 0.3)


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"number of samples n must be a non-negative integer, got {n!r}")


class Moons:
    """Two interleaved half circles (as sklearn's ``make_moons``), centred and scaled ×2 to about [−3, 3] × [−1.5, 1.5].

    Sampling only (no closed-form density). Labels: 0 = upper moon, 1 = lower moon.
    """

    def __init__(self, noise: float = 0.1, scale: float = 2.0) -> None:
        if not (noise >= 0 and math.isfinite(noise)) or not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"Moons needs noise >= 0 and scale > 0, got noise={noise!r}, scale={scale!r}")
        self.noise, self.scale, self.dim = float(noise), float(scale), 2

    def sample_with_labels(self, n: int, generator: torch.Generator | None = None) -> LabeledSample:
        _check_n(n)
        labels = (torch.rand(n, generator=generator) < 0.5).long()
        theta = math.pi * torch.rand(n, generator=generator)
        upper = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
        lower = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], 1)
        x = torch.where(labels[:, None] == 0, upper, lower) - torch.tensor([0.5, 0.25])
        x = self.scale * (x + self.noise * torch.randn((n, 2), generator=generator))
        return LabeledSample(x.to(torch.get_default_dtype()), labels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.sample_with_labels(n, generator).x

    def __repr__(self) -> str:
        return f"Moons(noise={self.noise:g}, scale={self.scale:g})"


class Checkerboard:
    """Uniform on the dark squares of an ``n_cells × n_cells`` board covering [−half_width, half_width]².

    Sampling only. Labels: index of the square (row-major over the filled squares).
    """

    def __init__(self, n_cells: int = 4, half_width: float = 2.0) -> None:
        if isinstance(n_cells, bool) or not isinstance(n_cells, int) or n_cells < 2:
            raise ValueError(f"n_cells must be an integer >= 2, got {n_cells!r}")
        if not (half_width > 0 and math.isfinite(half_width)):
            raise ValueError(f"half_width must be positive, got {half_width!r}")
        self.n_cells, self.half_width, self.dim = n_cells, float(half_width), 2
        ij = torch.cartesian_prod(torch.arange(n_cells), torch.arange(n_cells))
        self.cells = ij[(ij.sum(1) % 2) == 0]  # (M, 2) filled squares

    def sample_with_labels(self, n: int, generator: torch.Generator | None = None) -> LabeledSample:
        _check_n(n)
        labels = torch.randint(len(self.cells), (n,), generator=generator)
        u = torch.rand((n, 2), generator=generator)
        side = 2 * self.half_width / self.n_cells
        x = -self.half_width + side * (self.cells[labels].to(u.dtype) + u)
        return LabeledSample(x.to(torch.get_default_dtype()), labels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.sample_with_labels(n, generator).x

    def __repr__(self) -> str:
        return f"Checkerboard(n_cells={self.n_cells}, half_width={self.half_width:g})"
