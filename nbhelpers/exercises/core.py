"""The machinery of the student edition: cases, checks, reports, the fallback, the registry.

Each notebook's exercises live in their own module of this package (``flows`` for 01–03, ...) and
:func:`register` them here; :mod:`nbhelpers.exercises` imports them all.

A check survives whatever a learner's function does. Each case's ``expected()`` is computed first, then the
function runs in a daemon worker thread under a time limit (:data:`CHECK_TIMEOUT`, ``$NBHELPERS_CHECK_TIMEOUT``);
the tensors its inputs hold are snapshotted before the call and compared after it, so a function that writes into
its inputs is named and the inputs are put back for the next case. What comes back is judged by type, dtype,
device and shape first, in those words and with a short hint of that kind; the case's maths hint is shown only
when all of those are right and the numbers are off. An error raised by the function is reported in one line
(with the line of the learner's code where it happened), never as a traceback; a function that loops is stopped,
and a KeyboardInterrupt or any failure of the check itself still ends in :func:`use` returning the library's
version under a banner that says why.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import json
import math
import os
import queue
import re
import sysconfig
import textwrap
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..devices import exact
from ..paths import GaussianPath

__all__ = ["Case", "CaseResult", "CheckReport", "Exercise", "EXERCISES", "check", "use", "exercises_in",
           "register", "gen", "randn", "se_var", "path_of", "NOT_IMPLEMENTED", "NOT_RUN", "TIMED_OUT",
           "INTERRUPTED", "CHECK_TIMEOUT", "TIMEOUT_ENV", "time_limit", "standing_in", "comparison_note",
           "GRADE_LOG_ENV", "cases_passed"]

NOT_IMPLEMENTED = "not implemented yet"
TIMED_OUT = "timed out"
INTERRUPTED = "interrupted"
NOT_RUN = "not run"

CHECK_TIMEOUT: float = 10.0
"""Seconds one case may take before the check stops it (``$NBHELPERS_CHECK_TIMEOUT`` overrides; 0 or ``off``:
no limit). Every case of the library's own implementations runs in well under 0.1 s."""

TIMEOUT_ENV = "NBHELPERS_CHECK_TIMEOUT"

GRADE_LOG_ENV = "NBHELPERS_GRADE_LOG"
"""Where set (a file's path), every :func:`use` appends its report's :meth:`CheckReport.record` to that file as
one JSON line (``python -m tools.grade`` reads them)."""

EXERCISES: dict[str, "Exercise"] = {}

@dataclass(frozen=True)
class Case:
    """One check: ``got(fn)`` runs the student's function (or class) on this case's inputs;
    ``expected()`` is the closed form or the library's answer; ``hint`` is shown when they differ."""

    name: str
    got: Callable[[Any], Any]
    expected: Callable[[], Any]
    hint: str
    atol: float = 1e-5
    rtol: float = 1e-5


@dataclass(frozen=True)
class Exercise:
    """A teaching function of a notebook: its task, its cases and the library's equivalent (the fallback)."""

    name: str
    notebook: str
    task: str
    reference: Callable[[], Any]
    reference_name: str
    cases: Callable[[], list[Case]]


@dataclass
class CaseResult:
    case: str
    status: str  # "pass" | "fail" | NOT_IMPLEMENTED | TIMED_OUT | INTERRUPTED | NOT_RUN
    expected: str = ""
    got: str = ""
    hint: str = ""
    kind: str = ""  # what went wrong: type, dtype, device, shape, index, grad, signature, error, mutation, values, …

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class CheckReport:
    """The outcome of :func:`check`; ``str()`` is the message printed in the notebook. ``stopped`` says why the
    check ended before its last case (a case ran past the time limit, an interrupt, a failure of the check)."""

    exercise: Exercise
    results: list[CaseResult] = field(default_factory=list)
    stopped: str = ""

    @property
    def not_implemented(self) -> bool:
        return bool(self.results) and all(r.status == NOT_IMPLEMENTED for r in self.results)

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.stopped and all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def __str__(self) -> str:
        ex, n = self.exercise, len(self.results)
        if self.not_implemented:
            return f"{ex.name}: {NOT_IMPLEMENTED} — {ex.task}"
        if not self.results:
            return f"{ex.name}: {self.stopped}"
        ok = sum(r.passed for r in self.results)
        lines = [f"{ex.name}: {ok} of {n} cases pass" + (" ✓" if ok == n and not self.stopped else "")]
        for i, r in enumerate(self.results, 1):
            mark = "✓" if r.passed else "–" if r.status == NOT_RUN else "✗"
            note = f" — {r.status}" if r.status in (NOT_IMPLEMENTED, NOT_RUN) else ""
            lines.append(f"  {mark} case {i}/{n}: {r.case}{note}")
            if not r.passed and r.status != NOT_RUN:
                if r.expected:
                    lines.append(f"      expected: {r.expected}")
                if r.got:
                    lines.append(f"      got:      {r.got}")
                if r.hint:
                    lines.append(f"      hint:     {r.hint}")
        if self.stopped:
            rest = any(r.status == NOT_RUN for r in self.results)
            lines.append(f"  checking stopped: {self.stopped}" + ("; the cases after it were not run" if rest else ""))
        return "\n".join(lines)

    @property
    def status(self) -> str:
        """The outcome in one word for a grade book: "pass", "fail", NOT_IMPLEMENTED, TIMED_OUT, INTERRUPTED, or
        "check failed" when the check itself could not finish."""
        if self.passed:
            return "pass"
        if self.not_implemented:
            return NOT_IMPLEMENTED
        for special in (TIMED_OUT, INTERRUPTED):
            if any(r.status == special for r in self.results):
                return special
        return "check failed" if self.stopped else "fail"

    def record(self) -> dict[str, Any]:
        """The report as plain JSON-ready data: the exercise, :attr:`status`, cases ``passed`` of ``total``, why it
        stopped, and each case's status with expected, got and hint."""
        return {"exercise": self.exercise.name, "notebook": self.exercise.notebook, "status": self.status,
                "passed": sum(r.passed for r in self.results), "total": len(self.results), "stopped": self.stopped,
                "cases": [{"case": r.case, "status": r.status, "expected": r.expected, "got": r.got, "hint": r.hint,
                           "kind": r.kind} for r in self.results]}

    def banner(self) -> str:
        """The box :func:`use` prints when the later cells run on the library's implementation."""
        ex = self.exercise
        why = (NOT_IMPLEMENTED if self.not_implemented else self.stopped or
               f"{len(self.failures)} of {len(self.results)} cases fail")
        text = (f"{ex.name}: {why}. The cells below use the library's {ex.reference_name} instead, "
                f"so they still run; fill in {ex.name} and re-run its cell and this one.")
        body = textwrap.wrap(text, 96)
        width = max(map(len, body)) + 2
        return "\n".join(["┌" + "─" * width, *(f"│ {line}" for line in body), "└" + "─" * width])


# --------------------------------------------------------------------------- the time limit
def time_limit() -> float | None:
    """Seconds a case may take: ``$NBHELPERS_CHECK_TIMEOUT`` when set (0, ``off`` or ``none``: no limit),
    else :data:`CHECK_TIMEOUT`. An unreadable value warns and keeps the default (a check never fails for it)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    value: float | None = CHECK_TIMEOUT
    if raw:
        try:
            value = None if raw.lower() in ("off", "none", "inf") else float(raw)
        except ValueError:
            warnings.warn(f"${TIMEOUT_ENV} must be a number of seconds (0 or 'off': no limit), got {raw!r}; "
                          f"using {CHECK_TIMEOUT:g} s", stacklevel=2)
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


class _Stop(BaseException):
    """Raised inside the worker thread to end a learner's call that ran past its time limit (a BaseException, so
    an ``except Exception`` in their loop does not swallow it)."""


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    stuck: bool = False  # still running after it was told to stop: inside one long C call
    interrupted: bool = False


def _stop(worker: threading.Thread, grace: float = 0.3) -> bool:
    """Ask ``worker`` to stop by raising :class:`_Stop` inside it; True once it has ended.

    The exception is delivered at the thread's next Python bytecode, so a pure-Python loop stops at once; a thread
    stuck inside one long C call (time.sleep, a huge tensor operation) stops only when that call returns — it is a
    daemon thread, so it never keeps the kernel or the interpreter alive."""
    deadline = time.monotonic() + grace
    while worker.is_alive() and time.monotonic() < deadline:
        try:  # raised at the thread's next bytecode: a call stuck in one long C call stops only when it returns
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(_Stop))
        except AttributeError:  # not CPython: the thread is left to finish on its own
            break
        worker.join(0.02)
    return not worker.is_alive()


def _default_device() -> torch.device | None:
    get = getattr(torch, "get_default_device", None)  # torch >= 2.3
    return get() if get is not None else None


class _Job:
    """One call to run in the worker, in the caller's thread-local torch state: grad mode, the default device
    (``torch.set_default_device``) and the current CUDA device are kept per thread, so the worker takes on the
    caller's for the call (and only for it) to compute as the caller's thread would."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.grad = torch.is_grad_enabled()
        self.device = _default_device()
        self.cuda = torch.cuda.current_device() if torch.cuda.is_initialized() else None
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(torch.set_grad_enabled(self.grad))
                if self.device is not None and self.device != _default_device():
                    stack.enter_context(self.device)
                if self.cuda is not None:
                    stack.enter_context(torch.cuda.device(self.cuda))
                self.value = self.call()
        except BaseException as exc:  # noqa: BLE001 — the learner's error is the check's finding
            self.error = exc
        finally:
            self.done.set()


class _Worker:
    """A daemon thread that runs the learners' calls, kept from case to case and check to check: torch sets up
    per-thread state (and OpenMP a team of threads) the first time a thread computes, which a fresh thread per
    case would pay every time. A worker told to stop is retired, and the next call starts a new one."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.retired = False
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._serve, name="nbhelpers-exercise-check", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            while not self.retired:
                job = self.jobs.get()
                if job is None:
                    return
                job.run()
        except BaseException:  # noqa: BLE001 — a stop request that landed between jobs: this worker is done
            pass

    def retire(self) -> None:
        self.retired = True
        self.jobs.put(None)  # wakes it if it is waiting for a job


_WORKER: _Worker | None = None
_WORKER_LOCK = threading.Lock()


def _call_with_limit(call: Callable[[], Any], limit: float | None) -> _Outcome:
    """Run ``call()`` in the worker thread and wait at most ``limit`` seconds for it (None: no limit).

    A thread rather than a signal: SIGALRM exists only in the main thread and not on every platform, while this
    works the same in Jupyter, Colab, headless papermill and any thread, on Linux and macOS. The worker computes with
    torch as the caller's thread would and sets no global state. On a timeout, or a KeyboardInterrupt (the
    notebook's stop button) while waiting, the worker is stopped and retired."""
    global _WORKER
    job = _Job(call)
    shared = _WORKER_LOCK.acquire(blocking=False)  # a nested or concurrent check gets a worker of its own
    worker: _Worker | None = None
    try:
        if shared:
            if _WORKER is None or _WORKER.retired or _WORKER.pid != os.getpid() or not _WORKER.thread.is_alive():
                _WORKER = _Worker()
            worker = _WORKER
        else:
            worker = _Worker()
        worker.jobs.put(job)
        deadline = None if limit is None else time.monotonic() + limit
        while not job.done.is_set():
            # short waits: a KeyboardInterrupt that reached another thread is raised here within 0.1 s
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                worker.retire()
                return _Outcome(timed_out=True, stuck=not _stop(worker.thread))
            job.done.wait(left)
    except KeyboardInterrupt:
        if worker is not None and not job.done.is_set():
            worker.retire()
            _stop(worker.thread)
        return _Outcome(interrupted=True)
    finally:
        if worker is not None and worker is not _WORKER:
            worker.retire()
        if shared:
            _WORKER_LOCK.release()
    if isinstance(job.error, KeyboardInterrupt):
        return _Outcome(interrupted=True)
    return _Outcome(value=job.value, error=job.error)


# --------------------------------------------------------------------------- the learner's function, observed
_UNSET = object()


class _Probe:
    """Stands in for a learner's function during one case: records its first call's arguments by parameter name
    and whether an error came from inside it or from the case working on what it returned. A class (an exercise
    that subclasses the library's) is passed through as it is."""

    def __init__(self, fn: Any) -> None:
        self.callable = fn
        self.active = False
        self.args: list[tuple[str, Any]] = []
        self.raised_inside = False
        self.output: Any = _UNSET
        if not (inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, functools.partial)):
            return
        try:
            sig: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None

        def probe(*args: Any, **kwargs: Any) -> Any:
            if not self.args:
                self._record(sig, args, kwargs)
            try:
                out = fn(*args, **kwargs)
            except BaseException:
                self.raised_inside = True
                raise
            self.output = out
            return out

        functools.update_wrapper(probe, fn)
        self.callable, self.active = probe, True

    def _record(self, sig: inspect.Signature | None, args: tuple, kwargs: dict) -> None:
        try:
            bound = sig.bind(*args, **kwargs).arguments if sig is not None else None
        except TypeError:
            bound = None
        if bound is None:
            bound = {**{f"argument {i}": a for i, a in enumerate(args, 1)}, **kwargs}
        self.args = list(bound.items())

    def name_of(self, obj: Any) -> str | None:
        """The parameter name under which ``obj`` was passed to the learner's function."""
        return next((name for name, v in self.args if v is obj), None)

    def inputs(self) -> str:
        """The shapes of the tensors (and the numbers) it was given: ``x0 (6, 2), k (6,), eps (6, 2)``."""
        parts = []
        for name, v in self.args:
            if isinstance(v, Tensor):
                parts.append(f"{name} {tuple(v.shape)}")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                parts.append(f"{name} = {v:g}")
        return ", ".join(parts[:6])


# --------------------------------------------------------------------------- inputs kept as they were
def _same(a: Tensor, b: Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if torch.equal(a, b):
        return True
    if a.is_floating_point() or a.is_complex():  # nan == nan for this purpose
        return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
    return False


class _Snapshot:
    """Copies of every tensor a case's ``got`` can hand the learner's function: the tensors in its closure cells,
    defaults and the nbhelpers objects among the globals it names, one level into lists, tuples and dicts, two into
    objects (``ddpm.alphas_cumprod``, a module's parameters and buffers) and into the helper functions it closes
    over. :meth:`restore` names what changed and puts it back, so a function that writes into its input fails its
    case and the later cases still see the original inputs."""

    MAX_TENSORS = 256
    MAX_COPY = 1 << 22  # elements: a larger input (a data set) is watched through its version counter, not copied

    def __init__(self, got: Callable[..., Any]) -> None:
        self.tensors: list[tuple[str, Any, Tensor, Tensor | int]] = []  # (label, root, tensor, copy or version)
        self.slots: list[tuple[str, Any, Any, str, Any]] = []  # (label, root, owner, attribute, tensor held)
        self._seen: set[int] = set()
        try:
            for name, value in self._roots(got, 2, set()):
                self._walk(value, name, value, 2)
        except Exception:  # noqa: BLE001 — a snapshot is a courtesy: never the reason a check fails
            pass

    @staticmethod
    def _roots(func: Any, depth: int, seen: set[int]) -> list[tuple[str, Any]]:
        code = getattr(func, "__code__", None)
        if code is None or id(func) in seen:
            return []
        seen.add(id(func))
        out: list[tuple[str, Any]] = []
        for name, cell in zip(code.co_freevars, func.__closure__ or ()):
            try:
                out.append((name, cell.cell_contents))
            except ValueError:  # an empty cell
                continue
        defaults = func.__defaults__ or ()
        names = code.co_varnames[:code.co_argcount]
        out += list(zip(names[len(names) - len(defaults):], defaults))
        out += list((func.__kwdefaults__ or {}).items())
        for name in code.co_names:  # module-level inputs such as a shared SDE object
            v = func.__globals__.get(name)
            if isinstance(v, Tensor) or (str(type(v).__module__).startswith("nbhelpers") and not isinstance(v, type)
                                         and not inspect.isroutine(v) and not inspect.ismodule(v)):
                out.append((name, v))
        if depth > 0:  # helper functions of the case (from_two, first_ddim_step, …) and their inputs
            for _, v in list(out):
                if inspect.isfunction(v):
                    out += _Snapshot._roots(v, depth - 1, seen)
        return out

    def _walk(self, v: Any, label: str, root: Any, depth: int) -> None:
        if len(self.tensors) >= self.MAX_TENSORS:
            return
        if isinstance(v, Tensor):
            if id(v) not in self._seen and v.layout == torch.strided and v.device.type != "meta" \
                    and not v.is_inference():
                self._seen.add(id(v))
                self.tensors.append((label, root, v, v.detach().clone() if v.numel() <= self.MAX_COPY else v._version))
            return
        if depth <= 0 or inspect.isfunction(v) or inspect.ismodule(v) or isinstance(v, type) or id(v) in self._seen:
            return
        self._seen.add(id(v))
        if isinstance(v, (list, tuple)):
            for i, x in enumerate(v[:64]):
                self._walk(x, f"{label}[{i}]", root, depth - 1)
        elif isinstance(v, dict):
            for k, x in list(v.items())[:64]:
                self._walk(x, f"{label}[{k!r}]", root, depth - 1)
        elif isinstance(v, nn.Module):
            for n, t in v.named_parameters():
                self._walk(t, f"{label}.{n}", root, 0)
            for n, t in v.named_buffers():
                if not n.endswith(("running_mean", "running_var", "num_batches_tracked")):  # batch norm updates these
                    self._walk(t, f"{label}.{n}", root, 0)
            for n, x in list(vars(v).items()):
                if not n.startswith("_"):
                    self._walk(x, f"{label}.{n}", root, depth - 1)
        elif hasattr(v, "__dict__"):
            for n, x in list(vars(v).items())[:64]:
                if isinstance(x, Tensor):
                    self.slots.append((f"{label}.{n}", root, v, n, x))
                self._walk(x, f"{label}.{n}", root, depth - 1)

    def restore(self) -> list[tuple[str, Any, str]]:
        """``(label, root, how)`` for each input that changed ("modified" in place or "replaced"), put back."""
        changed: list[tuple[str, Any, str]] = []
        for label, root, owner, attr, held in self.slots:
            try:
                if vars(owner).get(attr, held) is not held:
                    changed.append((label, root, "replaced"))
                    setattr(owner, attr, held)
            except Exception:  # noqa: BLE001
                pass
        for label, root, t, copy in self.tensors:
            try:
                if isinstance(copy, int):  # too large to copy: an in-place write is seen, not undone
                    if t._version != copy:
                        changed.append((label, root, "modified"))
                    continue
                if not _same(t.detach(), copy):
                    changed.append((label, root, "modified"))
                    with torch.no_grad():
                        if t.shape != copy.shape:
                            t.resize_(copy.shape)
                        t.copy_(copy)
            except Exception:  # noqa: BLE001 — e.g. an expanded view that cannot be written back
                pass
        return changed


def _copied(v: Any) -> Any:
    """``expected()`` kept apart from the inputs: a function that writes into a shared tensor cannot move it."""
    if isinstance(v, Tensor):
        return v.clone()
    if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
        return type(v)(_copied(x) for x in v)
    return v


# --------------------------------------------------------------------------- comparing and formatting
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


def _fmt(v: Any, depth: int = 1) -> str:
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
            items = ", ".join(_fmt(x, depth - 1) for x in v[:3]) + (", …" if len(v) > 3 else "")
            return f"a {len(v)}-element {type(v).__name__} ({items})"
        if isinstance(v, (list, tuple, dict, set)):
            return f"a {type(v).__name__} of {len(v)} items"
        if v is None:
            return "None"
        return _short(repr(v), 60)
    except Exception:  # noqa: BLE001 — a learner's object whose repr fails
        return f"a {_type_name(v)}"


_TYPE, _DTYPE, _DEVICE, _SHAPE, _GRAD, _VALUES = "type", "dtype", "device", "shape", "grad", "values"


def _diagnose(got: Any, expected: Any, atol: float, rtol: float) -> tuple[str, str] | None:
    """None when ``got`` matches ``expected``; otherwise ``(kind, what differs)``, the kinds checked in the order
    type, dtype, device, shape (then gradient, finiteness and values)."""
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            what = _type_name(got)
            extra = " (a missing return?)" if got is None else ""
            return _TYPE, (f"a tensor was expected, got {type(got).__name__}: return a torch.Tensor, not "
                           f"{'a ' if got is not None else ''}{what}{extra}")
        if got.device.type == "meta":
            return _DEVICE, "a tensor on the meta device, which holds no values"
        if got.is_complex() and not expected.is_complex():
            return _DTYPE, f"a complex tensor ({got.dtype}); the task's values are real"
        if (got.is_floating_point() != expected.is_floating_point()  # float labels, integer noise …
                or got.dtype == torch.float64 and expected.dtype in (torch.float32, torch.float16, torch.bfloat16)):
            # later cells mix it with the library's tensors, and float64 or float labels break them there
            # (a float64 closed form accepts float32: the library computes in the inputs' dtype)
            return _DTYPE, (f"dtype {str(got.dtype).replace('torch.', '')} instead of "
                            f"{str(expected.dtype).replace('torch.', '')}; give the result its input's dtype, e.g. "
                            f"buffer.to(x) for a float64 table")
        if got.device != expected.device:
            return _DEVICE, f"on {got.device} instead of {expected.device} (where its inputs were)"
        if tuple(got.shape) != tuple(expected.shape):
            return _SHAPE, f"shape {tuple(got.shape)} where the case expects {tuple(expected.shape)}"
        if expected.requires_grad and not got.requires_grad:
            return _GRAD, ("no gradient reaches the network through it (detached: no .detach(), .item(), .data or "
                           "torch.no_grad() in a loss)")
        g, e = got.detach().double().cpu(), expected.detach().double().cpu()
        if not torch.isfinite(g).all():
            return _VALUES, "it holds inf or nan"
        if torch.allclose(g, e, atol=atol, rtol=rtol):
            return None
        return _VALUES, f"max |got − expected| = {(g - e).abs().max().item():.3g}"
    if isinstance(expected, tuple):
        try:
            return None if tuple(got) == expected else (_SHAPE, "a different shape")
        except TypeError:
            return _TYPE, f"a tuple was expected, got {_type_name(got)}"
    if isinstance(got, Tensor) and got.numel() != 1:
        return _SHAPE, f"a single number was expected, got a tensor of shape {tuple(got.shape)}"
    try:
        g = float(got)
    except (TypeError, ValueError, RuntimeError):
        return _TYPE, f"a number was expected, got {_type_name(got)}" + (" (a missing return?)" if got is None else "")
    if math.isfinite(g) and abs(g - float(expected)) <= atol + rtol * abs(float(expected)):
        return None
    return _VALUES, (f"|got − expected| = {abs(g - float(expected)):.3g}, "
                     f"allowed {atol + rtol * abs(float(expected)):.3g}")


def _compare(got: Any, expected: Any, atol: float, rtol: float) -> str | None:
    """None when ``got`` matches ``expected``; otherwise what differs (shape, type or values)."""
    found = _diagnose(got, expected, atol, rtol)
    return None if found is None else found[1]


# the short hint of a failure that is not about the numbers (the case's own hint is about the maths)
_HINTS = {
    _TYPE: "return what the task asks for, as torch tensors computed with torch operations on the inputs (no "
           ".numpy(), .tolist(), .item() or numpy functions)",
    _DTYPE: "keep the inputs' dtype: make new tensors with dtype=x.dtype, and bring float64 buffers over with .to(x)",
    _DEVICE: "keep everything on the inputs' device: new tensors with device=x.device, buffers with .to(x)",
    _SHAPE: "print the shapes (x.shape) of the inputs and of your result: a per-sample (B,) tensor needs reshaping "
            "to (B, 1, …, 1) to broadcast over x (nb.paths.expand_time), and sum or average only where the task "
            "says",
    "index": "an index past the end: a buffer of T steps has entries 0 … T − 1, so step k is entry k − 1",
    _GRAD: "build the result from the network's output with torch operations only: no .detach(), .item(), .data "
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


def _error_kind(err: BaseException) -> str:
    """type, dtype, device, shape, index or signature for the errors those mistakes raise, else error."""
    text = str(err)
    if isinstance(err, TypeError):
        if _CALL_ERROR.search(text):
            return "signature"
        return _TYPE if re.search(r"tensor|ndarray|numpy|must return", text, re.I) else "error"
    if isinstance(err, (RuntimeError, ValueError, IndexError)):
        if _DEVICE_ERROR.search(text):
            return _DEVICE
        if _DTYPE_ERROR.search(text):
            return _DTYPE
        if _INPLACE_ERROR.search(text):
            return "inplace"
        if isinstance(err, IndexError) and "out of bounds" in text:
            return "index"
        if _SHAPE_ERROR.search(text):
            return _SHAPE
    return "error"


def _library_dirs() -> tuple[str, ...]:
    paths = {str(Path(__file__).resolve().parents[1]), os.path.dirname(os.path.abspath(torch.__file__))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with_key = sysconfig.get_paths().get(key)
        if with_key:
            paths.add(os.path.abspath(with_key))
    return tuple(p + os.sep for p in paths)


_LIBRARY = _library_dirs()


def _where(err: BaseException) -> str:
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


def _one_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return _short(f"{type(err).__name__}: {text}" if text else type(err).__name__, 200)


def _raised(case: Case, expected: Any, err: BaseException, probe: _Probe, signature: str) -> CaseResult:
    """A case whose call raised: the error in one line, where it happened, and a hint of its kind."""
    kind = _error_kind(err)
    after = probe.active and not probe.raised_inside and probe.output is not _UNSET
    if after:  # the learner's function returned; the case could not use what came back
        got = f"it returned {_fmt(probe.output)}, which the case cannot use: {_one_line(err)}"
        if kind == "error":
            kind = _TYPE
    else:
        got = f"it raised {_one_line(err)}"
        where = _where(err)
        if where:
            got += f" ({where})"
    if kind in (_SHAPE, "index", _TYPE, _DTYPE, _DEVICE) and probe.inputs():
        got += f"; its inputs: {probe.inputs()}"
    label = {_SHAPE: "a shape problem", "index": "an indexing problem", _TYPE: "a type problem", "inplace":
             "an in-place operation on an input",
             _DTYPE: "a dtype problem", _DEVICE: "a device problem"}.get(kind)
    if label:
        got = f"{label}: {got}"
    hint = (f"keep the parameters the notebook gives: {signature}" if kind == "signature" and signature
            else _HINTS.get(kind, _HINTS["error"]))
    return CaseResult(case.name, "fail", expected=_fmt(expected), got=got, hint=hint, kind=kind)


def _changed_inputs(changed: list[tuple[str, Any, str]], probe: _Probe) -> tuple[str, str]:
    """``your function modified x0 in place; work on a copy (e.g. x0 = x0.clone())`` and its hint, each input
    named as the learner's function calls it where it was one of its arguments."""
    names: list[str] = []
    how = "modified"
    for label, root, what in changed:
        head, sep, rest = label.partition(".")
        own = probe.name_of(root) if probe.active else None
        name = (own or head) + sep + rest if not head.endswith("]") else (own or label)
        if name not in names:
            names.append(name)
            how = what if len(names) == 1 else how
    shown = " and ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
    first = names[0]
    copy = f"{first} = {first}.clone()" if first.isidentifier() else f"v = {first}.clone()"
    if how == "replaced":
        return (f"your function replaced {shown}, an attribute of its input; leave the inputs as they are and work "
                f"on a copy (e.g. {copy})"), _HINTS["replaced"]
    return f"your function modified {shown} in place; work on a copy (e.g. {copy})", _HINTS["mutation"]


def _run_case(case: Case, fn: Any, limit: float | None | object = _UNSET, signature: str = "") -> CaseResult:
    """Run one case on ``fn``: ``expected()`` first (the learner's function cannot move it), then the call in a
    worker thread under ``limit`` seconds (default :func:`time_limit`), the inputs snapshotted around it."""
    limit = time_limit() if limit is _UNSET else limit
    expected = _copied(case.expected())
    snapshot = _Snapshot(case.got)
    probe = _Probe(fn)
    out = _call_with_limit(lambda: case.got(probe.callable), limit)  # type: ignore[arg-type]
    changed = snapshot.restore()
    if out.interrupted:
        return CaseResult(case.name, INTERRUPTED, got="interrupted (KeyboardInterrupt) before it returned",
                          kind="interrupted")
    if out.timed_out:
        got = f"it did not return within {limit:g} s — an infinite loop?"
        got += (" It is inside one long call (time.sleep, a huge tensor operation), far too slow, and stops only "
                "when that call returns" if out.stuck else " It was stopped")
        return CaseResult(case.name, TIMED_OUT, got=got, hint=_HINTS["timeout"], kind="timeout")
    if isinstance(out.error, NotImplementedError):
        return CaseResult(case.name, NOT_IMPLEMENTED, hint=str(out.error) or case.hint)
    if out.error is not None:  # a learner's error is a finding of the check, not a crash of the notebook
        return _raised(case, expected, out.error, probe, signature)
    if changed:
        got, hint = _changed_inputs(changed, probe)
        return CaseResult(case.name, "fail", expected=_fmt(expected), got=got, hint=hint, kind="mutation")
    found = _diagnose(out.value, expected, case.atol, case.rtol)
    if found is None:
        return CaseResult(case.name, "pass")
    kind, diff = found
    hint = case.hint if kind == _VALUES else _HINTS[kind]  # the maths hint only when the numbers are what's wrong
    return CaseResult(case.name, "fail", expected=_fmt(expected), got=f"{_fmt(out.value)} ({diff})", hint=hint,
                      kind=kind)


def _exercise(name: str) -> Exercise:
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; valid choices: {', '.join(EXERCISES)}")
    return EXERCISES[name]


def _signature(ex: Exercise) -> str:
    """``def em_step(sde, x, t, h, generator=None)``: the reference's parameters, without annotations."""
    try:
        ref = ex.reference()
        if not inspect.isfunction(ref):
            return ""
        sig = inspect.signature(ref)
        params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
        return f"def {ex.name}{sig.replace(parameters=params, return_annotation=inspect.Signature.empty)}"
    except Exception:  # noqa: BLE001
        return ""


@exact()  # the cases' inputs and closed forms are float64 on the host
def check(name: str, fn: Any) -> CheckReport:
    """Run exercise ``name``'s cases on ``fn`` (the student's function or class) and report each one.

    It never raises for what ``fn`` does: errors, wrong types, loops (stopped after :func:`time_limit` seconds,
    the remaining cases then not run), writes into the inputs and a KeyboardInterrupt are all findings of the
    report; a failure of the check itself ends it with :attr:`CheckReport.stopped` saying so."""
    ex = _exercise(name)
    report = CheckReport(ex)
    cases: list[Case] = []
    try:
        limit = time_limit()
        cases = list(ex.cases())
        signature = _signature(ex)
        for i, case in enumerate(cases, 1):
            r = _run_case(case, fn, limit, signature)
            report.results.append(r)
            if r.status == TIMED_OUT:
                report.stopped = f"case {i} did not return within {limit:g} s (an infinite loop?)"
            elif r.status == INTERRUPTED:
                report.stopped = f"the check was interrupted in case {i} (KeyboardInterrupt)"
            if report.stopped:
                break
    except KeyboardInterrupt:
        report.stopped = f"the check was interrupted in case {len(report.results) + 1} (KeyboardInterrupt)"
    except Exception as exc:  # noqa: BLE001 — a bug of the check must not take the notebook down
        report.stopped = f"the check itself failed ({_one_line(exc)}), a bug of nbhelpers rather than of your code"
    report.results += [CaseResult(c.name, NOT_RUN) for c in cases[len(report.results):]]
    return report


def use(name: str, fn: Any, quiet: bool = False) -> Any:
    """Check ``fn`` and return what the later cells should call: ``fn`` once every case passes, otherwise the
    library's equivalent (the report and a banner say so). Whatever ``fn`` does — raise, loop, write into its
    inputs, be interrupted — the caller gets one of the two, never a traceback from the check."""
    ex = _exercise(name)
    try:
        report = check(name, fn)
    except (Exception, KeyboardInterrupt) as exc:  # check() catches its own; this is the last net
        report = CheckReport(ex, stopped=f"the check could not run ({_one_line(exc)})")
    if not quiet:
        _say(str(report))
    _STANDING_IN[name] = not report.passed
    _PASSED[name] = sum(r.passed for r in report.results)
    _log(report)
    if report.passed:
        return fn
    if not quiet:
        _say(report.banner())
    return ex.reference()


_STANDING_IN: dict[str, bool] = {}
"""Exercise name → whether its last :func:`use` handed the later cells the library's version."""


_PASSED: dict[str, int] = {}
"""Exercise name → how many of its cases passed in its last :func:`use`."""


def _log(report: CheckReport) -> None:
    """Append the report's record to ``$NBHELPERS_GRADE_LOG`` where it is set; a log that cannot be written warns
    and never stops the notebook."""
    path = os.environ.get(GRADE_LOG_ENV, "").strip()
    if not path:
        return
    try:
        line = json.dumps(report.record(), ensure_ascii=False)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except Exception as exc:  # noqa: BLE001 — grading is a courtesy to the notebook, never a reason it stops
        warnings.warn(f"could not append to ${GRADE_LOG_ENV} ({path}): {_one_line(exc)}", stacklevel=3)


def cases_passed(name: str) -> int:
    """How many cases of exercise ``name`` passed in its last :func:`use` in this kernel (an nbgrader grade cell
    shows it as partial credit out of the number of cases)."""
    _exercise(name)
    if name not in _PASSED:
        raise ValueError(f"nb.exercises.use({name!r}, ...) has not run in this kernel yet: run the cell that checks "
                         f"{name} first")
    return _PASSED[name]


def standing_in(name: str) -> bool:
    """Whether the library's version stands in for exercise ``name``: its last :func:`use` returned the library's
    implementation because the check did not pass. A cell that compares the learner's function with the library
    asks this, so that it can say when it is comparing the library with itself."""
    _exercise(name)
    if name not in _STANDING_IN:
        raise ValueError(f"nb.exercises.use({name!r}, ...) has not run in this kernel yet: run the cell that checks "
                         f"{name} first")
    return _STANDING_IN[name]


def comparison_note(name: str, *needs: str) -> str:
    """What a cell comparing exercise ``name`` with the library prints beside the difference: while the library's
    version stands in for ``name``, that this is comparing the library with itself; while ``name`` is the learner's
    but calls the library's version of an exercise in ``needs``, which one; otherwise ``""``."""
    if standing_in(name):
        return (f"(the library's {_exercise(name).reference_name} stands in for your {name} until its check passes, "
                "so this is comparing the library with itself)")
    behind = [n for n in needs if standing_in(n)]
    if not behind:
        return ""
    refs = " and ".join(_exercise(n).reference_name for n in behind)
    return (f"(your {name}, but it calls the library's {refs} in place of your {' and '.join(behind)}, "
            f"whose check does not pass yet)")


def _say(text: str) -> None:
    """Print, falling back to ASCII where the output cannot take the report's ✓, ✗ and box lines."""
    try:
        print(text)
    except UnicodeEncodeError:
        print(text.encode("ascii", "replace").decode("ascii"))


def exercises_in(notebook: str) -> list[str]:
    """The exercises of one notebook (``"01_sdes"``), in order."""
    return [n for n, ex in EXERCISES.items() if ex.notebook == notebook]




def register(*exercises: Exercise) -> None:
    """Add a notebook's exercises to :data:`EXERCISES` (in notebook order; a name may be used once)."""
    for ex in exercises:
        if ex.name in EXERCISES:
            raise ValueError(f"exercise {ex.name!r} is registered twice ({EXERCISES[ex.name].notebook}, {ex.notebook})")
        EXERCISES[ex.name] = ex


# --------------------------------------------------------------------------- shared inputs
def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def se_var(n: int) -> float:
    """Relative standard error of a sample variance of n Gaussian draws."""
    return math.sqrt(2 / (n - 1))


_PATHS: dict[int, GaussianPath] = {}


def path_of(schedule: Any) -> GaussianPath:
    """One :class:`nbhelpers.paths.GaussianPath` per schedule object (the references take a schedule, the library
    a path)."""
    key = id(schedule)
    if key not in _PATHS or _PATHS[key].schedule is not schedule:
        _PATHS[key] = GaussianPath(schedule)
    return _PATHS[key]
