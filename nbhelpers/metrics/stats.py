"""Standard errors of measured fractions: the one place the binomial s.e. is written down.

A fraction p̂ = k/n of n independent trials, each a success with probability p, has

    Var p̂ = p(1 − p)/n,   so   s.e.(p̂) = √(p̂(1 − p̂)/n)          (the plug-in estimate)

and p(1 − p) ≤ 1/4, so no fraction of n trials has an s.e. above 1/(2√n) (:func:`max_binomial_se`), the
bound a claim uses before it knows p. The recipes and the evaluator call these instead of writing the
formula again.
"""
from __future__ import annotations

import math
import numpy as np

from .._checks import check_int

__all__ = ["binomial_se", "max_binomial_se"]


def binomial_se(p: float | np.ndarray, n: int) -> float | np.ndarray:
    """Standard error of a fraction p measured on n independent trials, √(p(1 − p)/n).

    ``p`` a number (returns a float) or an array of fractions, each with its own s.e. (returns an array of
    the same shape, e.g. the share of every class of a histogram). p = 0 or 1 gives 0. ``n`` an integer ≥ 1.
    """
    n = check_int("n", n, min=1)
    if np.ndim(p) == 0:
        q = float(p)
        if not 0.0 <= q <= 1.0:  # also refuses NaN
            raise ValueError(f"p must be a fraction in [0, 1], got {p!r}")
        return math.sqrt(q * (1.0 - q) / n)
    h = np.asarray(p, dtype=np.float64)
    if not np.all((h >= 0.0) & (h <= 1.0)):
        raise ValueError(f"p must hold fractions in [0, 1], got values in {float(np.nanmin(h))!r}..{float(np.nanmax(h))!r}"
                         + (" and NaN" if np.isnan(h).any() else ""))
    return np.sqrt(h * (1.0 - h) / n)


def max_binomial_se(n: int) -> float:
    """The largest standard error a fraction of n trials can have, at p = 1/2: 1/(2√n) ≥ √(p(1 − p)/n) for every p."""
    n = check_int("n", n, min=1)
    return 0.5 / math.sqrt(n)
