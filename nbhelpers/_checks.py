"""Argument checks shared by every public function, and the error raised for unreadable files.

Each check returns the value in its canonical form (a Python ``int``/``float``, an int64 tensor)
and raises one ``ValueError`` naming the parameter, the value and the valid range otherwise.
Integers may come as Python ints, NumPy integers or 0-d integer tensors (what notebooks pass);
a ``bool``, or a float even with an integral value (``2.0``), is rejected rather than silently
converted (``2.5 → 2`` and ``True → 1`` would otherwise run something else than asked).
:func:`check_param` checks a notebook's parameter as papermill passes it (a plain Python value).
"""
from __future__ import annotations

import hashlib
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DataError", "OutputError", "check_int", "check_float", "check_finite", "check_labels", "check_name",
           "check_sha256", "check_param", "batch_time"]


class DataError(ValueError):
    """A file the package reads is missing a part, truncated, empty or not what it should be.

    The message names the file and the remedy (delete it to rebuild or retrain, re-download it).
    A ``ValueError``, so callers that stop on bad input stop on this too.
    """


class OutputError(ValueError):
    """An output folder or file cannot be written, or another live run is using it; the message says which."""


def _range_text(min: float | None, max: float | None) -> str:
    if min is not None and max is not None:
        return f"in {min}..{max}"
    if min is not None:
        return f">= {min}"
    if max is not None:
        return f"<= {max}"
    return "any value"


def check_int(name: str, value: Any, min: int | None = None, max: int | None = None, *,
              allow_none: bool = False) -> int | None:
    """``value`` as a Python ``int`` in ``min..max`` (bounds inclusive, ``None`` = unbounded)."""
    if value is None and allow_none:
        return None
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_floating_point() \
            and not value.is_complex() and value.dtype != torch.bool:
        value = int(value.item())
    elif isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(value.dtype, np.integer):
        value = int(value)
    ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if max is None and min == 1:
        what = "a positive integer"
    elif max is None and min == 0:
        what = "a non-negative integer"
    else:
        what = "an integer" + ("" if min is None and max is None else f" {_range_text(min, max)}")
    if not ok:
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be {what}{none}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (min is not None and value < min) or (max is not None and value > max):
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value}")
    return value


def check_float(name: str, value: Any, min: float | None = None, max: float | None = None, *,
                min_open: bool = False, max_open: bool = False, allow_none: bool = False) -> float | None:
    """``value`` as a finite Python ``float`` within the given bounds (``*_open``: bound excluded)."""
    if value is None and allow_none:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool and not value.is_complex():
        value = float(value.item())
    elif isinstance(value, np.ndarray) and value.size == 1 and np.issubdtype(value.dtype, np.number):
        value = float(value.reshape(()))
    lo = "" if min is None else f"{'>' if min_open else '>='} {min:g}"
    hi = "" if max is None else f"{'<' if max_open else '<='} {max:g}"
    what = "a finite number" + (f" {lo}" if lo else "") + (" and" if lo and hi else "") + (f" {hi}" if hi else "")
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be {what}{none}, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {what}, got {value}")
    if min is not None and (value < min or (min_open and value == min)):
        raise ValueError(f"{name} must be {what}, got {value:g}")
    if max is not None and (value > max or (max_open and value == max)):
        raise ValueError(f"{name} must be {what}, got {value:g}")
    return value


def check_finite(name: str, value: Any) -> Any:
    """A number, or a tensor of numbers, with no NaN or ±inf (returned unchanged; tensors are checked in full)."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise ValueError(f"{name} must hold finite real numbers, got a {value.dtype} tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{name} must be finite, got {bad} NaN/inf value(s) of {value.numel()}")
        return value
    if isinstance(value, np.ndarray):
        return check_finite(name, torch.as_tensor(value))
    return check_float(name, value)


def check_labels(name: str, labels: Any, num_classes: int, batch: int | None = None, *,
                 allow_null: bool = True, check_values: bool = True) -> torch.Tensor:
    """Class labels as an int64 ``(B,)`` tensor with values in ``0..num_classes`` (the last is the
    null label ∅ = ``num_classes``; ``allow_null=False`` stops at ``num_classes − 1``).

    Float labels are refused (``1.7`` is not a class), as are other shapes than ``(batch,)``.
    The range is checked for CPU tensors only (``check_values=False`` skips it there too): on a GPU reading
    the values back is a host–device sync, once per training step and per sampler call.
    """
    top = num_classes if allow_null else num_classes - 1
    valid = f"integer class labels in 0..{top} (num_classes = {num_classes}" + \
        (", the null label is num_classes)" if allow_null else ")")
    if isinstance(labels, (list, tuple, np.ndarray, numbers.Number)):
        arr = np.asarray(labels)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must be {valid}, got {labels!r} (dtype {arr.dtype})")
        labels = torch.as_tensor(arr)
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of {valid}, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be {valid}, got dtype {labels.dtype}")
    want = f"({batch},)" if batch is not None else "(B,)"
    if labels.ndim != 1 or (batch is not None and labels.shape[0] != batch):
        raise ValueError(f"{name} must have shape {want}, got {tuple(labels.shape)}")
    if check_values and labels.numel() and labels.device.type == "cpu":  # on a GPU the read-back is a sync per call
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi > top:
            raise ValueError(f"{name} must be {valid}, got values in {lo}..{hi}")
    return labels.long()


def check_name(name: str, value: Any) -> str:
    """A plain file name (no folder part, no ``..``), as used for figures and saved samples."""
    if not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value \
            or "\x00" in value or Path(value).name != value:
        raise ValueError(f"{name} must be a plain file name (no '/', '\\\\' or '..'), got {value!r}")
    return value


def check_sha256(path: Path, expected: str | None, what: str, remedy: str) -> str:
    """SHA-256 of ``path``; a :class:`DataError` naming the file and ``remedy`` when it differs from
    ``expected`` (``None``: nothing pinned, the digest is printed for the record)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    digest = h.hexdigest()
    if expected is None:
        print(f"{what}: SHA-256 {digest} (no pinned digest to compare with)", flush=True)
    elif digest != expected.lower():
        raise DataError(f"{path} ({what}) has SHA-256 {digest}, expected {expected}: it is damaged or not the "
                        f"published file; {remedy}")
    return digest


def batch_time(t: float | torch.Tensor, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` as a ``(B,)`` tensor on ``x``'s device, in ``dtype`` (default: ``x``'s dtype).

    The one time normaliser: a scalar is repeated B times, ``(B, 1)`` becomes ``(B,)``, and anything
    else must already be ``(B,)`` (``ValueError`` otherwise). A tensor ``t`` is not read back, so no
    GPU sync; a Python number must be finite.
    """
    if x.ndim < 1:
        raise ValueError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
    B = x.shape[0]
    if isinstance(t, numbers.Real):
        t = check_float("t", t)
    t = torch.as_tensor(t, dtype=x.dtype if dtype is None else dtype, device=x.device)
    if t.ndim == 0:
        return t.expand(B)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1 or t.shape[0] != B:
        raise ValueError(f"t must be a scalar or have shape ({B},) to match x {tuple(x.shape)}, got {tuple(t.shape)}")
    return t


# --------------------------------------------------------------------------- notebook parameters
_KIND_WORDS = {int: "an integer", float: "a number", bool: "True or False", str: "a string"}


def _param_range_text(kind: type, min: float | None, max: float | None, min_exclusive: bool) -> str:
    word = _KIND_WORDS.get(kind, kind.__name__)
    if kind in (bool, str) or (min is None and max is None):
        return word
    if min is not None and max is not None:
        return f"{word} in {'(' if min_exclusive else '['}{min}, {max}]"
    if min is not None:
        return f"{word} {'>' if min_exclusive else '>='} {min}"
    return f"{word} <= {max}"


def check_param(name: str, value: Any, kind: type = int, min: float | None = 1, max: float | None = None,
                min_exclusive: bool = False, none: str | None = None) -> Any:
    """Check a notebook parameter (as papermill passes it) and return it, else one ``ValueError``
    naming the parameter, the valid range and what was given.

    ``kind=int`` refuses ``True``/``False`` and floats (``2.5``, ``3.0``: a silent ``int()`` would
    hide the mistake); ``kind=float`` takes ints and finite floats, not bools; ``kind=bool`` only
    ``True``/``False`` (papermill's ``-p retrain yes`` arrives as the string ``"yes"``). ``none``
    says what ``None`` would have meant, for the message (e.g. "the profile default").
    """
    or_none = f", or None for {none}" if none else ""
    expected = _param_range_text(kind, min, max, min_exclusive)

    def bad() -> ValueError:
        return ValueError(f"parameter {name} must be {expected}{or_none}; got {value!r}")

    if kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise bad()
        return bool(value)
    if kind is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if isinstance(value, (bool, np.bool_)):
        raise bad()
    if kind is int:
        if not isinstance(value, numbers.Integral):
            raise bad()
        value = int(value)
    elif kind is float:
        if not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise bad()
    else:
        raise ValueError(f"check_param: unsupported kind {kind!r}; valid choices: int, float, bool, str")
    if min is not None and (value <= min if min_exclusive else value < min):
        raise bad()
    if max is not None and value > max:
        raise bad()
    return value
