"""Scoring 2D (or any low-dimensional) samples against a known true distribution.

On toy data the true distribution is known exactly, so "the sampler works" becomes a number:

* :func:`energy_distance` — D²(P, Q) = 2 E|X − Y| − E|X − X'| − E|Y − Y'| between two sample
  sets (V-statistic: the within-set means include the zero diagonal, so D² ≥ 0 and D²(x, x) = 0).
* :func:`mmd` — squared maximum mean discrepancy with a Gaussian kernel (V-statistic).
* :func:`sliced_wasserstein` — W_p averaged over random 1D projections.
* :func:`mode_weights` — the fraction of samples nearest to each mode.
* :func:`gmm_log_likelihood` — mean log p(x) under the true distribution.
* :func:`noise_floor` — the same metric between two independent true sample sets of the same
  size: what a perfect sampler would score. Always report a metric next to its floor.
  :func:`energy_noise_floor` gives the energy distance's floor with its mean in closed form.
* :func:`score_against_truth` — all of the above for one sample set, as a :class:`SampleScore`,
  with the standard error of its energy ratio (from independent sets, see there).
* :func:`ratio_separation` — how many standard errors apart two energy ratios (or a ratio and
  a number, e.g. the floor's 1) are: a comparison needs ≥ 2 before text may rank the two.

Shapes: sample sets are ``(N, d)``; a 1D set ``(N,)`` is treated as ``(N, 1)``. Every metric computes in
float64 on :func:`nbhelpers.runtime.exact_device` of its inputs' device (the CPU for MPS).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

from ..devices import exact, randn, to_exact

__all__ = [
    "energy_distance",
    "mmd",
    "sliced_wasserstein",
    "mode_weights",
    "posterior_mode_fractions",
    "total_variation",
    "gmm_log_likelihood",
    "NoiseFloor",
    "noise_floor",
    "energy_noise_floor",
    "SampleScore",
    "score_against_truth",
    "ratio_separation",
]

_CHUNK = 256  # rows per block of pairwise distances: bounded memory, and blocks that stay in cache
_MEDIAN_POOL = 2048  # points whose pairwise distances give the median-heuristic bandwidth


class _Sampleable(Protocol):
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


def _as_2d(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, d) sample set, got shape {tuple(x.shape)}")
    return to_exact(x.detach())


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    return x, y.to(x.device)


def _mean_kernel(x: torch.Tensor, y: torch.Tensor, kernel: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """mean_{i,j} kernel(|x_i − y_j|), computed in row blocks.

    For ``y is x`` only the blocks on and above the diagonal are computed (the matrix is
    symmetric): half the work for the within-set means.
    """
    total = 0.0
    n = x.shape[0]
    for i in range(0, n, _CHUNK):
        # exact differences (no |a|² + |b|² − 2ab shortcut): |x_i − x_i| must be exactly 0
        if y is x:
            rows = x[i : i + _CHUNK]
            diag = kernel(torch.cdist(rows, rows, compute_mode="donot_use_mm_for_euclid_dist"))
            total += float(diag.sum())
            if i + _CHUNK < n:
                rest = torch.cdist(rows, x[i + _CHUNK :], compute_mode="donot_use_mm_for_euclid_dist")
                total += 2.0 * float(kernel(rest).sum())
        else:
            d = torch.cdist(x[i : i + _CHUNK], y, compute_mode="donot_use_mm_for_euclid_dist")
            total += float(kernel(d).sum())
    return total / (x.shape[0] * y.shape[0])


def _dist(d: torch.Tensor) -> torch.Tensor:
    return d


@exact()
def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Squared energy distance (V-statistic) between sample sets ``x (N, d)`` and ``y (M, d)``.

    D² = 2·mean|x_i − y_j| − mean|x_i − x_j| − mean|y_i − y_j|, every mean over all pairs
    including i = j. D² ≥ 0, D²(x, x) = 0. Between two independent sets from the same
    distribution E[D²] = (1/N + 1/M)·E|X − X'| > 0: that is the noise floor.
    """
    x, y = _pair(x, y)
    return max(2 * _mean_kernel(x, y, _dist) - _mean_kernel(x, x, _dist) - _mean_kernel(y, y, _dist), 0.0)


@exact()
def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None) -> float:
    """Squared MMD with a Gaussian kernel k(a, b) = exp(−|a − b|² / (2 h²)) (V-statistic).

    ``bandwidth`` h defaults to the median distance of the pooled sets (median heuristic).
    """
    x, y = _pair(x, y)
    if bandwidth is None:
        pooled = torch.cat([x, y])[:_MEDIAN_POOL]
        d = torch.pdist(pooled)
        bandwidth = float(d.median()) if d.numel() else 1.0
        bandwidth = bandwidth if bandwidth > 0 else 1.0
    if not (bandwidth > 0):
        raise ValueError(f"bandwidth must be positive or None, got {bandwidth!r}")
    h2 = 2.0 * bandwidth**2

    def k(d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-d.square() / h2)

    return max(_mean_kernel(x, x, k) + _mean_kernel(y, y, k) - 2 * _mean_kernel(x, y, k), 0.0)


def _wasserstein_1d(u: torch.Tensor, v: torch.Tensor, p: int) -> torch.Tensor:
    """Exact W_p^p between the empirical distributions of each column of ``u (N, P)`` and ``v (M, P)``.

    W_p^p = ∫_0^1 |F_u^{-1}(q) − F_v^{-1}(q)|^p dq; both quantile functions are step functions
    with jumps at multiples of 1/N and 1/M, so the integral is a finite sum over the merged steps.
    """
    n, m = u.shape[0], v.shape[0]
    u, v = u.sort(dim=0).values, v.sort(dim=0).values
    if n == m:
        return (u - v).abs().pow(p).mean(dim=0)
    q = torch.cat([torch.arange(n + 1, dtype=u.dtype) / n, torch.arange(m + 1, dtype=u.dtype) / m]).unique()
    width = q[1:] - q[:-1]
    mid = 0.5 * (q[1:] + q[:-1])
    iu = (mid * n).floor().long().clamp(max=n - 1).to(u.device)
    iv = (mid * m).floor().long().clamp(max=m - 1).to(u.device)
    return ((u[iu] - v[iv]).abs().pow(p) * width.to(u.device)[:, None]).sum(dim=0)


@exact()
def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 256,
    generator: torch.Generator | None = None,
    p: int = 2,
) -> float:
    """Sliced Wasserstein distance SW_p = (E_θ W_p^p(θ·X, θ·Y))^{1/p}, θ uniform on the sphere.

    Each 1D W_p is exact for the two empirical distributions (sorted projections; sets of
    different sizes through their step quantile functions). ``generator`` draws the directions;
    in 1D the only direction is ±1.
    """
    x, y = _pair(x, y)
    if not isinstance(n_projections, int) or n_projections < 1:
        raise ValueError(f"n_projections must be a positive integer, got {n_projections!r}")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p!r}")
    d = x.shape[1]
    if d == 1:
        theta = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    else:
        # a generator draws on its own device; without one the global CPU RNG, so every device gets the same directions
        theta = randn((d, n_projections), generator, x.device if generator is not None else "cpu", torch.float64)
        theta = theta.to(x.device)
        theta = theta / theta.norm(dim=0, keepdim=True)
    return float(_wasserstein_1d(x @ theta, y @ theta, p).mean()) ** (1.0 / p)


@exact()
def mode_weights(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Fraction of the samples ``x (N, d)`` whose nearest mode among ``means (K, d)`` is k.

    Returns a float64 tensor of shape ``(K,)`` summing to one (on the exact device of ``x``'s).
    """
    x = _as_2d(x, "x")
    means = _as_2d(means, "means").to(x.device)
    if means.shape[1] != x.shape[1]:
        raise ValueError(f"means must be (K, {x.shape[1]}), got shape {tuple(means.shape)}")
    nearest = torch.cdist(x, means).argmin(dim=1)
    return torch.bincount(nearest, minlength=means.shape[0]).to(torch.float64) / x.shape[0]


@exact()
def posterior_mode_fractions(x: torch.Tensor, gmm: Any) -> torch.Tensor:
    """Fraction of the samples ``x (N, d)`` whose most probable mixture component is k.

    ``gmm`` has ``component_posterior(x) -> (N, K)`` and ``weights (K,)`` (e.g.
    ``nb.distributions.GaussianMixture``); unlike :func:`mode_weights` this weighs each
    component's spread and weight. Returns a float32 tensor of shape ``(K,)`` summing to one.
    """
    x = _as_2d(x, "x")
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one sample, got an empty set")
    k = len(gmm.weights)
    with torch.no_grad():
        best = gmm.component_posterior(x).argmax(1)
    return torch.bincount(best, minlength=k).float() / x.shape[0]


@exact()
def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total-variation distance ½ Σ_k |p_k − q_k| of two discrete distributions of the same shape."""
    p, q = torch.as_tensor(p), torch.as_tensor(q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    p = to_exact(p, p.dtype)
    return 0.5 * (p - to_exact(q, q.dtype).to(p.device)).abs().sum().item()


@exact()
def gmm_log_likelihood(x: torch.Tensor, gmm: Any) -> float:
    """Mean log-density of the samples under the true distribution: (1/N) Σ log p(x_i).

    ``gmm`` is anything with ``log_prob(x) -> (N,)`` (e.g. ``nb.distributions.GaussianMixture``).
    Compare with the same number for true samples (their mean is the negative entropy).
    """
    x = torch.as_tensor(x)
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty (N, d) sample set, got shape {tuple(x.shape)}")
    with torch.no_grad():
        lp = gmm.log_prob(x)
    return float(to_exact(lp).mean())


@dataclass
class NoiseFloor:
    """A metric between independent true sample sets: ``mean`` ± ``std`` over ``values``.

    ``std`` is the spread of single values; ``mean_se`` the standard error of ``mean`` itself.
    """

    mean: float
    std: float
    values: list[float]
    n: int
    mean_se: float = 0.0

    def ratio(self, value: float) -> float:
        """``value`` in units of the floor's mean (1 ≈ indistinguishable from true samples)."""
        return value / self.mean if self.mean > 0 else math.inf


@exact()
def noise_floor(
    metric: Callable[[torch.Tensor, torch.Tensor], float],
    dist: _Sampleable,
    n: int,
    generator: torch.Generator | None = None,
    repeats: int = 5,
) -> NoiseFloor:
    """``metric(a, b)`` for two independent sets of ``n`` true samples, ``repeats`` times.

    A metric that needs randomness of its own (``sliced_wasserstein``) should be passed with
    its generator bound, e.g. ``lambda a, b: sliced_wasserstein(a, b, generator=g)``.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    values = []
    for _ in range(repeats):
        a = dist.sample(n, generator=generator)
        b = dist.sample(n, generator=generator)
        values.append(float(metric(a, b)))
    t = torch.tensor(values, dtype=torch.float64)
    std = float(t.std()) if repeats > 1 else 0.0
    return NoiseFloor(mean=float(t.mean()), std=std, values=values, n=n, mean_se=std / math.sqrt(repeats))


@exact()
def energy_noise_floor(
    dist: _Sampleable,
    n: int,
    generator: torch.Generator | None = None,
    repeats: int = 10,
    n_pairs: int = 1_000_000,
) -> NoiseFloor:
    """The energy distance's noise floor at set size ``n``, with its mean from the identity

        E[D²_V(X_{1:n}, Y_{1:n})] = (2/n) · E|X − X'|     (X, X', Y i.i.d. from ``dist``),

    E|X − X'| estimated from ``n_pairs`` independent pairs (its standard error, ``mean_se``, is
    (2/n)·std|X − X'|/√n_pairs), and its spread (``std``, ``values``) from ``repeats`` pairs of
    true sets as in :func:`noise_floor`.
    A single 2000-vs-2000 value fluctuates by about its own size, so the Monte-Carlo mean of a
    few repeats is a poor yardstick; this one is accurate to a fraction of a percent.
    """
    empirical = noise_floor(energy_distance, dist, n, generator=generator, repeats=repeats)
    a = _as_2d(dist.sample(n_pairs, generator=generator), "samples")
    b = _as_2d(dist.sample(n_pairs, generator=generator), "samples")
    gaps = (a - b).norm(dim=1)
    mean = 2.0 / n * float(gaps.mean())
    mean_se = 2.0 / n * float(gaps.std()) / math.sqrt(gaps.numel()) if gaps.numel() > 1 else 0.0
    return NoiseFloor(mean=mean, std=empirical.std, values=empirical.values, n=n, mean_se=mean_se)


@dataclass
class SampleScore:
    """One sample set scored against the truth (see :func:`score_against_truth`)."""

    energy: float
    energy_values: list[float]
    floor: NoiseFloor
    mode_weights: torch.Tensor
    true_weights: torch.Tensor
    log_likelihood: float
    true_log_likelihood: float
    n: int
    n_total: int
    reference: torch.Tensor = field(repr=False)
    log_likelihood_se: float = math.nan

    @property
    def n_sets(self) -> int:
        """Number of independent (sample set, reference set) pairs behind ``energy``."""
        return len(self.energy_values)

    @property
    def energy_ratio(self) -> float:
        """Energy distance in units of the noise floor (≈ 1 for a perfect sampler)."""
        return self.floor.ratio(self.energy)

    @property
    @exact()
    def energy_std(self) -> float:
        """Spread of the per-set energy distances (0 with a single set)."""
        v = torch.tensor(self.energy_values, dtype=torch.float64)
        return float(v.std()) if v.numel() > 1 else 0.0

    @property
    def energy_se(self) -> float:
        """Standard error of ``energy``: s/√K over the K per-set values (NaN when K = 1).

        Each per-set value compares its own slice of the samples with its own fresh reference
        draw, so the K values are independent and their spread holds every source of noise.
        s is the larger of their own spread and the floor's (true against true sets of the same
        size): near the floor the two describe the same, skewed distribution (for a mixture,
        close to a scaled χ²₁ driven by the mode counts), whose spread a few values often
        underestimate; far from the floor the sample's own spread is the larger.
        """
        if self.n_sets < 2:
            return math.nan
        return max(self.energy_std, self.floor.std) / math.sqrt(self.n_sets)

    @property
    def energy_ratio_se(self) -> float:
        """Standard error of ``energy_ratio`` (``energy_se`` and the floor's ``mean_se`` combined)."""
        f = self.floor.mean
        if not f > 0:
            return math.nan
        return math.hypot(self.energy_se / f, self.energy * self.floor.mean_se / f**2)

    @property
    @exact()
    def weight_errors(self) -> torch.Tensor:
        """ŵ_k − w_k for every mode."""
        return self.mode_weights - self.true_weights

    @property
    @exact()
    def max_weight_error(self) -> float:
        """max_k |ŵ_k − w_k|."""
        return float(self.weight_errors.abs().max())

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers for ``run.report`` / printing."""
        return {
            "energy": self.energy,
            "energy_std": self.energy_std,
            "energy_floor": self.floor.mean,
            "energy_floor_std": self.floor.std,
            "energy_ratio": self.energy_ratio,
            "energy_se": self.energy_se,
            "energy_ratio_se": self.energy_ratio_se,
            "n_sets": self.n_sets,
            "mode_weights": [round(float(w), 4) for w in self.mode_weights],
            "true_weights": [round(float(w), 4) for w in self.true_weights],
            "max_weight_error": self.max_weight_error,
            "log_likelihood": self.log_likelihood,
            "log_likelihood_se": self.log_likelihood_se,
            "true_log_likelihood": self.true_log_likelihood,
            "n": self.n,
            "n_total": self.n_total,
        }

    def summary(self) -> str:
        if self.n_sets > 1:
            ratio = f"{self.energy_ratio:.2f} ± {self.energy_ratio_se:.2f}x floor (± 1 s.e. over {self.n_sets} sets of {self.n})"
        else:
            ratio = f"{self.energy_ratio:.2f}x floor ({self.n} vs {self.n}, one set: no s.e.)"
        return (
            f"energy {self.energy:.2e} = {ratio} "
            f"(floor {self.floor.mean:.2e}, single values ± {self.floor.std:.1e}); "
            f"max |weight error| {self.max_weight_error:.3f} (n={self.n_total}); "
            f"log-lik {self.log_likelihood:.3f} (true {self.true_log_likelihood:.3f})"
        )


@exact()
def score_against_truth(
    x: torch.Tensor,
    gmm: Any,
    generator: torch.Generator | None = None,
    n: int | None = None,
    floor: NoiseFloor | None = None,
    repeats: int = 10,
) -> SampleScore:
    """Score samples ``x (N, d)`` against a mixture with ``sample``, ``log_prob``, ``means`` and
    ``weights``.

    * Energy distance at set size ``n`` (default N): ``x`` is cut into K = N // n sets of ``n``,
      each compared with a fresh set of ``n`` true samples; ``energy`` is their mean. Averaging
      over several sets shrinks the spread of the estimate (a single 2000-vs-2000 value fluctuates
      by roughly its own size), not its expectation.
    * Its standard error from those K independent values (several sample sets, each against its
      own reference draw — no bootstrap): ``energy_se`` = s/√K with s the larger of their spread
      and the floor's, so it shrinks like 1/√N at a fixed ``n``; ``energy_ratio_se`` adds the floor's own uncertainty. It needs K ≥ 2 (NaN
      otherwise). The ratio's *expectation* depends on ``n`` (≈ 1 + n·D²/(2 E|X − X'|)), so keep
      ``n`` fixed and raise N to tighten a comparison.
    * Its noise floor: :func:`energy_noise_floor` at the same ``n``, unless given.
    * Nearest-mode weights against the true weights, and the mean log-likelihood against that of
      the true reference samples, both over all N samples.

    The true reference samples are kept in ``reference``.
    """
    x = torch.as_tensor(x).detach()
    total = x.shape[0]
    n = total if n is None else n
    if not isinstance(n, int) or not (2 <= n <= total):
        raise ValueError(f"n must be an integer between 2 and the number of samples {total}, got {n!r}")
    if floor is None:
        floor = energy_noise_floor(gmm, n, generator=generator, repeats=repeats)
    elif floor.n != n:
        raise ValueError(f"the noise floor was computed for n={floor.n}, but the sets have n={n} samples")
    sets = total // n
    ref = gmm.sample(sets * n, generator=generator).to(x.device)
    values = [energy_distance(x[i * n : (i + 1) * n], ref[i * n : (i + 1) * n]) for i in range(sets)]
    means = torch.as_tensor(gmm.means)
    weights = to_exact(torch.as_tensor(gmm.weights).detach()).cpu()
    with torch.no_grad():
        lp = to_exact(gmm.log_prob(x))
    return SampleScore(
        energy=float(sum(values) / sets),
        energy_values=values,
        floor=floor,
        mode_weights=mode_weights(x, means).cpu(),
        true_weights=weights / weights.sum(),
        log_likelihood=float(lp.mean()),
        log_likelihood_se=float(lp.std()) / math.sqrt(total) if total > 1 else math.nan,
        true_log_likelihood=gmm_log_likelihood(ref, gmm),
        n=n,
        n_total=total,
        reference=ref,
    )


def ratio_separation(a: SampleScore, b: SampleScore | float) -> float:
    """(a.energy_ratio − b) in standard errors; ``b`` another score or a number (1 = the floor).

    For two scores on the same floor the floor's own uncertainty enters only through the
    difference. Scores whose sample sets share noise or reference draws are positively
    correlated, so treating them as independent, as here, overstates the error of their
    difference: a separation ≥ 2 is then a safe "the two differ". NaN when a s.e. is unknown.
    """
    if not isinstance(a, SampleScore):
        raise ValueError(f"a must be a SampleScore, got {type(a).__name__}")
    if isinstance(b, SampleScore):
        if b.floor.n != a.floor.n:
            raise ValueError(f"the two scores use different set sizes (n={a.floor.n} and n={b.floor.n}); "
                             "their ratios are on different scales: score both at the same n")
        diff = a.energy_ratio - b.energy_ratio
        if a.floor is b.floor:
            f = a.floor.mean
            se = math.hypot(math.hypot(a.energy_se, b.energy_se) / f, (a.energy - b.energy) * a.floor.mean_se / f**2)
        else:
            se = math.hypot(a.energy_ratio_se, b.energy_ratio_se)
    else:
        try:
            b = float(b)
        except (TypeError, ValueError):
            raise ValueError(f"b must be a SampleScore or a number, got {b!r}") from None
        diff, se = a.energy_ratio - b, a.energy_ratio_se
    if math.isnan(se):
        return math.nan
    if se == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / se
