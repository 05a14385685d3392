"""Discrete DDPM (Ho et al. 2020): buffers, forward noising, ε-losses, reverse steps, DDPM and DDIM loops.

Direction: integer step ``k = 0`` is data and ``k = T`` is (almost) pure noise. Every buffer has
length ``T`` and entry ``k - 1`` belongs to step ``k ∈ {1, …, T}`` (``betas[k - 1] = β_k``);
``alphas_cumprod_prev[k - 1] = ᾱ_{k-1}`` with ``ᾱ_0 = 1``. A network receives the float
``t = k / T`` of shape ``(B,)``: ``model(x, t, y)``, or ``model(x, t)`` when ``y`` is ``None``.

    q(x_k | x_0)          = N(√ᾱ_k x_0, (1 − ᾱ_k) I)                                   (Ho eq. 4)
    q(x_{k-1} | x_k, x_0) = N(μ̃_k, β̃_k I),                                          (seed 004 eq. 18)
        μ̃_k = √ᾱ_{k-1} β_k / (1 − ᾱ_k) · x_0 + √α_k (1 − ᾱ_{k-1}) / (1 − ᾱ_k) · x_k
        β̃_k = (1 − ᾱ_{k-1}) / (1 − ᾱ_k) · β_k          (β̃_1 = 0)
    x̂_0 = (x_k − √(1 − ᾱ_k) ε) / √ᾱ_k                                             (seed 004 eq. 19)

Buffers are float64 tensors on the CPU (or on the device given to :meth:`DDPM.to` where that device
computes in float64, :func:`nbhelpers.runtime.exact_device`: MPS has none, so there they stay on the CPU).
Every method casts the values it needs to the dtype and device of its input (one table per device and
dtype, cached), so one ``DDPM`` serves a model on any device. Random draws use the ``generator`` passed
in; a CPU generator also drives a CUDA or MPS run (the draw is made on the CPU and moved), which keeps
the draws identical across devices.
Guided sampling in chunks: :mod:`nbhelpers.ddpm_sampling`. A dry run caps the loops (:mod:`nbhelpers.dryrun`).
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch
from torch import nn

from ._checks import check_float, check_int
from .devices import exact, exact_device, randn, to_exact
from .ddpm_oracle import GMMEpsOracle  # the exact ε of a Gaussian mixture, a model for these samplers
from .dryrun import capped, sampler
from .progress import progress_bar

__all__ = ["DDPM", "Posterior", "StepResult", "SampleResult", "GMMEpsOracle", "LOSS_KINDS", "SIGMA_CHOICES", "SAMPLERS"]

LOSS_KINDS = ("l2", "l1", "huber")
SIGMA_CHOICES = ("posterior", "beta")
SAMPLERS = ("ancestral", "ddim")

Model = Callable[..., torch.Tensor]
Steps = int | torch.Tensor


class Posterior(NamedTuple):
    """Mean and variance of q(x_{k-1} | x_k, x_0); ``variance`` broadcasts against ``mean``."""

    mean: torch.Tensor
    variance: torch.Tensor


@dataclass
class StepResult:
    """One reverse step: the new state x_{k-1}, the x̂_0 used (clamped if asked) and the model's ε."""

    x_prev: torch.Tensor
    x0_pred: torch.Tensor
    eps: torch.Tensor


@dataclass
class SampleResult:
    """A sampling run. ``trajectory[k]`` is x_k and ``x0_preds[k]`` the x̂_0 predicted at step k
    for each requested k (``None`` when no steps were requested); ``nfe`` counts model calls
    (a guided step is one batched call)."""

    x: torch.Tensor
    trajectory: dict[int, torch.Tensor] | None
    x0_preds: dict[int, torch.Tensor] | None
    nfe: int


# --------------------------------------------------------------------------- helpers
def _model_device(model: Model) -> torch.device:
    tensors = itertools.chain(model.parameters(), model.buffers()) if isinstance(model, nn.Module) else ()
    return next((t.device for t in tensors), torch.device("cpu"))


def _call(model: Model, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    model = capped(model)  # inside a sampler call of a dry run ($NBHELPERS_MAX_STEPS): evaluations capped
    return model(x, t) if y is None else model(x, t, y)


ABAR_T_WARN = 0.01
"""ᾱ_T above this is "not small": x_T keeps √ᾱ_T ≥ 10 % of the signal, yet sampling starts from N(0, I)."""
_warned: set[str] = set()


def _check_y(y: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """Labels, when given, are one integer per sample ``(B,)``; their range is the model's to check."""
    if y is None:
        return None
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype.is_complex or tuple(y.shape) != (batch,):
        got = f"{y.dtype} tensor of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"labels y must be an integer tensor of shape ({batch},), one class per sample, got {got}; "
                         f"for classifier-free guidance pass nbhelpers.guidance.CFGModel(model, w, num_classes) "
                         f"as the model")
    return y


class _Kept:
    """The states x_k and predictions x̂_0 a sampling loop keeps at ``return_steps`` (k in 0..k0; none if ``None``)."""

    def __init__(self, return_steps: Sequence[int] | None, x: torch.Tensor, k0: int) -> None:
        self.steps = None if return_steps is None else {check_int("return_steps entry", k) for k in return_steps}
        bad = sorted(k for k in self.steps or () if not 0 <= k <= k0)
        if bad:
            raise ValueError(f"return_steps must lie in 0..{k0} (the start step), got {bad}")
        self.traj, self.preds = (None, None) if self.steps is None else ({}, {})
        self.add(k0 + 1, k0, x, x)

    def add(self, k: int, k_next: int, x_next: torch.Tensor, x0_pred: torch.Tensor) -> None:
        if self.steps is not None:
            if k in self.steps:
                self.preds[k] = x0_pred
            if k_next in self.steps:
                self.traj[k_next] = x_next.clone()


# --------------------------------------------------------------------------- the process
class DDPM:
    """Precomputed DDPM buffers and the operations built on them (see the module docstring).

    ``DDPM(betas)`` takes any β sequence in (0, 1) (β = 1 would divide by 1 − ᾱ = … and ᾱ = 0 at once);
    ``DDPM.from_schedule("linear" | "cosine", T)`` builds it with :func:`nbhelpers.schedules.ddpm_betas`.
    A schedule whose ᾱ_T is not small (above :data:`ABAR_T_WARN`) is accepted with a warning (once per
    schedule): sampling starts from N(0, I), which such an x_T is not.
    """

    def __init__(self, betas: torch.Tensor | Sequence[float]) -> None:
        with exact():  # the tables are float64 on the CPU
            self._build(betas)
        abar_T = float(self.alphas_cumprod[-1])
        if abar_T > ABAR_T_WARN:
            msg = (f"DDPM with T = {self.T}: ᾱ_T = {abar_T:.3g} is not small, so x_T keeps {abar_T ** 0.5:.0%} of the "
                   f"signal while sampling starts from pure N(0, I); use more steps T or larger betas "
                   f"(ᾱ_T ≤ {ABAR_T_WARN:g})")
            if msg not in _warned:
                _warned.add(msg)
                warnings.warn(msg, stacklevel=2)

    def _build(self, betas: torch.Tensor | Sequence[float]) -> None:
        try:
            betas = (to_exact(betas.detach()).cpu() if isinstance(betas, torch.Tensor)
                     else torch.as_tensor(betas, dtype=torch.float64)).clone()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"betas must be a non-empty 1-D sequence of numbers in (0, 1), got {betas!r}") from exc
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D sequence in (0, 1), got shape {tuple(betas.shape)}")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError(f"betas must lie in the open interval (0, 1); got min {betas.min().item()}, "
                             f"max {betas.max().item()}")
        self.T: int = int(betas.numel())
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([betas.new_ones(1), self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        # seed 004 eq. 18
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # β̃_1 = 0: like Ho et al., log-variance uses β̃_2 at the first step (β_1 when T = 1).
        first = self.posterior_variance[1:2] if self.T > 1 else betas[:1]
        self.posterior_log_variance_clipped = torch.log(torch.cat([first, self.posterior_variance[1:]]))
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1.0 - self.alphas_cumprod)
        self._cache: dict[tuple[torch.device, torch.dtype], dict[str, torch.Tensor]] = {}

    BUFFERS = ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
               "sqrt_one_minus_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
               "posterior_mean_coef1", "posterior_mean_coef2")

    @classmethod
    def from_schedule(cls, name: str, T: int) -> "DDPM":
        """Buffers for the named β schedule (``"linear"``: 1e-4 → 0.02; ``"cosine"``: Nichol & Dhariwal)."""
        from .schedules import ddpm_betas

        return cls(ddpm_betas(name, check_int("T", T, min=1)))

    def to(self, device: str | torch.device) -> "DDPM":
        """A copy whose float64 buffers live on ``device``, or on the CPU where ``device`` has no float64 (MPS;
        :func:`nbhelpers.runtime.exact_device`). ``self`` is unchanged; either serves a model on ``device``."""
        new = DDPM.__new__(DDPM)
        new.T = self.T
        home = exact_device(device)
        with exact():
            for name in self.BUFFERS:
                setattr(new, name, getattr(self, name).to(home))
        new._cache = {}
        return new

    def __repr__(self) -> str:
        return f"DDPM(T={self.T}, beta_1={self.betas[0].item():.3g}, beta_T={self.betas[-1].item():.3g})"

    # -- indexing -----------------------------------------------------------------
    def _table(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        key = (like.device, like.dtype)
        if key not in self._cache:
            # narrowed where the float64 buffers are, then moved: MPS makes no float64, not even for a copy
            self._cache[key] = {n: getattr(self, n).to(like.dtype).to(like.device) for n in self.BUFFERS}
        return self._cache[key]

    def _steps(self, k: Steps, x: torch.Tensor, low: int = 1) -> torch.Tensor:
        """``k`` as int64 ``(B,)`` on ``x.device``, checked to lie in ``low..T``."""
        if isinstance(k, int) and not isinstance(k, bool):  # the loops' path: no device sync
            if not low <= k <= self.T:
                raise ValueError(f"step k must lie in {low}..{self.T}, got {k}")
            return torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
        kk = torch.as_tensor(k)
        host = kk.device.type == "cpu"  # range-checked where the values are on the host (a GPU read-back stalls)
        kk = kk.to(x.device)
        if kk.is_floating_point() or kk.dtype == torch.bool:
            raise ValueError(f"k must be an integer step in {low}..{self.T}, got dtype {kk.dtype}; the network's t = k / T is computed here")
        kk = kk.long()
        if kk.ndim == 0:
            kk = kk.expand(x.shape[0])
        if kk.shape != (x.shape[0],):
            raise ValueError(f"k must be an int or a (B,) tensor with B = {x.shape[0]}, got shape {tuple(kk.shape)}")
        if kk.numel() and host and (int(kk.min()) < low or int(kk.max()) > self.T):
            raise ValueError(f"step k must lie in {low}..{self.T}, got values in {int(kk.min())}..{int(kk.max())}")
        return kk

    def _at(self, name: str, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Buffer ``name`` at steps ``k``, shaped ``(B, 1, …, 1)`` to broadcast against ``x``."""
        return self._table(x)[name][k - 1].reshape(-1, *([1] * (x.ndim - 1)))

    def time(self, k: Steps, x: torch.Tensor) -> torch.Tensor:
        """The network's float time ``t = k / T``, shape ``(B,)``, dtype and device of ``x``."""
        return self._steps(k, x, low=0).to(x.dtype) / self.T

    # -- forward process -------------------------------------------------------------
    def sample_steps(self, batch: int, generator: torch.Generator | None = None, device: str | torch.device | None = None) -> torch.Tensor:
        """Uniform steps k ∈ {1, …, T}, int64 ``(batch,)`` (on ``device``, default the generator's)."""
        batch = check_int("batch", batch, min=0)
        gen_device = generator.device if generator is not None else torch.device(device or "cpu")
        k = torch.randint(1, self.T + 1, (batch,), generator=generator, device=gen_device)
        return k.to(device) if device is not None else k

    def q_sample(self, x0: torch.Tensor, k: Steps, noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 *, check_steps: bool = True) -> torch.Tensor:
        """x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε, for k ∈ {0, …, T} (k = 0 returns x_0). ``check_steps=False`` skips the
        range check of ``k`` (a device sync per call) for integer ``(B,)`` steps drawn by :meth:`sample_steps`."""
        if check_steps:
            kk = self._steps(k, x0, low=0)
        elif isinstance(k, torch.Tensor) and not k.is_floating_point() and k.dtype != torch.bool:
            kk = k.long()
        else:
            raise ValueError(f"check_steps=False needs k as an integer tensor of steps, got {type(k).__name__} "
                             f"{getattr(k, 'dtype', '')}".rstrip())
        if noise is None:
            noise = randn(x0.shape, generator, x0.device, x0.dtype)
        return self._q_sample(x0, kk, noise)

    def _q_sample(self, x0: torch.Tensor, kk: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        tab = self._table(x0)
        # √ᾱ and √(1 − ᾱ) come from the float64 buffers (1 − ᾱ_k in float32 loses digits at small k);
        # k = 0 is padded in front: √ᾱ_0 = 1, √(1 − ᾱ_0) = 0.
        shape = (-1, *([1] * (x0.ndim - 1)))
        a = torch.cat([x0.new_ones(1), tab["sqrt_alphas_cumprod"]])[kk].reshape(shape)
        s = torch.cat([x0.new_zeros(1), tab["sqrt_one_minus_alphas_cumprod"]])[kk].reshape(shape)
        return a * x0 + s * noise

    def loss(
        self,
        model: Model,
        x0: torch.Tensor,
        y: torch.Tensor | None = None,
        kind: str = "l2",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """ε-prediction loss (Ho Alg. 1): k ~ U{1..T}, ε ~ N(0, I), mean of ρ(ε − ε_θ(x_k, k/T, y)).

        ``kind``: ``"l2"`` (squared error), ``"l1"`` (absolute error, seed 004) or ``"huber"`` (δ = 1).
        """
        if kind not in LOSS_KINDS:
            raise ValueError(f"unknown loss kind {kind!r}; valid choices: {', '.join(LOSS_KINDS)}")
        k = self.sample_steps(x0.shape[0], generator, device=x0.device)
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
        x_k = self._q_sample(x0, k, noise)
        eps = _call(model, x_k, k.to(x0.dtype) / self.T, y)
        if kind == "l2":
            return torch.nn.functional.mse_loss(eps, noise)
        if kind == "l1":
            return torch.nn.functional.l1_loss(eps, noise)
        return torch.nn.functional.huber_loss(eps, noise, delta=1.0)

    # -- reverse process -------------------------------------------------------------
    def predict_x0(self, x_k: torch.Tensor, k: Steps, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_k − √(1 − ᾱ_k) ε) / √ᾱ_k (seed 004 eq. 19)."""
        return self._predict_x0(x_k, self._steps(k, x_k), eps)

    def _predict_x0(self, x_k: torch.Tensor, kk: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return (x_k - self._at("sqrt_one_minus_alphas_cumprod", kk, x_k) * eps) / self._at("sqrt_alphas_cumprod", kk, x_k)

    def q_posterior(self, x0: torch.Tensor, x_k: torch.Tensor, k: Steps) -> Posterior:
        """Mean μ̃_k(x_k, x_0) and variance β̃_k of q(x_{k-1} | x_k, x_0) (seed 004 eq. 18)."""
        return self._q_posterior(x0, x_k, self._steps(k, x_k))

    def _q_posterior(self, x0: torch.Tensor, x_k: torch.Tensor, kk: torch.Tensor) -> Posterior:
        mean = self._at("posterior_mean_coef1", kk, x_k) * x0 + self._at("posterior_mean_coef2", kk, x_k) * x_k
        return Posterior(mean, self._at("posterior_variance", kk, x_k))

    def predict_eps(
        self,
        model: Model,
        x_k: torch.Tensor,
        k: Steps,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ε_θ(x_k, k/T, y); guided when ``model`` is a :class:`nbhelpers.guidance.CFGModel`."""
        y = _check_y(y, x_k.shape[0])
        return self._eps(model, x_k, self._steps(k, x_k), y)

    def _eps(self, model: Model, x_k: torch.Tensor, kk: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return _call(model, x_k, kk.to(x_k.dtype) / self.T, y)

    @torch.no_grad()
    def p_step(
        self,
        model: Model,
        x_k: torch.Tensor,
        k: Steps,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        clip_x0: bool = True,
        sigma: str = "posterior",
    ) -> StepResult:
        """One reverse step x_k → x_{k-1} (seed 004 Alg. 2): x̂_0 from ε_θ (clamped to [−1, 1] when
        ``clip_x0``), μ̃_k(x_k, x̂_0) of eq. 18, plus σ_k z with σ_k² = β̃_k (``"posterior"``) or β_k
        (``"beta"``); no noise where k = 1."""
        if sigma not in SIGMA_CHOICES:
            raise ValueError(f"unknown sigma {sigma!r}; valid choices: {', '.join(SIGMA_CHOICES)}")
        y = _check_y(y, x_k.shape[0])
        return self._p_step(model, x_k, k, y, generator, clip_x0, sigma)

    def _p_step(self, model: Model, x_k: torch.Tensor, k: Steps, y: torch.Tensor | None,
                generator: torch.Generator | None, clip_x0: bool, sigma: str) -> StepResult:
        kk = self._steps(k, x_k)
        last = k == 1 if isinstance(k, int) else bool((kk == 1).all())
        eps = self._eps(model, x_k, kk, y)
        x0_pred = self._predict_x0(x_k, kk, eps)
        if clip_x0:
            x0_pred = x0_pred.clamp(-1.0, 1.0)
        mean = self._q_posterior(x0_pred, x_k, kk).mean
        if last:  # every sample is at its last step: no noise, and no draw
            return StepResult(mean, x0_pred, eps)
        var = self._at("posterior_variance" if sigma == "posterior" else "betas", kk, x_k)
        nonzero = (kk > 1).to(x_k.dtype).reshape(var.shape)
        z = randn(x_k.shape, generator, x_k.device, x_k.dtype)
        return StepResult(mean + nonzero * var.sqrt() * z, x0_pred, eps)

    def _start(
        self,
        model: Model,
        shape_or_x: Sequence[int] | torch.Tensor | None,
        start_step: int | None,
        x_start: torch.Tensor | None,
        generator: torch.Generator | None,
        device: str | torch.device | None,
    ) -> tuple[torch.Tensor, int]:
        k0 = self.T if start_step is None else check_int("start_step", start_step, min=0, max=self.T)
        if x_start is not None:
            if shape_or_x is not None:
                raise ValueError("give either shape_or_x (noise / the state at start_step) or x_start (clean data), not both")
            return self.q_sample(x_start, k0, generator=generator), k0
        if shape_or_x is None:
            raise ValueError("shape_or_x is required unless x_start is given")
        if isinstance(shape_or_x, torch.Tensor):
            return shape_or_x, k0
        try:
            shape = tuple(check_int("shape_or_x entry", d, min=1) for d in shape_or_x)
        except TypeError:
            raise ValueError(f"shape_or_x must be a shape (a sequence of positive integers) or a tensor, "
                             f"got {shape_or_x!r}") from None
        if not shape:
            raise ValueError("shape_or_x must be a non-empty shape (B, ...) or a tensor, got ()")
        dev = torch.device(device) if device is not None else _model_device(model)
        return randn(shape, generator, dev, torch.float32), k0

    @sampler
    @torch.no_grad()
    def sample(
        self,
        model: Model,
        shape_or_x: Sequence[int] | torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        clip_x0: bool = True,
        sigma: str = "posterior",
        return_steps: Sequence[int] | None = None,
        start_step: int | None = None,
        x_start: torch.Tensor | None = None,
        progress: bool = False,
        device: str | torch.device | None = None,
    ) -> SampleResult:
        """Ancestral sampling (Ho Alg. 2) from step ``start_step`` (default T) down to 0.

        Start state: ``shape_or_x`` as a shape draws x_T ~ N(0, I) (on ``device``, default the
        model's); as a tensor it is x_{start_step} itself. With ``x_start`` (clean data, for
        editing as in seed 003) the start is x_{start_step} ~ q(x_{start_step} | x_start).
        ``return_steps`` (k values in 0..start_step) selects the states and x̂_0 kept.
        """
        if sigma not in SIGMA_CHOICES:
            raise ValueError(f"unknown sigma {sigma!r}; valid choices: {', '.join(SIGMA_CHOICES)}")
        x, k0 = self._start(model, shape_or_x, start_step, x_start, generator, device)
        y = _check_y(y, x.shape[0])
        kept = _Kept(return_steps, x, k0)
        steps = range(k0, 0, -1)
        if progress:
            steps = progress_bar(steps, desc="DDPM", leave=False)
        nfe = 0
        for k in steps:
            out = self._p_step(model, x, k, y, generator, clip_x0, sigma)
            x = out.x_prev
            nfe += 1
            kept.add(k, k - 1, x, out.x0_pred)
        return SampleResult(x, kept.traj, kept.preds, nfe)

    def ddim_steps(self, n_steps: int, start_step: int | None = None) -> list[int]:
        """The DDIM sub-sequence: ``n_steps`` evenly spaced steps from ``start_step`` (default T) down to 1."""
        k0 = self.T if start_step is None else check_int("start_step", start_step, min=0, max=self.T)
        if k0 < 1:
            raise ValueError(f"DDIM needs start_step >= 1 (there is nothing to denoise at step 0), got {k0}")
        n_steps = check_int("n_steps", n_steps, min=1, max=k0)
        with exact():  # on the host: a list of steps
            ks = torch.linspace(k0, 1, n_steps, dtype=torch.float64).round().long().tolist()
        return sorted(set(ks), reverse=True)

    def ddim_step(self, x: torch.Tensor, k: int, k_next: int, eps: torch.Tensor, *, eta: float = 0.0,
                  noise: torch.Tensor | None = None, clip_x0: bool = True) -> StepResult:
        """One DDIM step x_k → x_{k'} (Song et al. 2021, eq. 12), k' < k, given the model's ε̂ = ``eps`` at (x_k, k):

        1. x̂_0 = (x_k − √(1 − ᾱ_k) ε̂) / √ᾱ_k                                  ("predicted x_0", eq. 12)
        2. with ``clip_x0``: x̂_0 clamped to [−1, 1] and ε̂ = (x_k − √ᾱ_k x̂_0) / √(1 − ᾱ_k) recomputed from it
        3. σ = η √((1 − ᾱ_{k'}) / (1 − ᾱ_k)) √(1 − ᾱ_k / ᾱ_{k'})                         (eq. 16)
        4. x_{k'} = √ᾱ_{k'} x̂_0 + √(1 − ᾱ_{k'} − σ²) ε̂ + σ z        ("direction pointing to x_t" + noise, eq. 12)

        with ᾱ_0 = 1. η > 0 with k' > 0 needs the draw z = ``noise`` (shaped like x). Returns x_{k'} as ``x_prev``.
        """
        if not (isinstance(k, int) and isinstance(k_next, int) and 0 <= k_next < k <= self.T):
            raise ValueError(f"need integer steps 0 <= k_next < k <= T = {self.T}, got k = {k!r}, k_next = {k_next!r}")
        abar = self._table(x)["alphas_cumprod"]
        a, a_next = abar[k - 1], (abar[k_next - 1] if k_next > 0 else abar.new_ones(()))  # ᾱ_0 = 1
        x0_pred = self._predict_x0(x, self._steps(k, x), eps)
        if clip_x0:
            x0_pred = x0_pred.clamp(-1.0, 1.0)
            eps = (x - a.sqrt() * x0_pred) / (1.0 - a).sqrt()
        var = eta**2 * (1.0 - a_next) / (1.0 - a) * (1.0 - a / a_next)
        x_next = a_next.sqrt() * x0_pred + (1.0 - a_next - var).clamp(min=0.0).sqrt() * eps
        if k_next > 0 and eta > 0:
            if noise is None:
                raise ValueError(f"a DDIM step with eta = {eta:g} > 0 to k_next = {k_next} > 0 needs noise z shaped like x")
            x_next = x_next + var.sqrt() * noise
        return StepResult(x_next, x0_pred, eps)

    @sampler
    @torch.no_grad()
    def ddim_sample(
        self,
        model: Model,
        shape_or_x: Sequence[int] | torch.Tensor | None,
        n_steps: int,
        eta: float = 0.0,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        clip_x0: bool = True,
        return_steps: Sequence[int] | None = None,
        start_step: int | None = None,
        x_start: torch.Tensor | None = None,
        progress: bool = False,
        device: str | torch.device | None = None,
    ) -> SampleResult:
        """DDIM (Song et al. 2021) on the sub-sequence :meth:`ddim_steps`, each step k → k' by :meth:`ddim_step`
        (eq. 12) with z ~ N(0, I) drawn with ``generator`` where η > 0 and k' > 0. η = 0 is deterministic given the
        start state; η = 1 with ``n_steps = T`` is ancestral sampling with σ² = β̃_k. ``return_steps`` may only
        name visited steps (those of ``ddim_steps`` and 0).
        """
        eta = check_float("eta", eta, min=0.0)
        x, k0 = self._start(model, shape_or_x, start_step, x_start, generator, device)
        y = _check_y(y, x.shape[0])
        ks = self.ddim_steps(n_steps, k0)
        kept = _Kept(return_steps, x, k0)
        unvisited = sorted((kept.steps or set()) - set(ks) - {0})
        if unvisited:
            raise ValueError(f"return_steps {unvisited} are not visited by DDIM; visited steps: {ks + [0]}")
        pairs = list(zip(ks, ks[1:] + [0]))
        if progress:
            pairs = progress_bar(pairs, desc="DDIM", leave=False)
        nfe = 0
        for k, k_next in pairs:
            eps = self._eps(model, x, self._steps(k, x), y)
            nfe += 1
            z = randn(x.shape, generator, x.device, x.dtype) if k_next > 0 and eta > 0 else None
            out = self.ddim_step(x, k, k_next, eps, eta=eta, noise=z, clip_x0=clip_x0)
            x = out.x_prev
            kept.add(k, k_next, x, out.x0_pred)
        return SampleResult(x, kept.traj, kept.preds, nfe)
