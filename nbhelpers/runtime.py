"""A notebook's run: its device, profile and seed, its sizes, figures and recorded metrics.

Every notebook starts with ``run = nb.setup("01_sdes", device=device, profile=profile, seed=seed)``
and then asks ``run`` for its device, its profile-dependent sizes (``run.pick``), where to
save figures (``run.savefig``) and where to record headline numbers (``run.report``).

Each run's metrics record the thread count and machine (:func:`machine_info`) and the commit of the code
(:func:`source_commit`), so two runs can be compared honestly: the same seed gives the same numbers only on
the same machine, library versions and thread count (see :mod:`nbhelpers.devices`).

The run stands on the modules below it, whose names this module also offers (``nb.runtime.get_device``,
``nb.runtime.checkpoints_dir``, ...): :mod:`nbhelpers.devices` (devices, precision, seeds, draws, float64
work), :mod:`nbhelpers.layout` (paths, profiles, environment variables), :mod:`nbhelpers.files` (atomic
writes, locks), :mod:`nbhelpers.progress` (progress bars) and ``check_param`` (:mod:`nbhelpers._checks`).
"""
from __future__ import annotations

import builtins
import json
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch

from . import answers
from ._checks import OutputError, check_name, check_param
from .devices import (AMP_CHOICES, FLOAT64_DEVICE_TYPES, STRICT_DEVICE_ENV, StrictDevice, StrictDeviceError, amp_dtype,
                      autocast, available_devices, exact, exact_device, from_exact, get_device, randn, seed_everything,
                      strict_device, to_exact, to_like)
from .dryrun import banner, max_steps
from .files import FolderLock, atomic_write_bytes, pid_alive, remove_stale_temps, save_figure, temp_path
from .layout import (CHECKPOINT_ENV, DATA_ENV, DEVICE_ENV, HOME_ENV, OUTPUT_ENV, PROFILE_ENV, PROFILES, ROOT, build_dir,
                     checkpoints_dir, data_dir, figures_dir, metrics_dir, output_root, resolve_profile)
from .progress import HEADLESS_ENV, in_interactive_frontend, progress_bar

__all__ = [
    # the notebook run
    "NotebookRun", "setup", "active_run", "standin_allowed", "note_data", "steps_for_epochs", "train_steps", "PARAM_HEADROOM",
    "machine_info", "source_commit",
    # re-exported from the modules below
    "OutputError", "check_param",
    "AMP_CHOICES", "FLOAT64_DEVICE_TYPES", "STRICT_DEVICE_ENV", "StrictDevice", "StrictDeviceError", "amp_dtype",
    "autocast", "available_devices", "exact", "exact_device", "from_exact", "get_device", "randn", "seed_everything",
    "strict_device", "to_exact", "to_like",
    "FolderLock", "atomic_write_bytes", "pid_alive", "remove_stale_temps", "save_figure", "temp_path",
    "CHECKPOINT_ENV", "DATA_ENV", "DEVICE_ENV", "HOME_ENV", "OUTPUT_ENV", "PROFILE_ENV", "PROFILES", "ROOT",
    "build_dir", "checkpoints_dir", "data_dir", "figures_dir", "metrics_dir", "output_root", "resolve_profile",
    "HEADLESS_ENV", "in_interactive_frontend", "progress_bar",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- what a run records
def machine_info() -> dict[str, Any]:
    """What makes two runs comparable: the same seed gives the same numbers only on the same
    machine, library versions and thread count (float reductions are split across threads)."""
    import platform

    return {
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "processor": _cpu_name(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def source_commit() -> str:
    """The checkout's commit (``git rev-parse --short HEAD``), with ``+uncommitted`` when ``nbhelpers/`` or
    ``notebooks/`` differ from it; ``unknown`` outside a checkout. A run records it when it starts, so what
    it produced names the code that produced it."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "nbhelpers", "notebooks"], cwd=ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+uncommitted" if dirty else "") if head else "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return _jsonable(value.item() if value.numel() == 1 else value.tolist())
    if isinstance(value, np.ndarray):
        return _jsonable(value.item() if value.size == 1 else value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- sizes
PARAM_HEADROOM = 100
"""A size parameter may be at most this many times its largest profile default (:meth:`NotebookRun.param`)."""


def steps_for_epochs(epochs: float, n_examples: int, batch_size: int) -> int:
    """Training steps for ``epochs`` passes over ``n_examples`` at ``batch_size``: ⌈epochs · n / batch⌉
    (at least 1), e.g. 3 epochs of 60,000 images at batch 128 → 1,407 steps."""
    epochs = check_param("epochs", epochs, kind=float, min=0, min_exclusive=True)
    n_examples = check_param("n_examples", n_examples, kind=int, min=1)
    batch_size = check_param("batch_size", batch_size, kind=int, min=1)
    # round first so that 3 × 60000 / 128 = 1406.25 is not pushed up by float noise in e.g. 0.1 × 30
    return max(1, math.ceil(round(epochs * n_examples / batch_size, 9)))


def train_steps(profile: str, steps: int | None, epochs: float | None, *, default: int,
                n_examples: int | Callable[[], int], batch_size: int, name: str = "steps",
                log: Callable[[str], None] | None = print) -> int:
    """Training steps from a notebook's parameters ``steps`` or ``epochs`` (at most one of them given).

    ``steps`` is used as given; ``epochs`` becomes :func:`steps_for_epochs` of ``n_examples``
    (an int, or a function counting them, called only when needed) at ``batch_size``, and the
    conversion is printed; neither → ``default`` (``profile``'s). ``name`` is the steps parameter's name.
    """
    if steps is not None and epochs is not None:
        raise ValueError(f"parameters {name} and epochs were both given ({name}={steps!r}, epochs={epochs!r}); "
                         f"give one of them and leave the other None")
    if epochs is not None:
        check_param("epochs", epochs, kind=float, min=0, min_exclusive=True, none="the profile default")
        n = n_examples() if callable(n_examples) else n_examples
        result = steps_for_epochs(epochs, n, batch_size)
        if log is not None:
            log(f"epochs={epochs} → {result:,} steps at batch {batch_size} ({n:,} training examples)")
        return result
    if steps is None:
        return default
    return check_param(name, steps, kind=int, min=1, none=f"the profile default ({default} in {profile})")


# --------------------------------------------------------------------------- notebook run
@dataclass
class NotebookRun:
    """What a notebook needs after its parameters cell: device, profile, seed, outputs."""

    name: str
    device: torch.device
    profile: str
    seed: int
    generator: torch.Generator
    metrics: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    machine: dict[str, Any] = field(default_factory=machine_info)
    commit: str = field(default_factory=source_commit)
    notes: set[str] = field(default_factory=set, repr=False)
    claim_texts: dict[str, str] = field(default_factory=dict, repr=False)  # claims/<key> → the claim's text

    # -- sizes ------------------------------------------------------------------
    def pick(self, smoke: T, cpu: T, gpu: T) -> T:
        """The value for the profile in force."""
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[self.profile]

    def param(self, name: str, value: Any, *, smoke: T, cpu: T, gpu: T, kind: type = int,
              min: float | None = 1, max: float | None = None) -> T:
        """A notebook parameter that may be left ``None``: ``None`` → the profile's value
        (:meth:`pick`); anything else is checked by :func:`check_param` (``kind``, ``min``, ``max``)."""
        if value is None:
            return self.pick(smoke=smoke, cpu=cpu, gpu=gpu)
        defaults = [v for v in (smoke, cpu, gpu) if isinstance(v, numbers.Real) and not isinstance(v, bool)]
        if max is None and kind in (int, float) and defaults:
            # a size far beyond every profile's is a typo or an allocation no machine survives: stated, not tried
            max = PARAM_HEADROOM * builtins.max(abs(v) for v in defaults) or None
        return check_param(name, value, kind=kind, min=min, max=max,
                           none=f"the profile default ({self.pick(smoke=smoke, cpu=cpu, gpu=gpu)} in {self.profile})")

    def train_steps(self, steps: int | None, epochs: float | None, *, default: int,
                    n_examples: int | Callable[[], int], batch_size: int, name: str = "steps",
                    log: Callable[[str], None] | None = print) -> int:
        """:func:`train_steps` in this run's profile."""
        return train_steps(self.profile, steps, epochs, default=default, n_examples=n_examples, batch_size=batch_size,
                           name=name, log=log)

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"

    # -- outputs ----------------------------------------------------------------
    @property
    def figures_dir(self) -> Path:
        return figures_dir(self.profile) / self.name

    @property
    def checkpoints_dir(self) -> Path:
        return checkpoints_dir(self.profile)

    @property
    def metrics_path(self) -> Path:
        return metrics_dir() / f"{self.name}.json"

    @property
    def samples_dir(self) -> Path:
        """Samples behind reported metrics, saved so anyone can re-score them."""
        return metrics_dir() / self.name

    def savefig(self, fig: Any, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``<figures>/<notebook>/<name>.png`` and return the path."""
        check_name("figure name", name)
        return save_figure(fig, self.figures_dir / f"{name}.png", dpi=dpi)

    def report(self, key: str, value: Any) -> Any:
        """Record a headline number in ``build/metrics/<notebook>.json`` (rewritten atomically)."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric name must be a non-empty string, got {key!r}")
        value = _jsonable(value)
        try:  # checked before it is stored: a value JSON cannot hold never reaches the metrics
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metric {key!r} must be a number, string, bool, None or a list/dict of them; got "
                             f"{type(value).__name__} ({exc})") from None
        self.metrics[key] = value
        payload = {
            "notebook": self.name,
            "profile": self.profile,
            "device": str(self.device),
            "seed": self.seed,
            "elapsed_s": round(time.time() - self.started, 3),
            "machine": self.machine,
            "commit": self.commit,
            "complete": False,  # a run in progress, or one killed half-way; the runner marks a finished run
            "metrics": self.metrics,
        }
        atomic_write_bytes(self.metrics_path, json.dumps(payload, indent=2, sort_keys=True).encode())
        return value

    def report_all(self, result: Any, prefix: str = "") -> dict[str, Any]:
        """:meth:`report` every ``name → value`` of a study's result (anything with a ``metrics`` mapping, e.g. a
        recipe's frozen dataclass) or of a plain dict, each name preceded by ``prefix``; returns them as recorded."""
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, got {type(prefix).__name__}")
        metrics = result if isinstance(result, dict) else getattr(result, "metrics", None)
        if not isinstance(metrics, dict):
            raise ValueError(f"report_all needs a dict of name → value or a result with a .metrics dict, got "
                             f"{type(result).__name__}")
        return {prefix + key: self.report(prefix + key, value) for key, value in metrics.items()}

    def record(self, study: Any, figure: str | None = None) -> dict[str, Any]:
        """Record a study (anything with ``metrics``, ``summary`` (text, or a method giving it) and ``figure``, e.g. a
        recipe's ``Study``): :meth:`report_all` its metrics, print its summary when it has one, and save its
        figure as ``<figure>.png`` when ``figure`` names it. Returns the metrics as recorded."""
        if figure is not None and getattr(study, "figure", None) is None:
            raise ValueError(f"figure={figure!r} was given but the study has no figure")
        recorded = self.report_all(study.metrics)
        summary = getattr(study, "summary", "")
        summary = summary() if callable(summary) else summary  # a frozen result's .summary() or a Study's text
        if summary:
            print(summary)
        if figure is not None:
            self.savefig(study.figure, figure)
        return recorded

    def save_samples(self, name: str, **arrays: Any) -> Path:
        """Write arrays (tensors or numpy) to ``build/metrics/<notebook>/<name>.npz``."""
        check_name("samples name", name)
        path = self.samples_dir / f"{name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in arrays.items()}
        np.savez_compressed(path, **data)
        return path

    def answer(self, template: str, claims: Any = (), **values: Any) -> None:
        """Show a written answer whose numbers come from this run (:mod:`nbhelpers.answers`).

        ``template`` cites recorded metrics as ``{name:format}`` (``values`` adds more); a name it cites that is
        neither passed nor recorded is an error naming it, and so is a passed value that differs from the metric
        recorded under the same name (it would silently shadow it). Each claim is recorded as
        ``claims/<text>`` (:func:`nbhelpers.answers.claim_key`; two different claims whose keys coincide are an
        error) and, when this run does not support it, shown as a visible warning under the answer.
        """
        claims = list(claims)
        for c in claims:
            if not isinstance(c, answers.Claim):
                raise ValueError(f"claims must be made with nb.answers.claim(text, holds, evidence); got {c!r}")
        for k, v in values.items():  # a value passed here must not contradict the one recorded under that name
            if k in self.metrics and _jsonable(v) != self.metrics[k]:
                raise ValueError(f"the answer passes {k}={v!r}, but this run recorded {k} = {self.metrics[k]!r}; "
                                 f"cite the recorded value or give this one another name")
        keys = {}
        for c in claims:  # checked before anything is recorded: a clash leaves the metrics as they were
            key = answers.claim_key(c.text)
            other = keys.get(key, self.claim_texts.get(key, c.text))
            if other != c.text:
                raise ValueError(f"the claims “{c.text}” and “{other}” would both be recorded as {key}; "
                                 f"word one of them differently")
            keys[key] = c.text
        text = answers.render(template, {**self.metrics, **values}, claims)
        for c in claims:
            key = answers.claim_key(c.text)
            self.claim_texts[key] = c.text
            self.report(key, c.holds)
        try:
            from IPython.display import Markdown, display
        except ImportError:  # pragma: no cover - plain Python
            print(text)
        else:
            display(Markdown(text))

    def __repr__(self) -> str:
        return f"NotebookRun(name={self.name!r}, device={str(self.device)!r}, profile={self.profile!r}, seed={self.seed})"


# --------------------------------------------------------------------------- the data a run used
_ACTIVE_RUN: "NotebookRun | None" = None


def active_run() -> "NotebookRun | None":
    """The run the last :func:`setup` of this process started (None outside a notebook)."""
    return _ACTIVE_RUN


def standin_allowed() -> bool:
    """Whether a loader may fall back on a built-in stand-in (:mod:`nbhelpers.standin`) when a data set is
    absent: only inside a smoke-profile run, so a cpu or gpu run never trains on drawings by mistake."""
    return _ACTIVE_RUN is not None and _ACTIVE_RUN.profile == "smoke"


def note_data(dataset: str, standin: bool, where: Path | str, wanted: Path | str | None = None) -> None:
    """Say which data a run is using: a banner for a stand-in, and ``data`` (``"real"`` or ``"stand-in"``,
    a stand-in winning) in the active run's metrics."""
    run = _ACTIVE_RUN
    if standin and (run is None or f"standin:{dataset}" not in run.notes):  # once per run and data set
        if run is not None:
            run.notes.add(f"standin:{dataset}")
        print(f"STAND-IN DATA: {dataset} is not under {wanted}, so this smoke run uses drawings made by "
              f"nbhelpers.standin ({where}), not {dataset}; the numbers below say nothing about {dataset}. "
              f"Put the real files there or set ${DATA_ENV}.", flush=True)
    if run is not None and run.metrics.get("data") != "stand-in":
        run.report("data", "stand-in" if standin else "real")


_STRICT: StrictDevice | None = None


def setup(name: str, device: str = "auto", profile: str = "auto", seed: int = 0) -> NotebookRun:
    """Resolve device (env ``NBHELPERS_DEVICE`` overrides), profile (env ``NBHELPERS_PROFILE``
    overrides) and seed for a notebook, and start a fresh metrics record for it. With
    ``$NBHELPERS_STRICT_DEVICE=1`` the rest of the kernel runs under :class:`StrictDevice`."""
    check_name("notebook name", name)  # it names files under build/metrics and figures/
    dev = get_device(os.environ.get(DEVICE_ENV, "").strip() or device)
    prof = resolve_profile(profile, dev)
    global _STRICT
    if os.environ.get(STRICT_DEVICE_ENV, "").strip() not in ("", "0") and _STRICT is None:
        _STRICT = StrictDevice()  # for the rest of this kernel: the notebook held to a device without float64
        _STRICT.__enter__()
    if dev.type == "cuda":  # the notebooks' shapes are fixed: let cuDNN pick its fastest kernels once
        torch.backends.cudnn.benchmark = True
    gen = seed_everything(seed)
    run = NotebookRun(name=name, device=dev, profile=prof, seed=int(seed), generator=gen)
    if run.metrics_path.exists():
        run.metrics_path.unlink()
    global _ACTIVE_RUN
    _ACTIVE_RUN = run
    if max_steps() is not None:  # say it where the reader looks: the notebook's output and its metrics
        print(banner())
        run.report("dry_run_max_steps", max_steps())
    if prof == "smoke":  # a smoke run only proves the code runs: say so before its figures puzzle anyone
        print("smoke: a few training steps — samples are not expected to look like data")
    try:  # figures: consistent look, readable in dark and light themes
        import matplotlib.pyplot as plt

        plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.25, "axes.spines.top": False, "axes.spines.right": False})
    except ImportError:  # pragma: no cover
        pass
    return run
