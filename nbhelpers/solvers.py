"""Stateless ODE (Euler, Heun) and SDE (Euler–Maruyama) integrators.

They work with any callable ``f(x, t)`` where ``x`` is ``(B, ...)`` and ``t`` a float tensor ``(B,)``
on ``x``'s device — a closed-form field, a trained network, an SDE's ``drift``. Time may run in
either direction (``t1 < t0`` integrates backwards with step h = (t1 − t0)/n_steps < 0), so the
same functions serve t = 0 → 1 flow sampling and Song's t = 1 → 0 reverse SDE.

Everything runs under ``torch.no_grad()``; a field that needs autograd inside (e.g. a score
obtained by differentiating a log-density) must wrap its body in ``torch.enable_grad()``.
All paths are advanced together (no Python loop over samples).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from ._checks import check_finite, check_float, check_int
from .devices import exact, randn
from .dryrun import capped, sampler

__all__ = ["Solution", "euler", "heun", "euler_maruyama", "simulate_sde", "time_grid", "sample_from_noise", "METHODS"]

METHODS = ("euler", "heun", "euler_maruyama")

Field = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Solution:
    """Result of an integration.

    x: final state (B, ...); ts: the time grid (n_steps + 1,);
    trajectory: all states (n_steps + 1, B, ...) or None; nfe: number of function evaluations.
    """

    x: Tensor
    ts: Tensor
    trajectory: Tensor | None
    nfe: int


def time_grid(t0: float, t1: float, n_steps: int, like: Tensor | None = None) -> Tensor:
    """n_steps + 1 equally spaced times from t0 to t1 (on ``like``'s device and dtype; else float64 on the CPU)."""
    n_steps = check_int("n_steps", n_steps, min=1)
    for label, v in (("t0", t0), ("t1", t1)):
        if isinstance(v, Tensor):
            if v.numel() != 1:
                raise ValueError(f"{label} must be a number, got a tensor of shape {tuple(v.shape)}")
            v = float(v)
        if not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ValueError(f"{label} must be a finite number, got {v!r}")
    if like is not None:
        return torch.linspace(float(t0), float(t1), int(n_steps) + 1, dtype=like.dtype, device=like.device)
    with exact():  # float64 on the CPU
        return torch.linspace(float(t0), float(t1), int(n_steps) + 1, dtype=torch.float64)


def _check_x0(x0: Any) -> Tensor:
    if not isinstance(x0, Tensor) or x0.ndim < 1 or not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating-point tensor with a batch dimension (B, ...), got "
                         f"{type(x0).__name__} {tuple(getattr(x0, 'shape', ()))}")
    return x0


def _check_field(f: Any, label: str) -> None:
    if not callable(f):
        raise ValueError(f"{label} must be a callable f(x, t), got {f!r}")


def _call(f: Field, x: Tensor, t: Tensor) -> Tensor:
    """The one place a solver evaluates its field; in a dry run's sampler call a network's evaluations are capped."""
    out = capped(f)(x, t.expand(x.shape[0]))
    if not isinstance(out, Tensor) or out.shape != x.shape:
        raise ValueError(f"the vector field must return a tensor shaped like x {tuple(x.shape)}, got "
                         f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
    return out


@sampler
def euler(f: Field, x0: Tensor, t0: float, t1: float, n_steps: int, return_trajectory: bool = False) -> Solution:
    """Explicit Euler for dx/dt = f(x, t): x_{n+1} = x_n + h f(x_n, t_n) (first order)."""
    _check_field(f, "f")
    x = _check_x0(x0)
    n_steps = check_int("n_steps", n_steps, min=1)
    ts = time_grid(t0, t1, n_steps, x)
    traj = [x] if return_trajectory else None
    with torch.no_grad():
        for i in range(n_steps):
            h = ts[i + 1] - ts[i]
            x = x + h * _call(f, x, ts[i])
            if traj is not None:
                traj.append(x)
    return Solution(x, ts, torch.stack(traj) if traj is not None else None, n_steps)


@sampler
def heun(f: Field, x0: Tensor, t0: float, t1: float, n_steps: int, return_trajectory: bool = False) -> Solution:
    """Heun (explicit trapezoid, second order): x̃ = x + h f(x, t); x ← x + h/2 [f(x, t) + f(x̃, t + h)]."""
    _check_field(f, "f")
    x = _check_x0(x0)
    n_steps = check_int("n_steps", n_steps, min=1)
    ts = time_grid(t0, t1, n_steps, x)
    traj = [x] if return_trajectory else None
    with torch.no_grad():
        for i in range(n_steps):
            h = ts[i + 1] - ts[i]
            k1 = _call(f, x, ts[i])
            k2 = _call(f, x + h * k1, ts[i + 1])
            x = x + 0.5 * h * (k1 + k2)
            if traj is not None:
                traj.append(x)
    return Solution(x, ts, torch.stack(traj) if traj is not None else None, 2 * n_steps)


def _is_sde(obj: Any) -> bool:
    return callable(getattr(obj, "drift", None)) and callable(getattr(obj, "diffusion", None))


@sampler
def euler_maruyama(drift: Field | Any, diffusion: Field | float | Tensor | None = None, x0: Tensor | None = None,
                   t0: float | None = None, t1: float | None = None, n_steps: int | None = None,
                   generator: torch.Generator | None = None, return_trajectory: bool = False) -> Solution:
    """Euler–Maruyama for dX = f(X, t) dt + g(X, t) dW:

        X_{n+1} = X_n + h f(X_n, t_n) + g(X_n, t_n) √|h| ξ_n,   ξ_n ~ N(0, I),  h = (t1 − t0)/n_steps.

    ``drift`` and ``diffusion`` are callables (x, t) (``diffusion`` may return a scalar or a tensor
    broadcastable to x, or be a plain number). Instead of the pair, pass an SDE object with
    ``.drift``/``.diffusion`` methods: ``euler_maruyama(sde, x0, t0, t1, n_steps)`` or
    ``euler_maruyama(sde, None, x0, t0, t1, n_steps)``. With g = 0 this is exactly :func:`euler`.
    For t1 < t0 the drift is integrated backwards and the noise still has scale √|h|.
    """
    if _is_sde(drift):
        sde = drift
        if isinstance(diffusion, Tensor):  # euler_maruyama(sde, x0, ...): shift the positional arguments
            if x0 is None:
                x0 = diffusion
            elif n_steps is None:
                x0, t0, t1, n_steps = diffusion, x0, t0, t1
            else:
                raise ValueError("euler_maruyama(sde, x0, t0, t1, n_steps): got too many positional arguments")
        elif diffusion is not None:
            raise ValueError("when the first argument is an SDE object, leave out diffusion (or pass None)")
        drift, diffusion = sde.drift, sde.diffusion
    if t0 is None or t1 is None or n_steps is None:
        raise ValueError(f"euler_maruyama needs x0, t0, t1 and n_steps, got t0={t0!r}, t1={t1!r}, n_steps={n_steps!r}")
    _check_field(drift, "drift")
    if diffusion is None:
        raise ValueError("diffusion must be a callable g(x, t) or a number (use euler() for an ODE)")
    if isinstance(diffusion, (numbers.Real, Tensor)):
        const = check_finite("diffusion", diffusion) if isinstance(diffusion, Tensor) else check_float("diffusion", diffusion)
        diffusion_fn: Callable[[Tensor, Tensor], Any] = lambda x, t: const  # noqa: E731
    else:
        _check_field(diffusion, "diffusion")
        diffusion_fn = diffusion
    x = _check_x0(x0)
    n_steps = check_int("n_steps", n_steps, min=1)
    ts = time_grid(t0, t1, n_steps, x)
    traj = [x] if return_trajectory else None
    with torch.no_grad():
        for i in range(n_steps):
            h = ts[i + 1] - ts[i]
            t = ts[i].expand(x.shape[0])
            g = diffusion_fn(x, t)
            if isinstance(g, Tensor) and g.ndim == 1 and x.ndim > 1 and g.shape[0] == x.shape[0]:
                g = g.reshape(-1, *([1] * (x.ndim - 1)))  # per-sample g(t) of shape (B,)
            noise = randn(x.shape, generator, x.device, x.dtype)
            x = x + h * _call(drift, x, ts[i]) + g * torch.sqrt(h.abs()) * noise
            if traj is not None:
                traj.append(x)
    return Solution(x, ts, torch.stack(traj) if traj is not None else None, n_steps)


def simulate_sde(sde: Any, x0: Tensor, t0: float, t1: float, n_steps: int,
                 generator: torch.Generator | None = None, return_trajectory: bool = False) -> Solution:
    """Euler–Maruyama on an object with ``drift(x, t)`` and ``diffusion(x, t)`` methods."""
    if not _is_sde(sde):
        raise ValueError(f"sde must have drift(x, t) and diffusion(x, t) methods, got {sde!r}")
    return euler_maruyama(sde.drift, sde.diffusion, x0, t0, t1, n_steps,
                          generator=generator, return_trajectory=return_trajectory)


@sampler
def sample_from_noise(f: Field | Any, n: int, shape: tuple[int, ...], n_steps: int, *, method: str = "euler",
                      t0: float = 0.0, t1: float = 1.0, device: torch.device | str = "cpu", seed: int = 0,
                      chunk: int = 500, return_trajectory: bool = False) -> Solution:
    """Integrate ``n`` starting points X_{t0} ~ N(0, I) of ``shape`` with ``method``, ``chunk`` at a time.

    The starting noise comes from a CPU generator seeded with ``seed``, so the same seed gives the
    same starting points on every device; the Euler–Maruyama noise from a generator on ``device``
    seeded with ``seed + 1``. ``f`` is a field ``(x, t) → v`` for ``"euler"``/``"heun"`` and an SDE
    object (``drift``/``diffusion``) for ``"euler_maruyama"``. The result (and the trajectory,
    ``(n_steps + 1, n, *shape)``) is returned on the CPU; ``nfe`` counts evaluations per sample.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid choices: {', '.join(METHODS)}")
    if method == "euler_maruyama" and not _is_sde(f):
        raise ValueError(f"method 'euler_maruyama' needs an SDE object with drift(x, t) and diffusion(x, t), got {f!r}")
    if method != "euler_maruyama":
        _check_field(f, "f")
    n = check_int("n", n, min=1)
    chunk = check_int("chunk", chunk, min=1)
    seed = check_int("seed", seed)
    n_steps = check_int("n_steps", n_steps, min=1)
    if isinstance(shape, (int, str)) or not hasattr(shape, "__iter__"):
        raise ValueError(f"shape must be a tuple of positive integers (one sample's shape), got {shape!r}")
    shape = tuple(check_int("shape entry", d, min=1) for d in shape)
    device = torch.device(device)
    x0 = torch.randn(int(n), *shape, generator=torch.Generator().manual_seed(seed))
    noise = torch.Generator(device).manual_seed(seed + 1) if method == "euler_maruyama" else None
    outs, trajs, sol = [], [], None
    for c in x0.split(int(chunk)):
        c = c.to(device)
        if method == "euler_maruyama":
            sol = euler_maruyama(f, None, c, t0, t1, n_steps, generator=noise, return_trajectory=return_trajectory)
        else:
            sol = (euler if method == "euler" else heun)(f, c, t0, t1, n_steps, return_trajectory=return_trajectory)
        outs.append(sol.x.cpu())
        if return_trajectory:
            trajs.append(sol.trajectory.cpu())
    return Solution(torch.cat(outs), sol.ts.cpu(), torch.cat(trajs, dim=1) if return_trajectory else None, sol.nfe)
