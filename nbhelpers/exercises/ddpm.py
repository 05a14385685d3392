"""Exercises of notebook 06: DDPM's forward noising, its posterior, one reverse step, and classifier-free guidance.

Direction as in :mod:`nbhelpers.ddpm`: integer step k = 0 is data, k = T noise; every buffer has entry k − 1 for
step k (``ddpm.betas[k - 1] = β_k``, ``ddpm.alphas_cumprod_prev[k - 1] = ᾱ_{k−1}`` with ᾱ_0 = 1), and a network
sees t = k / T. Guidance follows :mod:`nbhelpers.guidance`: ε̄ = (w + 1)·ε(x, t, y) − w·ε(x, t, ∅), ∅ = num_classes.
The closed-form cases use a short hand-made schedule (:data:`_BETAS`) whose ᾱ_k are products written out here.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from .. import ddpm as _ddpm
from .. import distributions as _distributions
from .. import guidance as _guidance
from ..metrics.stats import binomial_se as _binomial_se
from .core import Case, Exercise, register
from .core import gen as _gen
from .core import randn as _randn
from .core import se_var as _se_var

_BETAS = (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)
"""A six-step schedule for closed forms: ᾱ_k = Π_{i≤k} (1 − β_i) = 0.9, 0.63, 0.315, … (ᾱ_6 < 0.01, no warning)."""


def _toy() -> _ddpm.DDPM:
    return _ddpm.DDPM(torch.tensor(_BETAS, dtype=torch.float64))


def _abar(k: int) -> float:
    """ᾱ_k of :data:`_BETAS` by hand (ᾱ_0 = 1)."""
    return math.prod(1.0 - b for b in _BETAS[:k])


def _cosine50() -> _ddpm.DDPM:
    return _ddpm.DDPM.from_schedule("cosine", 50)


def _oracle(ddpm: _ddpm.DDPM) -> _ddpm.GMMEpsOracle:
    """The exact ε of the two-pixel mixture (conditional on y when given): a network without training error."""
    return _ddpm.GMMEpsOracle(ddpm, _distributions.two_pixel())


def _steps(n: int, T: int, seed: int) -> Tensor:
    return torch.randint(1, T + 1, (n,), generator=_gen(seed))


def _col(values: list[float], like: Tensor) -> Tensor:
    """Per-sample numbers as ``(B, 1, …, 1)`` to broadcast against ``like``."""
    return torch.tensor(values, dtype=torch.float64).reshape(-1, *([1] * (like.ndim - 1)))


# --------------------------------------------------------------------------- q_sample
def _q_sample_reference() -> Callable:
    def q_sample(ddpm: Any, x0: Tensor, k: Any, eps: Tensor) -> Tensor:
        return ddpm.q_sample(x0, k, noise=eps)
    return q_sample


def _q_sample_cases() -> list[Case]:
    cos, toy = _cosine50(), _toy()
    x0, eps, k = _randn(6, 2, seed=101), _randn(6, 2, seed=102), _steps(6, 50, 103)
    xi, ei, ki = _randn(3, 1, 4, 4, seed=104), _randn(3, 1, 4, 4, seed=105), torch.tensor([1, 3, 6])
    n = 20_000
    x1 = torch.tensor([[0.5, -1.0]]).expand(n, 2)
    e_many = _randn(n, 2, seed=106)
    a2 = _abar(2)

    def closed(x: Tensor, e: Tensor, ks: list[int]) -> Tensor:
        a = _col([_abar(kk) for kk in ks], x)
        return a.sqrt() * x.double() + (1 - a).sqrt() * e.double()

    return [
        Case("6 points in 2D at random steps k (cosine, T = 50), against nbhelpers.ddpm.DDPM.q_sample, same ε",
             lambda f: f(cos, x0, k, eps), lambda: cos.q_sample(x0, k, noise=eps),
             "x_k = √ᾱ_k·x_0 + √(1 − ᾱ_k)·ε with ᾱ_k = ddpm.alphas_cumprod[k − 1] (entry k − 1 is step k)"),
        Case("an image batch (3, 1, 4, 4) at k = 1, 3, 6 of a six-step schedule: the closed form",
             lambda f: f(toy, xi, ki, ei), lambda: closed(xi, ei, [1, 3, 6]),
             "k has shape (B,): reshape ᾱ_k to (B, 1, …, 1) so it broadcasts over each image's pixels"),
        Case("k given as an int (k = 4) applies to every sample: the closed form",
             lambda f: f(toy, x0, 4, eps), lambda: closed(x0, eps, [4] * 6),
             "an int k picks one ᾱ_k for the whole batch; index the buffer with k − 1, not k"),
        Case(f"moments: {n} draws from x_0 = (0.5, −1) at k = 2 have mean √ᾱ_2·x_0 and variance 1 − ᾱ_2 = {1 - a2:.2f}",
             lambda f: (lambda x: torch.stack([x.mean(0), x.var(0)]))(f(toy, x1, 2, e_many)),
             lambda: torch.tensor([[math.sqrt(a2) * 0.5, -math.sqrt(a2)], [1 - a2, 1 - a2]]),
             "the noise is scaled by the standard deviation √(1 − ᾱ_k), not by the variance 1 − ᾱ_k, and the "
             "signal by √ᾱ_k",
             atol=4 * max(math.sqrt((1 - a2) / n), _se_var(n) * (1 - a2)), rtol=0.0),
    ]


# --------------------------------------------------------------------------- q_posterior
def _q_posterior_reference() -> Callable:
    def q_posterior(ddpm: Any, x0: Tensor, x_k: Tensor, k: Any) -> tuple[Tensor, Tensor]:
        return ddpm.q_posterior(x0, x_k, k)
    return q_posterior


def _pair(res: Any) -> tuple[Any, Any]:
    """The (mean, variance) the task asks for; anything else is named (a 3-tuple would pass res[0] silently)."""
    if isinstance(res, Tensor) or not isinstance(res, (tuple, list)) or len(res) != 2:
        what = (f"a {len(res)}-element {type(res).__name__}" if isinstance(res, (tuple, list))
                else f"a {type(res).__name__}")
        raise TypeError(f"q_posterior must return two things, (mean, variance); it returned {what}")
    return res[0], res[1]


def _mean(res: Any) -> Tensor:
    return _pair(res)[0]


def _variance(res: Any) -> Tensor:
    """The returned variance broadcast to the mean's shape (a (B, 1) or (1, 1) variance both pass)."""
    mean, var = _pair(res)
    return torch.broadcast_to(torch.as_tensor(var), mean.shape)


def _q_posterior_cases() -> list[Case]:
    cos, toy = _cosine50(), _toy()
    x0, xk, k = _randn(6, 2, seed=111), _randn(6, 2, seed=112), _steps(6, 50, 113)
    lib = cos.q_posterior(x0, xk, k)
    ones = torch.ones(6, dtype=torch.long)
    # six-step schedule at k = 3, from the formula with the ᾱ written out
    a_prev, a, b = _abar(2), _abar(3), _BETAS[2]
    c1, c2 = math.sqrt(a_prev) * b / (1 - a), math.sqrt(1 - b) * (1 - a_prev) / (1 - a)
    var3 = (1 - a_prev) / (1 - a) * b
    # x_k at its noise-free mean √ᾱ_k·x_0 (float64: the identity holds to rounding)
    x0d = x0.double()
    sa, sa_prev = cos.sqrt_alphas_cumprod[k - 1][:, None], cos.alphas_cumprod_prev[k - 1].sqrt()[:, None]
    return [
        Case("the mean at random steps k (cosine, T = 50), against nbhelpers.ddpm.DDPM.q_posterior",
             lambda f: _mean(f(cos, x0, xk, k)), lambda: lib.mean,
             "μ̃_k = √ᾱ_{k−1}·β_k/(1 − ᾱ_k)·x_0 + √α_k·(1 − ᾱ_{k−1})/(1 − ᾱ_k)·x_k with α_k = 1 − β_k; "
             "ᾱ_{k−1} is ddpm.alphas_cumprod_prev[k − 1]"),
        Case("the variance at the same steps, against the library",
             lambda f: _variance(f(cos, x0, xk, k)), lambda: lib.variance.expand(6, 2),
             "β̃_k = (1 − ᾱ_{k−1})/(1 − ᾱ_k)·β_k, one number per sample, shaped (B, 1) to broadcast over x"),
        Case("k = 1: the posterior is x_0 itself, with variance β̃_1 = 0 ([mean, variance])",
             lambda f: (lambda r: torch.cat([_mean(r), _variance(r)]))(f(cos, x0, xk, ones)),
             lambda: torch.cat([x0, torch.zeros(6, 2)]),
             "ᾱ_0 = 1, so at k = 1 the x_0 weight is β_1/(1 − ᾱ_1) = 1, the x_k weight 0 and β̃_1 = 0: use "
             "ddpm.alphas_cumprod_prev (not alphas_cumprod shifted by hand)"),
        Case("a six-step schedule at k = 3: the closed form [mean, variance]",
             lambda f: (lambda r: torch.cat([_mean(r), _variance(r)]))(f(toy, x0, xk, 3)),
             lambda: torch.cat([c1 * x0.double() + c2 * xk.double(), torch.full((6, 2), var3, dtype=torch.float64)]),
             f"with ᾱ_2 = {a_prev:.3g}, ᾱ_3 = {a:.4g}, β_3 = {b}: the x_0 weight is {c1:.4f} and the x_k weight "
             f"{c2:.4f}, both positive"),
        Case("when x_k sits at its noise-free mean √ᾱ_k·x_0, the posterior mean is √ᾱ_{k−1}·x_0",
             lambda f: _mean(f(cos, x0d, sa * x0d, k)), lambda: sa_prev * x0d,
             "both terms of μ̃_k enter with a plus sign: √ᾱ_{k−1}β_k + √α_k(1 − ᾱ_{k−1})√ᾱ_k = √ᾱ_{k−1}(1 − ᾱ_k)"),
    ]


# --------------------------------------------------------------------------- p_step
def _p_step_reference() -> Callable:
    def p_step(ddpm: Any, model: Callable, x_k: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        return ddpm.p_step(model, x_k, k, generator=generator, sigma="beta").x_prev
    return p_step


def _zero_eps(x: Tensor, t: Tensor) -> Tensor:
    return torch.zeros_like(x)


def _p_step_cases() -> list[Case]:
    cos, toy = _cosine50(), _toy()
    oracle = _oracle(cos)
    x = _randn(8, 2, seed=121)
    x0 = torch.rand(5, 2, generator=_gen(122)) * 1.6 - 0.8  # inside the clamp range
    eps = _randn(5, 2, seed=123)
    x1 = math.sqrt(_abar(1)) * x0 + math.sqrt(1 - _abar(1)) * eps
    far = torch.tensor([[3.0, -3.0], [0.5, -0.2], [-2.0, 0.9]])
    n = 20_000

    def then_draw(out: Tensor, g: torch.Generator) -> Tensor:
        return torch.cat([out.double(), torch.randn(1, 2, generator=g, dtype=torch.float64)])

    def k1(f: Callable) -> Tensor:
        g = _gen(8)
        return then_draw(f(toy, lambda xx, t: eps, x1, 1, g), g)

    return [
        Case("8 points at k = 30 (cosine, T = 50, the exact ε of the two-pixel mixture), against "
             "nbhelpers.ddpm.DDPM.p_step(sigma='beta') with the same generator",
             lambda f: f(cos, oracle, x, 30, _gen(7)),
             lambda: cos.p_step(oracle, x, 30, generator=_gen(7), sigma="beta").x_prev,
             "call model(x_k, t) with t = k / T as a (B,) tensor; x̂_0 = (x_k − √(1 − ᾱ_k)·ε)/√ᾱ_k clamped to "
             "[−1, 1]; x_{k−1} = μ̃_k(x_k, x̂_0) + √β_k·z with z = torch.randn(x_k.shape, generator=generator)"),
        Case("k = 1 with the true ε: the step returns x_0 and draws no noise (then: the generator's next draw)",
             k1, lambda: torch.cat([x0.double(), torch.randn(1, 2, generator=_gen(8), dtype=torch.float64)]),
             "at k = 1 the posterior mean is x̂_0 and the last step adds no noise — draw z only when k > 1"),
        Case("x̂_0 is clamped to [−1, 1] (ε = 0, k = 1 of a six-step schedule: x_0 = clamp(x_1/√ᾱ_1))",
             lambda f: f(toy, _zero_eps, far, 1, _gen(9)),
             lambda: (far / math.sqrt(_abar(1))).clamp(-1.0, 1.0),
             "clamp x̂_0 = (x_k − √(1 − ᾱ_k)·ε)/√ᾱ_k with .clamp(-1, 1) before it enters the posterior mean"),
        Case(f"a moment: from x_k = 0 with ε = 0 at k = 3 the step has variance σ² = β_3 = {_BETAS[2]} ({n} draws)",
             lambda f: f(toy, _zero_eps, torch.zeros(n, 2), 3, _gen(10)).var(0),
             lambda: torch.full((2,), _BETAS[2]),
             "σ_k² = β_k here (not the posterior β̃_k): add √β_k·z, the standard deviation times z",
             atol=4 * _se_var(n) * _BETAS[2], rtol=0.0),
    ]


# --------------------------------------------------------------------------- guided_eps
class _Counted:
    """A network that counts its calls: ε(x, t, y) = x + y (the label as a number, ∅ = 2)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        return x + y.to(x.dtype)[:, None]


def _guided_cases() -> list[Case]:
    cos = _cosine50()
    oracle = _oracle(cos)
    x, t = _randn(8, 2, seed=131), torch.full((8,), 0.4)
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    null = torch.full((8,), 2)

    def calls(f: Callable) -> int:
        m = _Counted()
        f(m, x, t, y, 1.0, 2)
        return m.calls

    return [
        Case("8 points, w = 1.5, the exact conditional ε of the two-pixel mixture: against "
             "nbhelpers.guidance.guided_eps",
             lambda f: f(oracle, x, t, y, 1.5, 2), lambda: _guidance.guided_eps(oracle, x, t, y, 1.5, 2),
             "ε̄ = (w + 1)·ε(x, t, y) − w·ε(x, t, ∅), where the null label ∅ is num_classes"),
        Case("w = 0 is plain conditional sampling: ε̄ = ε(x, t, y)",
             lambda f: f(oracle, x, t, y, 0.0, 2), lambda: oracle(x, t, y),
             "this series writes ε̄ = (w + 1)·ε_y − w·ε_∅ (seed 001 eq. 18), not ε_∅ + w·(ε_y − ε_∅): "
             "w = 0 must give the conditional ε"),
        Case("w = −1 gives the unconditional ε(x, t, ∅)",
             lambda f: f(oracle, x, t, y, -1.0, 2), lambda: oracle(x, t, null),
             "the unconditional term uses the null label ∅ = num_classes for every sample"),
        Case("a linear network ε(x, t, y) = x + y at w = 3: the closed form x + (w + 1)·y − w·2",
             lambda f: f(_Counted(), x, t, y, 3.0, 2), lambda: x + 4.0 * y[:, None] - 6.0,
             "both terms take the same x and t; only the label differs (y, then ∅ = num_classes = 2)"),
        Case("one batched call of the network on [x; x] with labels [y; ∅]",
             calls, lambda: 1.0,
             "concatenate: model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, ∅])) and split the output "
             "at B — one pass instead of two"),
    ]


# --------------------------------------------------------------------------- drop_labels
def _drop_cases() -> list[Case]:
    y = torch.randint(0, 10, (1000,), generator=_gen(141))
    n, p = 20_000, 0.3
    y_many = torch.randint(0, 2, (n,), generator=_gen(142))

    def unchanged(f: Callable) -> Tensor:
        yy = y.clone()
        f(yy, 0.5, 10, _gen(12))
        return yy

    # every case hands the function a copy: a function that writes into its input must not corrupt the next case
    return [
        Case("1000 labels of 10 classes, p_uncond = 0.2: against nbhelpers.guidance.drop_labels, same generator",
             lambda f: f(y.clone(), 0.2, 10, _gen(11)), lambda: _guidance.drop_labels(y, 0.2, 10, _gen(11)),
             "u = torch.rand(y.shape, generator=generator, device=y.device), one number per label; a label "
             "becomes ∅ = num_classes where u < p_uncond"),
        Case("p_uncond = 0 keeps every label; p_uncond = 1 makes every label ∅ = 10",
             lambda f: torch.cat([f(y.clone(), 0.0, 10, _gen(13)), f(y.clone(), 1.0, 10, _gen(14))]),
             lambda: torch.cat([y, torch.full_like(y, 10)]),
             "compare u < p_uncond (strictly): u ∈ [0, 1), so p = 0 drops nothing and p = 1 drops all"),
        Case(f"a moment: about p = {p} of {n} labels become ∅ = 2",
             lambda f: float((f(y_many.clone(), p, 2, _gen(15)) == 2).double().mean()), lambda: p,
             "each label is dropped independently with probability p_uncond, the null label is num_classes",
             atol=4 * _binomial_se(p, n), rtol=0.0),
        Case("the labels passed in are left unchanged (the batch is reused)",
             unchanged, lambda: y,
             "return a new tensor (torch.where(...)); y[mask] = num_classes would overwrite the batch's labels"),
    ]


register(
    Exercise("q_sample", "06_two_pixel_ddpm_cfg",
             "return x_k = √ᾱ_k·x_0 + √(1 − ᾱ_k)·ε with ᾱ_k = ddpm.alphas_cumprod[k − 1]; k is an int or a (B,) "
             "tensor of steps in 1..T, broadcast over x_0's data dimensions",
             _q_sample_reference, "nbhelpers.ddpm.DDPM.q_sample", _q_sample_cases),
    Exercise("q_posterior", "06_two_pixel_ddpm_cfg",
             "return (mean, variance) of q(x_{k−1} | x_k, x_0): μ̃_k = √ᾱ_{k−1}·β_k/(1 − ᾱ_k)·x_0 + "
             "√α_k·(1 − ᾱ_{k−1})/(1 − ᾱ_k)·x_k and β̃_k = (1 − ᾱ_{k−1})/(1 − ᾱ_k)·β_k, shaped (B, 1, …, 1)",
             _q_posterior_reference, "nbhelpers.ddpm.DDPM.q_posterior", _q_posterior_cases),
    Exercise("drop_labels", "06_two_pixel_ddpm_cfg",
             "draw u = torch.rand(y.shape, generator=generator, device=y.device) and return a new tensor with "
             "each label where u < p_uncond replaced by ∅ = num_classes",
             lambda: _guidance.drop_labels, "nbhelpers.guidance.drop_labels", _drop_cases),
    Exercise("p_step", "06_two_pixel_ddpm_cfg",
             "one reverse step: ε = model(x_k, k/T), x̂_0 = (x_k − √(1 − ᾱ_k)·ε)/√ᾱ_k clamped to [−1, 1], "
             "return μ̃_k(x_k, x̂_0) + √β_k·z with z = torch.randn(x_k.shape, generator=generator), no z at k = 1",
             _p_step_reference, "nbhelpers.ddpm.DDPM.p_step(sigma='beta')", _p_step_cases),
    Exercise("guided_eps", "06_two_pixel_ddpm_cfg",
             "return ε̄ = (w + 1)·ε(x, t, y) − w·ε(x, t, ∅) with ∅ = num_classes, both from one call "
             "model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, ∅]))",
             lambda: _guidance.guided_eps, "nbhelpers.guidance.guided_eps", _guided_cases),
)
