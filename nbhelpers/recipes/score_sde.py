"""Notebook 05 (score-based models): the VP-SDE's reverse sampler built from one step, and the 2D studies.

* :func:`reverse_sample` — the reverse-time VP-SDE integrated from t = 1 down to ``t_min`` by a one-step
  function ``step(sde, score_fn, x, t, dt, generator)`` (the notebook's exercise, or the library's step);
  with the library's step it is exactly ``nb.solvers.euler_maruyama(sde.reverse(score_fn), …)``.

Time: the VP-SDE keeps Song's direction (**t = 0 data, t = 1 noise**, :class:`nbhelpers.sde.VPSDE`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..dryrun import budget
from ..solvers import Solution, time_grid

__all__ = ["reverse_sample"]

Step = Callable[..., Tensor]


def reverse_sample(step: Step, sde: Any, score_fn: Callable[[Tensor, Tensor], Tensor], x1: Tensor, t_min: float,
                   n_steps: int, generator: torch.Generator | None = None,
                   return_trajectory: bool = False) -> Solution:
    """Integrate the reverse VP-SDE dX = [f − g² s] dt + g dW̄ from t = 1 down to ``t_min`` in ``n_steps`` steps.

    Each step is ``step(sde, score_fn, x, t, dt, generator)`` with ``t`` the step's start, shape ``(B,)``, and
    ``dt = t_i − t_{i+1} > 0`` a 0-d tensor in x's dtype; the grid is :func:`nbhelpers.solvers.time_grid` (1, t_min, n_steps) in x's
    dtype, as in :func:`nbhelpers.solvers.euler_maruyama`, so the library's step reproduces that solver exactly.
    In a dry run (``$NBHELPERS_MAX_STEPS``) a network behind ``score_fn`` is capped like the solvers' fields.
    Shapes: x1 (B, ...); returns a :class:`~nbhelpers.solvers.Solution` (trajectory (n_steps + 1, B, ...) when asked).
    """
    if not callable(step) or not callable(score_fn):
        raise ValueError(f"step and score_fn must be callables, got {step!r} and {score_fn!r}")
    if not isinstance(x1, Tensor) or x1.ndim < 1 or not x1.is_floating_point():
        raise ValueError(f"x1 must be a floating-point tensor (B, ...), got {type(x1).__name__}")
    if not 0.0 <= float(t_min) < 1.0:
        raise ValueError(f"t_min must lie in [0, 1), got {t_min!r}")
    ts = time_grid(1.0, t_min, n_steps, x1)
    score = budget(score_fn)
    x, traj = x1, [x1] if return_trajectory else None
    with torch.no_grad():
        for i in range(len(ts) - 1):
            x = step(sde, score, x, ts[i].expand(x.shape[0]), ts[i] - ts[i + 1], generator)
            if traj is not None:
                traj.append(x)
    return Solution(x, ts, torch.stack(traj) if traj is not None else None, len(ts) - 1)
