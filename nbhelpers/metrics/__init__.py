"""Metrics: ``toy`` (2D sample-set distances, mode weights, GMM log-likelihood),
``images`` (the offline MNIST evaluator and Fréchet distances), ``fid`` (clean-fid, lazy),
``nearest`` (are samples copies of training images? nearest-neighbour distances), ``stats`` (standard
errors of measured fractions: ``binomial_se``, ``max_binomial_se``).

The public names of ``toy``, ``images`` and ``stats`` are re-exported here: ``nb.metrics.energy_distance``.
"""
from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("toy", "images", "fid", "nearest", "stats")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    for sub in ("toy", "images", "stats"):
        try:
            module = importlib.import_module(f".{sub}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{sub}":
                continue
            raise
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise AttributeError(f"module 'nbhelpers.metrics' has no attribute {name!r}")
