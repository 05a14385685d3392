"""Devices, seeds, profiles, project paths, figures and recorded metrics.

Every notebook starts with ``run = nb.setup("01_sdes", device=device, profile=profile, seed=seed)``
and then asks ``run`` for its device, its profile-dependent sizes (``run.pick``), where to
save figures (``run.savefig``) and where to record headline numbers (``run.report``).

Paths are resolved from this package's location, never from the working directory, so a
notebook gives the same result whether it is opened from ``notebooks/`` or run by papermill
from the repository root.
"""
from __future__ import annotations

import atexit
import json
import os
import random
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ._checks import OutputError, check_name

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
    """Trained-model cache. Smoke runs keep theirs apart so they never shadow real models."""
    return build_dir() / "smoke" / "checkpoints" if profile == "smoke" else ROOT / "checkpoints"


def figures_dir(profile: str | None = None) -> Path:
    """``figures/`` for real runs; smoke runs write under ``build/smoke/figures``."""
    return build_dir() / "smoke" / "figures" if profile == "smoke" else ROOT / "figures"


def metrics_dir() -> Path:
    return build_dir() / "metrics"


def _host() -> str:
    """This machine's name, reduced to ``[A-Za-z0-9-]`` (it goes into temp and lock file names)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A temp file name beside ``path`` that names its writer: ``.<name>.<host>.<pid>.<random><suffix>``.

    :func:`remove_stale_temps` deletes such files once their writer is gone (e.g. after ``kill -9``).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


_LEGACY_TEMP_AGE_S = 3600.0


def remove_stale_temps(path: Path, suffixes: tuple[str, ...] = (".tmp", ".part")) -> list[Path]:
    """Delete the temp files of ``path`` (see :func:`temp_path`) whose writer on this machine has exited.

    Temps of live writers and of other machines are kept. Temps named by older versions
    (``.<name>.<random>.tmp``, no writer recorded) are deleted once an hour old. Returns what was deleted.
    """
    path = Path(path)
    folder, prefix = path.parent, f".{path.name}."
    host = _host()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or not name.endswith(suffixes):
            continue
        rest = name[len(prefix):]
        parts = rest.split(".")
        stale = False
        if len(parts) == 4 and parts[1].isdigit():  # host.pid.random.suffix
            stale = parts[0] == host and not pid_alive(int(parts[1]))
        elif len(parts) == 2:  # the old mkstemp name: random.tmp
            try:
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_TEMP_AGE_S
            except OSError:
                stale = False
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename.

    The temp file names its writer (:func:`temp_path`); temps left by writers that died (``kill -9``
    mid-write) are removed first. The file gets the usual permissions of a new file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class FolderLock:
    """A lock file ``path`` holding the owner's pid and host, created atomically (``O_EXCL``).

    A second run that finds a live owner stops with one :class:`OutputError` naming the owner; a lock
    whose owner on this machine has exited (``kill -9``, a dead launcher) is stale and taken over.
    Taking a lock this process already holds is a no-op (the outer holder releases it).
    Creating it is also the check that the folder is writable, before any work is done.
    """

    def __init__(self, path: Path, what: str = "this run") -> None:
        self.path = Path(path)
        self.what = what
        self.held = False

    def _owner(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.path.read_text())
            return info if isinstance(info, dict) else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> "FolderLock":
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create folder {folder} ({exc.strerror or exc}); choose a writable folder") from None
        if not folder.is_dir():
            raise OutputError(f"{folder} is not a folder; choose a folder for the outputs")
        me = {"pid": os.getpid(), "host": _host(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "for": self.what}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:  # unreadable or half-written: stale after a minute
                    try:
                        age = time.time() - self.path.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    if age < 60:
                        raise OutputError(f"{self.path} is being created by another run; wait, or delete it if no run "
                                          f"is using {folder}") from None
                elif owner.get("host") == me["host"] and owner.get("pid") == me["pid"]:
                    return self  # held by this process already (an outer call); that call releases it
                elif owner.get("host") == me["host"] and not pid_alive(int(owner.get("pid", -1))):
                    pass  # its run has exited (kill -9, a dead launcher): stale
                else:
                    raise OutputError(
                        f"{folder} is in use by another run (pid {owner.get('pid')} on {owner.get('host')}, started "
                        f"{owner.get('started')}, {owner.get('for', 'a run')}); wait for it to finish or stop it, "
                        f"or delete {self.path} if that run is gone") from None
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            except OSError as exc:
                raise OutputError(f"cannot write in {folder} ({exc.strerror or exc}); choose a writable folder") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            atexit.register(self.release)  # also gone when the process ends after an error
            return self
        raise OutputError(f"could not take the lock {self.path}; delete it if no run is using {folder}")

    def release(self) -> None:
        if self.held:
            self.held = False
            owner = self._owner()
            if owner is None or owner.get("pid") == os.getpid():
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


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
        check_name("figure name", name)
        path = self.figures_dir / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        return path

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
            "metrics": self.metrics,
        }
        atomic_write_bytes(self.metrics_path, json.dumps(payload, indent=2, sort_keys=True).encode())
        return value

    def save_samples(self, name: str, **arrays: Any) -> Path:
        """Write arrays (tensors or numpy) to ``build/metrics/<notebook>/<name>.npz``."""
        check_name("samples name", name)
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
    try:  # figures: consistent look, readable in dark and light themes
        import matplotlib.pyplot as plt

        plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.25, "axes.spines.top": False, "axes.spines.right": False})
    except ImportError:  # pragma: no cover
        pass
    return run
