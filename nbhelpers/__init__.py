"""nbhelpers: the tested package behind the diffusion-notebooks series.

``import nbhelpers as nb``; submodules load on first use (``nb.sde``, ``nb.schedules``, ...).
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

# Before torch loads (it reads this once): on a Mac an operator that MPS lacks then runs on the CPU instead of
# stopping the run, here and in the notebook kernels started from here. An explicit value is kept.
if sys.platform == "darwin":
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from .runtime import NotebookRun, get_device, resolve_profile, seed_everything, setup  # noqa: E402

__version__ = "0.1.0"

_SUBMODULES = {
    "runtime", "devices", "layout", "files", "progress", "checkpoints", "training", "runner", "sde", "schedules", "paths",
    "distributions", "models", "losses", "solvers", "ddpm", "ddpm_oracle", "ddpm_sampling", "guidance", "metrics", "plotting", "widgets", "data",
    "afhq", "answers", "cli", "dryrun", "recipes", "exercises", "standin",
}

__all__ = ["NotebookRun", "get_device", "resolve_profile", "seed_everything", "setup", *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'nbhelpers' has no attribute {name!r}")
