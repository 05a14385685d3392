"""Devices, seeds, profiles, project paths, figures and recorded metrics.

Every notebook starts with ``run = nb.setup("01_sdes", device=device, profile=profile, seed=seed)``
and then asks ``run`` for its device, its profile-dependent sizes (``run.pick``), where to
save figures (``run.savefig``) and where to record headline numbers (``run.report``).

Reproducibility: the same seed gives the same numbers (and byte-identical figures) on the same
machine, library versions and thread count; another thread count splits float reductions
differently and gives other, equally valid, numbers. Each run's metrics record the thread count
and machine (``machine_info``) so two runs can be compared honestly.

Paths are resolved from this package's location, never from the working directory, so a
notebook gives the same result whether it is opened from ``notebooks/`` or run by papermill
from the repository root.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")

PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")
"""smoke: seconds, every code path (CI). cpu: a laptop, minutes. gpu: the assignments' full settings."""

PROFILE_ENV = "NBHELPERS_PROFILE"
DEVICE_ENV = "NBHELPERS_DEVICE"
DATA_ENV = "NBHELPERS_DATA_DIR"

ROOT = Path(__file__).resolve().parent.parent
"""Repository root (the folder holding ``nbhelpers/``)."""


# --------------------------------------------------------------------------- devices
def available_devices() -> list[str]:
    """Devices torch can use here, e.g. ``['cpu', 'cuda:0', 'mps']``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def get_device(name: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` to a ``torch.device``.

    ``auto`` picks CUDA, then MPS, then CPU. Asking for a device that is not present raises
    one ``ValueError`` naming the devices that are.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise ValueError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N, mps")
    key = name.strip().lower()
    avail = available_devices()
    if key == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if "mps" in avail:
            return torch.device("mps")
        return torch.device("cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "cuda" or key.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} is not available here; available devices: {', '.join(avail)}")
        if key.startswith("cuda:"):
            idx = key.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise ValueError(f"device {name!r} is not available here; available devices: {', '.join(avail)}")
        return torch.device(key)
    if key == "mps":
        if "mps" not in avail:
            raise ValueError(f"device {name!r} is not available here; available devices: {', '.join(avail)}")
        return torch.device("mps")
    raise ValueError(
        f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N, mps (available here: {', '.join(avail)})"
    )


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded with ``seed``."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


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
        if device is None:
            device = get_device("auto")
        return "gpu" if device.type == "cuda" else "cpu"
    if key not in PROFILES:
        source = f" (from ${PROFILE_ENV})" if env else ""
        raise ValueError(f"unknown profile {chosen!r}{source}; valid choices: auto, {', '.join(PROFILES)}")
    return key


# --------------------------------------------------------------------------- paths
def data_dir() -> Path:
    """Data root: ``$NBHELPERS_DATA_DIR`` if set, else ``<repo>/data``."""
    env = os.environ.get(DATA_ENV, "").strip()
    return Path(env).expanduser().resolve() if env else ROOT / "data"


def build_dir() -> Path:
    return ROOT / "build"


def checkpoints_dir(profile: str | None = None) -> Path:
    """Trained-model cache. Smoke runs and dry runs (``$NBHELPERS_MAX_STEPS``) keep theirs apart so they
    never shadow real models."""
    from .dryrun import redirect

    return redirect(build_dir() / "smoke" / "checkpoints" if profile == "smoke" else ROOT / "checkpoints")


def figures_dir(profile: str | None = None) -> Path:
    """``figures/`` for real runs; smoke runs write under ``build/smoke/figures``."""
    return build_dir() / "smoke" / "figures" if profile == "smoke" else ROOT / "figures"


def metrics_dir() -> Path:
    return build_dir() / "metrics"


def _umask_mode() -> int:
    """0o666 less the process umask: the mode ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename.

    The file gets the usual permissions of a new file (``mkstemp`` alone would make it owner-only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _umask_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_figure(fig: Any, path: Path, dpi: int = 110, **kwargs: Any) -> Path:
    """Write a matplotlib figure as a byte-stable PNG (atomically; no varying metadata).

    The same figure drawn with the same library versions gives the same bytes, so a re-run with
    the same seed and thread count leaves an unchanged file (its modification time too: equal
    bytes are not rewritten).
    """
    import io

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG; got the file name {path.name!r} (use a .png suffix)")
    buf = io.BytesIO()
    kwargs.setdefault("bbox_inches", "tight")
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, **kwargs)
    data = buf.getvalue()
    if path.is_file() and path.read_bytes() == data:
        return path
    atomic_write_bytes(path, data)
    return path


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
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


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

    # -- sizes ------------------------------------------------------------------
    def pick(self, smoke: T, cpu: T, gpu: T) -> T:
        """The value for the profile in force."""
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[self.profile]

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
        if not name or "/" in name or "\\" in name:
            raise ValueError(f"figure name must be a plain file name, got {name!r}")
        return save_figure(fig, self.figures_dir / f"{name}.png", dpi=dpi)

    def report(self, key: str, value: Any) -> Any:
        """Record a headline number in ``build/metrics/<notebook>.json`` (rewritten atomically)."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric name must be a non-empty string, got {key!r}")
        value = _jsonable(value)
        self.metrics[key] = value
        payload = {
            "notebook": self.name,
            "profile": self.profile,
            "device": str(self.device),
            "seed": self.seed,
            "elapsed_s": round(time.time() - self.started, 3),
            "machine": self.machine,
            "metrics": self.metrics,
        }
        atomic_write_bytes(self.metrics_path, json.dumps(payload, indent=2, sort_keys=True).encode())
        return value

    def save_samples(self, name: str, **arrays: Any) -> Path:
        """Write arrays (tensors or numpy) to ``build/metrics/<notebook>/<name>.npz``."""
        path = self.samples_dir / f"{name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in arrays.items()}
        np.savez_compressed(path, **data)
        return path

    def __repr__(self) -> str:
        return f"NotebookRun(name={self.name!r}, device={str(self.device)!r}, profile={self.profile!r}, seed={self.seed})"


def setup(name: str, device: str = "auto", profile: str = "auto", seed: int = 0) -> NotebookRun:
    """Resolve device (env ``NBHELPERS_DEVICE`` overrides), profile (env ``NBHELPERS_PROFILE``
    overrides) and seed for a notebook, and start a fresh metrics record for it."""
    dev = get_device(os.environ.get(DEVICE_ENV, "").strip() or device)
    prof = resolve_profile(profile, dev)
    gen = seed_everything(seed)
    run = NotebookRun(name=name, device=dev, profile=prof, seed=int(seed), generator=gen)
    if run.metrics_path.exists():
        run.metrics_path.unlink()
    from .dryrun import banner, max_steps

    if max_steps() is not None:  # say it where the reader looks: the notebook's output and its metrics
        print(banner())
        run.report("dry_run_max_steps", max_steps())
    try:  # figures: consistent look, readable in dark and light themes
        import matplotlib.pyplot as plt

        plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.25, "axes.spines.top": False, "axes.spines.right": False})
    except ImportError:  # pragma: no cover
        pass
    return run
