"""Devices, mixed precision, seeds and random draws, and where float64 work happens.

Reproducibility: the same seed gives the same numbers (and byte-identical figures) on the same machine,
library versions and thread count; another thread count splits float reductions differently and gives other,
equally valid, numbers. :func:`randn` draws on the generator's device and moves the draw to the data's, so one
seed gives the same noise on every device.

Float64 work (tables, exact oracles, metrics, checks) happens inside :func:`exact` on :func:`exact_device` of
the run's device — the device itself where it computes in float64, the CPU for Apple's MPS, which has none —
and :class:`StrictDevice` holds a CPU run to that rule in the tests.
"""
from __future__ import annotations

import contextlib
import os
import random
import threading
import traceback
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .layout import EVAL_CHUNK_ENV, ROOT


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

CPU_EVAL_CHUNK = 128
"""Images a UNet evaluates at once in inference on the CPU (:func:`eval_chunk`)."""


def eval_chunk(x: torch.Tensor, training: bool = False) -> int | None:
    """How many images of ``x`` a network should evaluate at once, or ``None`` for all of them.

    On the CPU, in inference (no gradients, the module in eval mode), :data:`CPU_EVAL_CHUNK`: a UNet's
    activations for several hundred 28×28 or 32×32 images no longer fit in the processor's caches, and the
    same images evaluate 1.3–2× faster per image in chunks of ~128 (``benchmarks/README.md``, "Sampling in
    cache-sized chunks"). Each image's output does not depend on the others in eval mode, so chunking changes
    nothing but float rounding. ``$NBHELPERS_EVAL_CHUNK`` sets another size (0: never chunk). CUDA and MPS
    evaluate the whole batch: a large batch is what keeps a GPU busy. While training, or with gradients on,
    ``None`` (BatchNorm in training mode normalises over the whole batch).
    """
    if training or torch.is_grad_enabled() or x.device.type != "cpu":
        return None
    raw = os.environ.get(EVAL_CHUNK_ENV, "").strip()
    if not raw:
        return CPU_EVAL_CHUNK
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"${EVAL_CHUNK_ENV} must be a non-negative integer (0: evaluate whole batches), got {raw!r}")
    return n or None


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


# --------------------------------------------------------------------------- seeds and draws
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
