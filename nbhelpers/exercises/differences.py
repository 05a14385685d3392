"""What differs between a learner's result and the expected one, and how it is said: :func:`diagnose` judges by
type, dtype, device and shape before the numbers (a ``KIND_*`` and one line), :func:`fmt` shows a value in one
short line, :func:`error_kind`, :func:`where` and :func:`one_line` turn a raised error into its kind, the line of
the learner's code and one line of text, and :data:`HINTS` holds the short hint of each kind."""
from __future__ import annotations

import math
import os
import re
import sysconfig
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

def _type_name(v: Any) -> str:
    """``numpy.ndarray``, ``float``, ``None``: how a returned thing is named to the learner."""
    if v is None:
        return "None"
    t = type(v)
    mod = t.__module__.split(".")[0]
    return t.__name__ if mod in ("builtins", "__main__") else f"{mod}.{t.__name__}"


def _short(text: str, n: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def fmt(v: Any, depth: int = 1) -> str:
    """A value in one short line: a tensor's shape and first values, never a whole array."""
    try:
        if isinstance(v, Tensor):
            if v.device.type == "meta":
                return f"tensor of shape {tuple(v.shape)} on the meta device (no values)"
            flat = v.detach().flatten().cpu()
            flat = flat.abs() if flat.is_complex() else flat.double()
            vals = ", ".join(f"{x:.4g}" for x in flat[:6].tolist()) + (", …" if flat.numel() > 6 else "")
            return f"tensor of shape {tuple(v.shape)} [{vals}]" if v.ndim else f"{flat.item():.6g} (0-d tensor)"
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, tuple) and v and all(isinstance(x, int) for x in v):
            return f"shape {v}"
        if type(v).__module__ == "numpy" and hasattr(v, "shape") and hasattr(v, "ravel"):
            flat = v.ravel()[:6]
            vals = ", ".join(f"{x:.4g}" if isinstance(x, (int, float)) or hasattr(x, "dtype") else repr(x)
                             for x in flat.tolist())
            more = ", …" if v.size > 6 else ""
            return f"{_type_name(v)} of shape {tuple(v.shape)}, {v.dtype} [{vals}{more}]"
        if isinstance(v, (list, tuple)) and depth > 0:
            items = ", ".join(fmt(x, depth - 1) for x in v[:3]) + (", …" if len(v) > 3 else "")
            return f"a {len(v)}-element {type(v).__name__} ({items})"
        if isinstance(v, (list, tuple, dict, set)):
            return f"a {type(v).__name__} of {len(v)} items"
        if v is None:
            return "None"
        return _short(repr(v), 60)
    except Exception:  # noqa: BLE001 — a learner's object whose repr fails
        return f"a {_type_name(v)}"


KIND_TYPE, KIND_DTYPE, KIND_DEVICE, KIND_SHAPE, KIND_GRAD, KIND_VALUES = "type", "dtype", "device", "shape", "grad", "values"


def diagnose(got: Any, expected: Any, atol: float, rtol: float) -> tuple[str, str] | None:
    """None when ``got`` matches ``expected``; otherwise ``(kind, what differs)``, the kinds checked in the order
    type, dtype, device, shape (then gradient, finiteness and values)."""
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            what = _type_name(got)
            extra = " (a missing return?)" if got is None else ""
            return KIND_TYPE, (f"a tensor was expected, got {type(got).__name__}: return a torch.Tensor, not "
                           f"{'a ' if got is not None else ''}{what}{extra}")
        if got.device.type == "meta":
            return KIND_DEVICE, "a tensor on the meta device, which holds no values"
        if got.is_complex() and not expected.is_complex():
            return KIND_DTYPE, f"a complex tensor ({got.dtype}); the task's values are real"
        if (got.is_floating_point() != expected.is_floating_point()  # float labels, integer noise …
                or got.dtype == torch.float64 and expected.dtype in (torch.float32, torch.float16, torch.bfloat16)):
            # later cells mix it with the library's tensors, and float64 or float labels break them there
            # (a float64 closed form accepts float32: the library computes in the inputs' dtype)
            return KIND_DTYPE, (f"dtype {str(got.dtype).replace('torch.', '')} instead of "
                            f"{str(expected.dtype).replace('torch.', '')}; give the result its input's dtype, e.g. "
                            f"buffer.to(x) for a float64 table")
        if got.device != expected.device:
            return KIND_DEVICE, f"on {got.device} instead of {expected.device} (where its inputs were)"
        if tuple(got.shape) != tuple(expected.shape):
            return KIND_SHAPE, f"shape {tuple(got.shape)} where the case expects {tuple(expected.shape)}"
        if expected.requires_grad and not got.requires_grad:
            return KIND_GRAD, ("no gradient reaches the network through it (detached: no .detach(), .item(), .data or "
                           "torch.no_grad() in a loss)")
        g, e = got.detach().double().cpu(), expected.detach().double().cpu()
        if not torch.isfinite(g).all():
            return KIND_VALUES, "it holds inf or nan"
        if torch.allclose(g, e, atol=atol, rtol=rtol):
            return None
        return KIND_VALUES, f"max |got − expected| = {(g - e).abs().max().item():.3g}"
    if isinstance(expected, tuple):
        try:
            return None if tuple(got) == expected else (KIND_SHAPE, "a different shape")
        except TypeError:
            return KIND_TYPE, f"a tuple was expected, got {_type_name(got)}"
    if isinstance(got, Tensor) and got.numel() != 1:
        return KIND_SHAPE, f"a single number was expected, got a tensor of shape {tuple(got.shape)}"
    try:
        g = float(got)
    except (TypeError, ValueError, RuntimeError):
        return KIND_TYPE, f"a number was expected, got {_type_name(got)}" + (" (a missing return?)" if got is None else "")
    if math.isfinite(g) and abs(g - float(expected)) <= atol + rtol * abs(float(expected)):
        return None
    return KIND_VALUES, (f"|got − expected| = {abs(g - float(expected)):.3g}, "
                     f"allowed {atol + rtol * abs(float(expected)):.3g}")


# the short hint of a failure that is not about the numbers (the case's own hint is about the maths)
HINTS = {
    KIND_TYPE: "return what the task asks for, as torch tensors computed with torch operations on the inputs (no "
           ".numpy(), .tolist(), .item() or numpy functions)",
    KIND_DTYPE: "keep the inputs' dtype: make new tensors with dtype=x.dtype, and bring float64 buffers over with .to(x)",
    KIND_DEVICE: "keep everything on the inputs' device: new tensors with device=x.device, buffers with .to(x)",
    KIND_SHAPE: "print the shapes (x.shape) of the inputs and of your result: a per-sample (B,) tensor needs reshaping "
            "to (B, 1, …, 1) to broadcast over x (nb.paths.expand_time), and sum or average only where the task "
            "says",
    "index": "an index past the end: a buffer of T steps has entries 0 … T − 1, so step k is entry k − 1",
    KIND_GRAD: "build the result from the network's output with torch operations only: no .detach(), .item(), .data "
           "or torch.no_grad()",
    "error": "fix the error at the line named above and re-run the cell; once it runs, this case compares its numbers",
    "mutation": "an in-place operation (x += …, x.mul_(…), x[mask] = …, x.data) writes into the caller's tensor, "
                "which later cells reuse: start from a copy (x = x.clone()) or write y = x * … instead",
    "inplace": "an in-place operation (x += …, x.mul_(…), x[mask] = …) on an input: start from a copy "
               "(x = x.clone()) or write y = x * … instead",
    "replaced": "assigning to an input's attribute (ddpm.alphas_cumprod = …) changes the object the later cells "
                "share: keep what you compute in a local variable (abar = ddpm.alphas_cumprod.to(x))",
    "timeout": "look for a loop that never ends (a while whose condition never changes) or one far too long; in a "
               "notebook, the stop button (■) interrupts a cell that hangs",
}

_DEVICE_ERROR = re.compile(r"device", re.I)
_DTYPE_ERROR = re.compile(r"expected scalar type|dtype|can't be cast|scalar type|found dtype", re.I)
_SHAPE_ERROR = re.compile(r"size of tensor|expanded size|broadcast|shape|mat1 and mat2|dimension|"
                          r"only one element tensors|cannot be converted to Scalar|must match the size|"
                          r"invalid for input of size|number of elements", re.I)
_INPLACE_ERROR = re.compile(r"in-place|inplace|written-to tensor", re.I)
_CALL_ERROR = re.compile(r"positional argument|unexpected keyword argument|required (?:positional|keyword)")


def error_kind(err: BaseException) -> str:
    """type, dtype, device, shape, index or signature for the errors those mistakes raise, else error."""
    text = str(err)
    if isinstance(err, TypeError):
        if _CALL_ERROR.search(text):
            return "signature"
        return KIND_TYPE if re.search(r"tensor|ndarray|numpy|must return", text, re.I) else "error"
    if isinstance(err, (RuntimeError, ValueError, IndexError)):
        if _DEVICE_ERROR.search(text):
            return KIND_DEVICE
        if _DTYPE_ERROR.search(text):
            return KIND_DTYPE
        if _INPLACE_ERROR.search(text):
            return "inplace"
        if isinstance(err, IndexError) and "out of bounds" in text:
            return "index"
        if _SHAPE_ERROR.search(text):
            return KIND_SHAPE
    return "error"


def _library_dirs() -> tuple[str, ...]:
    paths = {str(Path(__file__).resolve().parents[1]), os.path.dirname(os.path.abspath(torch.__file__))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with_key = sysconfig.get_paths().get(key)
        if with_key:
            paths.add(os.path.abspath(with_key))
    return tuple(p + os.sep for p in paths)


_LIBRARY = _library_dirs()


def where(err: BaseException) -> str:
    """The innermost frame of the learner's code in the error's traceback: ``line 3 of em_step: `return 1 / 0```."""
    try:
        frames = traceback.extract_tb(err.__traceback__)
    except Exception:  # noqa: BLE001
        return ""
    for fr in reversed(frames):
        if fr.filename and not os.path.abspath(fr.filename).startswith(_LIBRARY):
            line = f": `{_short(fr.line, 70)}`" if fr.line else ""
            return f"line {fr.lineno} of {fr.name}{line}"
    return ""


def one_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return _short(f"{type(err).__name__}: {text}" if text else type(err).__name__, 200)
