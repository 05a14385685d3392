"""The time limit of one case: a learner's call runs in a daemon worker thread, is waited for at most
:func:`time_limit` seconds, and is stopped (or left to a long C call) when it runs past it or the notebook is
interrupted; the caller gets an :class:`Outcome` (the value, the error raised, or that it timed out or was
interrupted) and never has to catch what the learner's code raised."""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

CHECK_TIMEOUT: float = 10.0
"""Seconds one case may take before the check stops it (``$NBHELPERS_CHECK_TIMEOUT`` overrides; 0 or ``off``:
no limit). Every case of the library's own implementations runs in well under 0.1 s."""

TIMEOUT_ENV = "NBHELPERS_CHECK_TIMEOUT"


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
class Outcome:
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
    """A daemon thread that runs the learners' calls, kept from case to case of one check (:func:`worker_scope`):
    torch sets up per-thread state (and OpenMP a team of threads) the first time a thread computes, which a fresh
    thread per case would pay every time. It ends with its check: while a second thread holds an OpenMP team,
    libgomp counts more threads than cores and stops letting idle workers spin, so every later parallel region of
    the notebook pays a wake-up — notebook 04's training ran ~70 % slower after its exercise check until its worker
    ended. A worker told to stop is retired, and the next call starts a new one."""

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


_SCOPE_DEPTH = 0  # checks in progress (worker_scope blocks), in any thread


@contextlib.contextmanager
def worker_scope() -> Any:
    """One check's worker: the calls of :func:`call_with_limit` inside share one thread, which ends (and with it
    its OpenMP team) when the outermost scope does; a call outside any scope gets a worker that ends with it. A
    check nested in a learner's function runs inside the outer one's scope and leaves its worker alone."""
    global _SCOPE_DEPTH
    _SCOPE_DEPTH += 1
    try:
        yield
    finally:
        _SCOPE_DEPTH -= 1
        if _SCOPE_DEPTH == 0 and _WORKER_LOCK.acquire(blocking=False):  # else a call is in progress: it ends it
            try:
                _end_shared_worker()
            finally:
                _WORKER_LOCK.release()


def _end_shared_worker() -> None:
    """Retire the shared worker and wait for an idle one to end (a stuck one is a daemon left behind); the caller
    holds ``_WORKER_LOCK``."""
    global _WORKER
    if _WORKER is not None:
        _WORKER.retire()
        if _WORKER.thread is not threading.current_thread():
            _WORKER.thread.join(1.0)
        _WORKER = None


def worker_alive() -> bool:
    """Whether a check's worker thread is running now (none between checks)."""
    return _WORKER is not None and not _WORKER.retired and _WORKER.thread.is_alive()


def call_with_limit(call: Callable[[], Any], limit: float | None) -> Outcome:
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
                return Outcome(timed_out=True, stuck=not _stop(worker.thread))
            job.done.wait(left)
    except KeyboardInterrupt:
        if worker is not None and not job.done.is_set():
            worker.retire()
            _stop(worker.thread)
        return Outcome(interrupted=True)
    finally:
        if worker is not None and worker is not _WORKER:
            worker.retire()
        if shared:
            if _SCOPE_DEPTH == 0:  # no check in progress: no thread kept for a next case
                _end_shared_worker()
            _WORKER_LOCK.release()
    if isinstance(job.error, KeyboardInterrupt):
        return Outcome(interrupted=True)
    return Outcome(value=job.value, error=job.error)
