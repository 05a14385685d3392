"""Dry run: a profile's full model and batch sizes for a couple of steps, on any machine.

Set the environment variable ``NBHELPERS_MAX_STEPS=N`` (a positive integer) and every notebook
runs its code at the sizes of its profile (``NBHELPERS_PROFILE=gpu``: the assignments' full
settings) but only N steps of everything that costs network evaluations:

* training (:func:`nbhelpers.training.train`, so also the MNIST evaluator and the AFHQ trainer)
  stops after N optimisation steps;
* a sampler call (DDPM ancestral and DDIM, the ODE/SDE solvers) evaluates a network at most N
  times; later steps get a zero network output (:class:`NetworkBudget`), so loops, step
  counts, trajectories and shapes are those of the full run, but the results are not samples;
* trained models are cached under ``build/dryrun/max-steps-N/`` with N in their key, so a capped
  model is never read or written in place of the full one.

Numbers a dry run reports (losses, accuracies, distances) mean nothing; it proves that the code
runs at full size and measures what one step costs. ``nb.setup`` prints a banner when the cap is
set. Unset (the default), nothing here changes anything.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

MAX_STEPS_ENV = "NBHELPERS_MAX_STEPS"

__all__ = ["MAX_STEPS_ENV", "max_steps", "is_dry_run", "cap", "root", "redirect", "banner", "holds_network",
           "NetworkBudget", "budget"]


def max_steps() -> int | None:
    """The cap from ``$NBHELPERS_MAX_STEPS``, or ``None`` when it is unset or empty (a full run)."""
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"${MAX_STEPS_ENV} must be a positive integer (or unset for a full run), got {raw!r}")
    return n


def is_dry_run() -> bool:
    return max_steps() is not None


def cap(n: int) -> int:
    """``min(n, cap)`` in a dry run, else ``n``."""
    m = max_steps()
    return n if m is None else min(int(n), m)


def root(n: int | None = None) -> Path:
    """``build/dryrun/max-steps-N``: where a dry run with cap N keeps its trained models."""
    from .runtime import build_dir

    n = max_steps() if n is None else n
    if n is None:
        raise ValueError(f"no dry run in force: set ${MAX_STEPS_ENV} to a positive integer")
    return build_dir() / "dryrun" / f"max-steps-{n}"


def redirect(path: str | Path) -> Path:
    """In a dry run, the place of ``path`` inside :func:`root` (a path already there is kept); else ``path``.

    A path inside the repository keeps its relative layout (``checkpoints/x.pt`` →
    ``build/dryrun/max-steps-N/checkpoints/x.pt``); one outside it goes to ``external/<hash of its folder>/``.
    """
    path = Path(path)
    if max_steps() is None:
        return path
    from .runtime import ROOT

    base = root()
    absolute = Path(os.path.abspath(path.expanduser()))
    if absolute == base or base in absolute.parents:
        return absolute
    try:
        rel = absolute.relative_to(ROOT)
    except ValueError:
        rel = Path("external") / hashlib.sha1(str(absolute.parent).encode()).hexdigest()[:12] / absolute.name
    return base / rel


def banner() -> str:
    """The line a notebook prints in a dry run ('' otherwise)."""
    n = max_steps()
    if n is None:
        return ""
    return (f"DRY RUN (${MAX_STEPS_ENV}={n}): every training stops after {n} steps and every sampler call evaluates its "
            f"network at most {n} times (then zeros); models are cached under {root(n)}; the numbers below mean nothing.")


def holds_network(f: Any, depth: int = 3) -> bool:
    """Whether ``f`` is, or holds, an ``nn.Module`` with parameters: itself, the object of a bound
    method, a closure variable, an attribute or a ``functools.partial`` argument, ``depth`` levels deep.

    Samplers are given networks wrapped in lambdas and SDE objects; analytic fields (an OU drift,
    a Gaussian mixture's exact score) hold none and are never cut short.
    """
    seen: set[int] = set()

    def visit(obj: Any, level: int) -> bool:
        if obj is None or id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, torch.Tensor)):
            return False
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            return any(True for _ in obj.parameters())
        if level <= 0:
            return False
        children: list[Any] = []
        if hasattr(obj, "__self__"):
            children.append(obj.__self__)
        if getattr(obj, "__closure__", None):
            for cell in obj.__closure__:
                try:
                    children.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
        for name in ("func", "args", "keywords"):  # functools.partial
            if hasattr(obj, name) and not callable(getattr(type(obj), name, None)):
                v = getattr(obj, name)
                children.extend(v if isinstance(v, tuple) else (v.values() if isinstance(v, dict) else [v]))
        if isinstance(obj, (list, tuple)):
            children.extend(obj)
        elif isinstance(obj, dict):
            children.extend(obj.values())
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            children.extend(vars(obj).values())
        return any(visit(c, level - 1) for c in children)

    return visit(f, depth)


class NetworkBudget:
    """``f`` for its first ``n`` calls, then ``zeros_like(x)``: a sampler's network evaluations, capped.

    Every network in this package (ε, velocity, score predictors) returns a tensor shaped like its
    input ``x``, so a sampler keeps running with the same shapes after the budget is spent.
    """

    def __init__(self, f: Callable[..., torch.Tensor], n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"budget must be a non-negative integer, got {n!r}")
        self.f = f
        self.left = n
        self.calls = 0

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.left <= 0:
            return torch.zeros_like(x)
        self.left -= 1
        self.calls += 1
        return self.f(x, *args, **kwargs)


def budget(f: Any) -> Any:
    """``f`` wrapped in a :class:`NetworkBudget` of :func:`max_steps` calls in a dry run when it holds a
    network (:func:`holds_network`); otherwise ``f`` itself."""
    n = max_steps()
    if n is None or isinstance(f, NetworkBudget) or not holds_network(f):
        return f
    return NetworkBudget(f, n)
