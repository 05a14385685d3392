"""Where a run reads and writes, and the environment variables that move it: the repository root, the data,
outputs (``build/``, ``checkpoints/``, ``figures/``), the profile in force, and a dry run's own output root.

Paths are resolved from this package's location, never from the working directory, so a notebook gives the
same result whether it is opened from ``notebooks/`` or run by papermill from the repository root. A dry run
(``$NBHELPERS_MAX_STEPS``, see :mod:`nbhelpers.dryrun`) writes under its own root: :func:`redirect` maps every
output folder there, so its capped models, metrics and figures never replace a real run's.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")
"""smoke: seconds, every code path (CI). cpu: a laptop, minutes. gpu: the assignments' full settings."""

PROFILE_ENV = "NBHELPERS_PROFILE"
DEVICE_ENV = "NBHELPERS_DEVICE"
DATA_ENV = "NBHELPERS_DATA_DIR"
HOME_ENV = "NBHELPERS_HOME"
CHECKPOINT_ENV = "NBHELPERS_CHECKPOINT_DIR"
OUTPUT_ENV = "NBHELPERS_OUTPUT_DIR"
EVAL_CHUNK_ENV = "NBHELPERS_EVAL_CHUNK"

_CHECKOUT = Path(__file__).resolve().parent.parent
ROOT = (_CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file()
        else Path(os.environ.get(HOME_ENV, "").strip() or os.getcwd()).expanduser().resolve())
"""Repository root (the folder holding ``nbhelpers/``). A package installed from a wheel or a URL (as a
notebook's first cell does on Colab) has no checkout around it: then ``$NBHELPERS_HOME``, else the working
folder at import, holds ``data/``, ``figures/`` and ``build/`` rather than site-packages."""

MAX_STEPS_ENV = "NBHELPERS_MAX_STEPS"
"""A dry run's cap on training steps and network evaluations (:mod:`nbhelpers.dryrun`)."""


# --------------------------------------------------------------------------- profiles
def resolve_profile(profile: str = "auto", device: torch.device | None = None) -> str:
    """The profile in force: env ``NBHELPERS_PROFILE`` if set, else ``profile``.

    ``"auto"`` means ``gpu`` when the run's device is CUDA, else ``cpu``.
    """
    env = os.environ.get(PROFILE_ENV, "").strip()
    chosen = env or profile
    if not isinstance(chosen, str):
        raise ValueError(f"profile must be one of auto, {', '.join(PROFILES)}; got {chosen!r}")
    key = chosen.strip().lower()
    if key == "auto":
        if device is None:  # the device "auto" picks: CUDA where present
            return "gpu" if torch.cuda.is_available() else "cpu"
        return "gpu" if device.type == "cuda" else "cpu"
    if key not in PROFILES:
        source = f" (from ${PROFILE_ENV})" if env else ""
        raise ValueError(f"unknown profile {chosen!r}{source}; valid choices: auto, {', '.join(PROFILES)}")
    return key


# --------------------------------------------------------------------------- paths
def _env_path(var: str) -> Path | None:
    """The folder an ``NBHELPERS_*`` variable names (None when unset). It must be absolute: a notebook's
    kernel runs in ``notebooks/``, the runner and the tests elsewhere, so a relative one would name different
    folders in different processes."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise ValueError(f"${var} must be an absolute path (the kernel, the runner and the tests run in different "
                         f"folders), got {raw!r}")
    return path.resolve()


def data_dir() -> Path:
    """Data root: ``$NBHELPERS_DATA_DIR`` if set, else ``<repo>/data``."""
    return _env_path(DATA_ENV) or ROOT / "data"


def output_root() -> Path:
    """Where a run writes: ``$NBHELPERS_OUTPUT_DIR`` if set, else the repository root. ``build/``,
    ``checkpoints/`` and ``figures/`` live under it; the test suite points it at a temporary folder so
    that ``make test`` leaves a user's own runs untouched."""
    return _env_path(OUTPUT_ENV) or ROOT


def build_dir() -> Path:
    return output_root() / "build"


def checkpoints_dir(profile: str | None = None) -> Path:
    """Trained-model cache: ``<repo>/checkpoints``, or ``$NBHELPERS_CHECKPOINT_DIR`` where set (a benchmark
    points it at an empty folder to time a first run). Smoke runs and dry runs (``$NBHELPERS_MAX_STEPS``)
    keep theirs apart so they never shadow real models."""
    base = _env_path(CHECKPOINT_ENV)
    if base is not None:
        return redirect(base / "smoke" if profile == "smoke" else base)
    return redirect(build_dir() / "smoke" / "checkpoints" if profile == "smoke" else output_root() / "checkpoints")


def figures_dir(profile: str | None = None) -> Path:
    """``figures/`` for real runs; smoke runs write under ``build/smoke/figures``, and a dry run
    (``$NBHELPERS_MAX_STEPS``) under its own root, so its meaningless figures never replace a real run's."""
    return redirect(build_dir() / "smoke" / "figures" if profile == "smoke" else output_root() / "figures")


def metrics_dir() -> Path:
    """``build/metrics``; a dry run (``$NBHELPERS_MAX_STEPS``) writes its capped numbers under its own root,
    so it never overwrites the metrics of a real run of the same notebook."""
    return redirect(build_dir() / "metrics")


# --------------------------------------------------------------------------- a dry run's outputs
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


def dry_run_root(n: int | None = None) -> Path:
    """``build/dryrun/max-steps-N``: where a dry run with cap N keeps its trained models."""
    n = max_steps() if n is None else n
    if n is None:
        raise ValueError(f"no dry run in force: set ${MAX_STEPS_ENV} to a positive integer")
    return build_dir() / "dryrun" / f"max-steps-{n}"


def redirect(path: str | Path) -> Path:
    """In a dry run, the place of ``path`` inside :func:`dry_run_root` (a path already there is kept); else ``path``.

    A path inside the repository keeps its relative layout (``checkpoints/x.pt`` →
    ``build/dryrun/max-steps-N/checkpoints/x.pt``); one outside it goes to ``external/<hash of its folder>/``.
    """
    path = Path(path)
    if max_steps() is None:
        return path
    base = dry_run_root()
    absolute = Path(os.path.abspath(path.expanduser()))
    if absolute == base or base in absolute.parents:
        return absolute
    for top in (output_root(), ROOT):
        try:
            rel = absolute.relative_to(top)
            break
        except ValueError:
            continue
    else:
        rel = Path("external") / hashlib.sha1(str(absolute.parent).encode()).hexdigest()[:12] / absolute.name
    return base / rel
