"""Devices, seeds, profiles, project paths, figures and recorded metrics.

Every notebook starts with ``run = nb.setup("01_sdes", device=device, profile=profile, seed=seed)``
and then asks ``run`` for its device, its profile-dependent sizes (``run.pick``), where to
save figures (``run.savefig``) and where to record headline numbers (``run.report``).

Reproducibility: the same seed gives the same numbers (and byte-identical figures) on the same
machine, library versions and thread count; another thread count splits float reductions
differently and gives other, equally valid, numbers. Each run's metrics record the thread count
and machine (``machine_info``) so two runs can be compared honestly.

Float64 work (tables, exact oracles, metrics, checks) happens inside :func:`exact` on :func:`exact_device` of
the run's device — the device itself where it computes in float64, the CPU for Apple's MPS, which has none —
and :class:`StrictDevice` holds a CPU run to that rule in the tests.

Paths are resolved from this package's location, never from the working directory, so a
notebook gives the same result whether it is opened from ``notebooks/`` or run by papermill
from the repository root.
"""
from __future__ import annotations

import atexit
import builtins
import contextlib
import json
import math
import numbers
import os
import random
import re
import secrets
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ._checks import OutputError, check_name, check_param

T = TypeVar("T")

PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")
"""smoke: seconds, every code path (CI). cpu: a laptop, minutes. gpu: the assignments' full settings."""

PROFILE_ENV = "NBHELPERS_PROFILE"
DEVICE_ENV = "NBHELPERS_DEVICE"
DATA_ENV = "NBHELPERS_DATA_DIR"
HOME_ENV = "NBHELPERS_HOME"
CHECKPOINT_ENV = "NBHELPERS_CHECKPOINT_DIR"
OUTPUT_ENV = "NBHELPERS_OUTPUT_DIR"

_CHECKOUT = Path(__file__).resolve().parent.parent
ROOT = (_CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file()
        else Path(os.environ.get(HOME_ENV, "").strip() or os.getcwd()).expanduser().resolve())
"""Repository root (the folder holding ``nbhelpers/``). A package installed from a wheel or a URL (as a
notebook's first cell does on Colab) has no checkout around it: then ``$NBHELPERS_HOME``, else the working
folder at import, holds ``data/``, ``figures/`` and ``build/`` rather than site-packages."""


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


AMP_CHOICES: tuple[str, ...] = ("auto", "bf16", "fp16")
"""Mixed-precision dtypes: ``auto`` picks by the card (:func:`amp_dtype`), the others force one."""


def amp_dtype(device: str | torch.device, choice: str = "auto") -> torch.dtype | None:
    """The autocast dtype of ``device`` (None: run in float32).

    ``auto``: on CUDA bfloat16 from compute capability 8.0 (Ampere, Hopper: bf16 tensor cores) and float16
    below (a T4 is 7.5: fp16 tensor cores but none for bf16, and cuDNN takes bf16 convolutions only from
    8.0 — ``torch.cuda.is_bf16_supported()`` says True there all the same, so it is not the test); off on
    the CPU and MPS, where neither helps the series' networks. ``bf16`` / ``fp16`` force that dtype on any
    device (the CPU runs both, which is how the fp16 path with its gradient scaler is tested without a GPU).
    """
    if choice not in AMP_CHOICES:
        raise ValueError(f"unknown mixed-precision choice {choice!r}; valid choices: {', '.join(AMP_CHOICES)}")
    if choice == "bf16":
        return torch.bfloat16
    if choice == "fp16":
        return torch.float16
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def autocast(device: str | torch.device, enabled: bool = True, choice: str = "auto") -> Any:
    """``torch.autocast`` at :func:`amp_dtype`'s dtype for ``device`` (a no-op context where that is None)."""
    dtype = amp_dtype(device, choice) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


# --------------------------------------------------------------------------- float64 work
FLOAT64_DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda")
"""Device types that compute in float64. Apple's MPS has no float64 at all: a float64 tensor can neither be
made there nor moved there."""

STRICT_DEVICE_ENV = "NBHELPERS_STRICT_DEVICE"
_WIDE = (torch.float64, torch.complex128)
_HOST_TAG = "_nbhelpers_host"


def exact_device(device: str | torch.device) -> torch.device:
    """Where the float64 work of a run on ``device`` happens: ``device`` itself where it computes in float64
    (the CPU, CUDA), else the CPU (MPS).

    The float64 work — DDPM tables, exact oracles, metrics, exercise checks, the phase of a sinusoidal time
    encoding — runs inside :func:`exact`: its inputs come in through :func:`to_exact` and its result goes back
    to the model's device and dtype through :func:`from_exact`. On the CPU and CUDA nothing moves, so the
    numbers are those of float64 on that device and no step of a CUDA loop waits for the host (a time encoding
    runs in every forward); only a device without float64 pays a round trip to the host.
    """
    device = torch.device(device)
    return device if device.type in FLOAT64_DEVICE_TYPES else torch.device("cpu")


class _ExactState(threading.local):
    depth = 0  # open exact() regions
    crossing: str | None = None  # "in" while tensors come to the host (to_exact), "out" while results go back


_EXACT = _ExactState()


@contextlib.contextmanager
def exact() -> Iterator[None]:
    """The region where float64 work happens, as a ``with`` block or a decorator (``@exact()``): what it makes
    from no tensor is made on the host. Tensors of the run come in through :func:`to_exact` and results
    leave through :func:`from_exact`; :class:`StrictDevice` holds the library to that in the tests.
    """
    _EXACT.depth += 1
    try:
        yield
    finally:
        _EXACT.depth -= 1


@contextlib.contextmanager
def _crossing(direction: str) -> Iterator[None]:
    before, _EXACT.crossing = _EXACT.crossing, direction
    try:
        yield
    finally:
        _EXACT.crossing = before


def to_exact(x: Any, dtype: torch.dtype | None = None) -> Any:
    """The hop into float64 work: ``x`` on :func:`exact_device` of its device, floating point in float64 and
    other dtypes (steps, labels, masks) as they are, or everything in ``dtype`` where given. No copy where
    ``x`` is there already. It moves first and widens after: MPS makes no float64, not even for a copy to the
    CPU.

    ``x`` is a tensor, or an object with ``device`` and ``to(device=, dtype=)`` (a Gaussian mixture) — then
    its copy. Use it inside :func:`exact`."""
    with _crossing("in"):
        if not isinstance(x, torch.Tensor):
            return x.to(device=exact_device(x.device)).to(dtype=dtype or torch.float64)
        if dtype is None:
            dtype = torch.float64 if x.is_floating_point() else x.dtype
        out = x.to(exact_device(x.device)).to(dtype)
        return x.view_as(x) if out is x else out  # a tensor of its own, which StrictDevice marks as the host's


def from_exact(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The hop back: the float64 result ``y`` in ``like``'s dtype (narrowed where it is), on ``like``'s device."""
    with _crossing("out"):
        out = y.to(like.dtype).to(like.device)
    out.__dict__.pop(_HOST_TAG, None)  # it lives on the run's device now (no-op move: the same tensor)
    return out


def to_like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` on ``x``'s device in ``x``'s dtype, moved before it is cast: where ``x`` is float64 (so on the host,
    e.g. a metric's samples) a mixture's parameters on MPS come over first and are widened there."""
    with _crossing("in") if x.dtype in _WIDE else contextlib.nullcontext():
        return t.to(x.device).to(x.dtype)


class StrictDeviceError(RuntimeError):
    """Float64 made from a tensor of the run's device, or sent to a named device outside :func:`exact`."""


def _caller() -> str:
    """The innermost frame outside torch and this module, as ``path:line in function``."""
    here = os.path.abspath(__file__)
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if path != here and not path.startswith(torch_dir) and os.path.basename(path) != "contextlib.py":
            shown = os.path.relpath(path, ROOT) if path.startswith(str(ROOT)) else path
            return f"{shown}:{frame.lineno} in {frame.name}"
    return "?"


def _home(t: torch.Tensor) -> str | None:
    """``"host"`` for float64 (it never lives on the run's device) and for what :class:`StrictDevice` placed on
    the host, ``"device"`` for any other tensor, None for a 0-d one (a host scalar mixes with any device)."""
    if t.dtype in _WIDE or t.__dict__.get(_HOST_TAG, False):
        return "host"
    return "device" if t.dim() > 0 else None


def _place(out: torch.Tensor, src: Any, host: bool) -> torch.Tensor:
    """``out`` marked as the host's or the device's; a ``.to`` that moved nothing (``out is src``) gets an alias of
    its own, so the mark does not stick to the tensor it was called on."""
    if out is src:
        out = out.view_as(out)
    if host:
        out.__dict__[_HOST_TAG] = True
    else:
        out.__dict__.pop(_HOST_TAG, None)
    return out


class _StrictOps(TorchDispatchMode):
    """Rule 1 of :class:`StrictDevice`, on every ATen operation; what is made from host tensors alone, or from
    none, is the host's (a factory that names a device is placed by :class:`_StrictCalls`)."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if not outs or _EXACT.crossing == "out":
            return out
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        on_device = [t for t in inputs if _home(t) == "device"] if _EXACT.crossing is None else []
        wide = next((t for t in outs if t.dtype in _WIDE), None)
        if wide is not None and on_device:
            d = on_device[0]
            raise StrictDeviceError(
                f"{func} made a {wide.dtype} tensor from a {d.dtype} tensor of shape {tuple(d.shape)} on the run's "
                f"device (at {_caller()}); a device without float64 (MPS) cannot: bring it over with "
                f"nbhelpers.runtime.to_exact() inside nbhelpers.runtime.exact()")
        if not on_device:
            for t in outs:
                t.__dict__[_HOST_TAG] = True
        return out


class _StrictCalls(TorchFunctionMode):
    """Rule 2 of :class:`StrictDevice`, on every call of the torch API, and where each call puts its result:
    ``.cpu()`` on the host, a device named outside :func:`exact` on the run's device, one named inside it on
    the host, ``.to(other)`` where ``other`` is."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if _EXACT.crossing or not isinstance(out, torch.Tensor):
            return out
        name, src = getattr(func, "__name__", ""), args[0] if args else None
        if name == "cpu":
            return _place(out, src, host=True)
        device = kwargs.get("device")
        if name == "to" and device is None:
            device = next((a for a in args[1:] if isinstance(a, (str, torch.device))), None)
            other = next((a for a in args[1:] if isinstance(a, torch.Tensor)), kwargs.get("other"))
            if device is None and isinstance(other, torch.Tensor):
                return _place(out, src, host=_home(other) == "host")
        if device is None:
            return out
        if name != "to":
            src = None
        if _EXACT.depth:
            return _place(out, src, host=True)
        if out.dtype in _WIDE:
            raise StrictDeviceError(
                f"{getattr(func, '__qualname__', func)} put a {out.dtype} tensor on a device it was given, outside "
                f"nbhelpers.runtime.exact() (at {_caller()}); a device without float64 (MPS) cannot hold it: keep "
                f"float64 on nbhelpers.runtime.exact_device() inside exact(), or bring it over with .to(x) (x's dtype)")
        return _place(out, src, host=False)


class StrictDevice:
    """A run on the CPU held to the rules of a device without float64 (Apple's MPS), for the tests.

    Each tensor is placed as it would be on MPS. On the run's device: what a call puts on a device it is given
    (``device=``, ``.to(device)``) outside :func:`exact`, what is computed from such tensors, and every tensor
    made before the mode was entered (a test's inputs). On the host: float64 tensors, what ``.cpu()``,
    :func:`to_exact` or a factory without a device make, what a device named inside :func:`exact` receives,
    and what is computed from host tensors alone. A :class:`StrictDeviceError` then stops

    1. any ATen operation — inside torch.nn.functional and autograd too — that makes a float64 (or
       complex128) tensor from a tensor on the run's device: ``x.double()``, ``torch.as_tensor(t,
       dtype=torch.float64)``, a float64 table indexed by steps on the device, a mixture scored against a
       label mask built from ``y``;
    2. outside :func:`exact`, any call that puts a float64 tensor on a device it was given: ``buf.to(x.device)``,
       ``torch.zeros(n, dtype=torch.float64, device=x.device)``, ``model.to(device)`` with a float64 buffer.
       On the CPU the device given is the host, and a ``.to`` that moves nothing runs no operation, so the
       call itself is checked; :func:`exact` vouches that a device it names is :func:`exact_device`.

    Float64 work on host tensors passes anywhere: on MPS it runs on the host.

    It cannot see: a device named inside :func:`exact` that is not :func:`exact_device` (here both are the
    CPU); 0-d tensors (a host scalar mixes with any device, so device scalars are not told apart); a float32
    result left on the host instead of going back through :func:`from_exact`, or any other mix of host and
    device tensors (on MPS that stops at once with a device mismatch); operators MPS lacks; NumPy, always on
    the host; work on other threads (a DataLoader's workers, the exercise checks' worker); and how MPS draws
    random numbers.
    """

    def __init__(self) -> None:
        self._modes = (_StrictCalls(), _StrictOps())

    def __enter__(self) -> "StrictDevice":
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


def strict_device() -> StrictDevice:
    """Hold the code in a ``with`` block to a device without float64 (:class:`StrictDevice`); the tests run the
    samplers, oracles, losses and metrics under it, and ``$NBHELPERS_STRICT_DEVICE=1`` a whole notebook."""
    return StrictDevice()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded with ``seed``."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def randn(shape: Sequence[int] | torch.Size, generator: torch.Generator | None = None,
          device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """ε ~ N(0, I) of ``shape`` on ``device``, drawn from ``generator`` on the generator's own device.

    A CPU generator can feed a CUDA or MPS run (the draw is moved), so the same seed gives the same numbers on
    every device; without a generator the draw comes from the global RNG of ``device``. A float64 draw from a
    generator on a device without float64 (MPS) is drawn there in float32 and widened on the host.
    """
    gen_device = generator.device if generator is not None else device
    if dtype == torch.float64 and gen_device is not None and exact_device(gen_device) != torch.device(gen_device):
        with _crossing("in"):
            out = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=torch.float32)
            return out.to(exact_device(gen_device) if device is None else device).to(dtype)
    out = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype)
    return out if device is None else out.to(device)


# --------------------------------------------------------------------------- frontends and progress bars
HEADLESS_ENV = "NBHELPERS_HEADLESS"


def in_interactive_frontend() -> bool:
    """True when cells run in a live Jupyter frontend that can display widgets.

    False outside an IPython kernel, in a kernel executing without stdin (how papermill and nbclient run
    cells: nothing will ever render a widget there) and where ``NBHELPERS_HEADLESS=1``."""
    if os.environ.get(HEADLESS_ENV, "").strip() not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return False
    return bool(getattr(kernel, "_allow_stdin", False))


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class _FinalLine:
    """A text stream for tqdm that passes on only each bar's last state (the text after the last carriage
    return, once the bar ends its line): a headless executed notebook keeps ``100%|…| 500/500`` and no
    frozen ``0%``; a bar closed with ``leave=False`` leaves nothing."""

    def __init__(self, target: Any):
        self.target, self.line = target, ""

    def write(self, text: str) -> int:
        for i, part in enumerate(text.split("\n")):
            if i:  # a newline ended the bar's line: emit its final state
                final = self.line.rsplit("\r", 1)[-1].rstrip()
                if final:
                    self.target.write(final + "\n")
                self.line = ""
            self.line += part
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm bar that suits where it runs: a widget in a live notebook, a text bar on a terminal, and in a
    headless kernel (papermill, nbval) a text bar that writes only its final state."""
    if in_interactive_frontend():
        from tqdm.notebook import tqdm
    else:
        import sys

        from tqdm.std import tqdm

        if _in_kernel():
            kwargs = {**kwargs, "file": _FinalLine(sys.stderr), "dynamic_ncols": False, "ncols": 100}
    return tqdm(iterable, **kwargs)


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
    from .dryrun import redirect

    base = _env_path(CHECKPOINT_ENV)
    if base is not None:
        return redirect(base / "smoke" if profile == "smoke" else base)
    return redirect(build_dir() / "smoke" / "checkpoints" if profile == "smoke" else output_root() / "checkpoints")


def figures_dir(profile: str | None = None) -> Path:
    """``figures/`` for real runs; smoke runs write under ``build/smoke/figures``, and a dry run
    (``$NBHELPERS_MAX_STEPS``) under its own root, so its meaningless figures never replace a real run's."""
    from .dryrun import redirect

    return redirect(build_dir() / "smoke" / "figures" if profile == "smoke" else output_root() / "figures")


def metrics_dir() -> Path:
    """``build/metrics``; a dry run (``$NBHELPERS_MAX_STEPS``) writes its capped numbers under its own root,
    so it never overwrites the metrics of a real run of the same notebook."""
    from .dryrun import redirect

    return redirect(build_dir() / "metrics")


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


def _lock_pid(value: Any) -> int:
    """The pid a lock file names, or -1 (no live process) when it names none a process could have."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        return -1
    return value


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
                elif _lock_pid(owner.get("pid")) < 0 or (owner.get("host") == me["host"]
                                                          and not pid_alive(_lock_pid(owner.get("pid")))):
                    # its run has exited (kill -9, a dead launcher), or the file names no process: stale
                    print(f"taking over the stale lock {self.path} (pid {owner.get('pid')!r} is not running)",
                          file=sys.stderr)
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


# --------------------------------------------------------------------------- notebook parameters
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
        """Training steps from the parameters ``steps`` or ``epochs`` (at most one of them given).

        ``steps`` is used as given; ``epochs`` becomes :func:`steps_for_epochs` of ``n_examples``
        (an int, or a function counting them, called only when needed) at ``batch_size``, and the
        conversion is printed; neither → ``default`` (the profile's). ``name`` is the steps parameter's name.
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
        return check_param(name, steps, kind=int, min=1, none=f"the profile default ({default} in {self.profile})")

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

    def report_all(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """:meth:`report` every ``name → value`` of ``metrics`` (a study's numbers); returns them as recorded."""
        if not isinstance(metrics, dict):
            raise ValueError(f"metrics must be a dict of name → value, got {type(metrics).__name__}")
        return {key: self.report(key, value) for key, value in metrics.items()}

    def record(self, study: Any, figure: str | None = None) -> dict[str, Any]:
        """Record a study (anything with ``metrics``, ``summary`` and ``figure``, e.g. a recipe's
        ``Study``): :meth:`report_all` its metrics, print its summary when it has one, and save its
        figure as ``<figure>.png`` when ``figure`` names it. Returns the metrics as recorded."""
        if figure is not None and getattr(study, "figure", None) is None:
            raise ValueError(f"figure={figure!r} was given but the study has no figure")
        recorded = self.report_all(study.metrics)
        if getattr(study, "summary", ""):
            print(study.summary)
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

        ``template`` cites recorded metrics as ``{name:format}`` (``values`` adds more); each
        claim is recorded as ``claims/<text>`` and, when this run does not support it, shown
        as a visible warning under the answer.
        """
        from . import answers

        claims = list(claims)
        for c in claims:
            if not isinstance(c, answers.Claim):
                raise ValueError(f"claims must be made with nb.answers.claim(text, holds, evidence); got {c!r}")
        for k, v in values.items():  # a value passed here must not contradict the one recorded under that name
            if k in self.metrics and _jsonable(v) != self.metrics[k]:
                raise ValueError(f"the answer passes {k}={v!r}, but this run recorded {k} = {self.metrics[k]!r}; "
                                 f"cite the recorded value or give this one another name")
        text = answers.render(template, {**self.metrics, **values}, claims)
        for c in claims:
            self.report(answers.claim_key(c.text), c.holds)
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
    from .dryrun import banner, max_steps

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
