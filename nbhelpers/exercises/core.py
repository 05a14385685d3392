"""The machinery of the student edition: cases, checks, reports, the fallback, the registry.

Each notebook's exercises live in their own module of this package (``flows`` for 01–03, ...) and
:func:`register` them here; :mod:`nbhelpers.exercises` imports them all.

A check survives whatever a learner's function does. Each case's ``expected()`` is computed first, then the
function runs in a daemon worker thread under a time limit (:mod:`.timeouts`: ``CHECK_TIMEOUT``,
``$NBHELPERS_CHECK_TIMEOUT``); the tensors its inputs hold are snapshotted before the call and compared after it
(:mod:`.observe`), so a function that writes into its inputs is named and the inputs are put back for the next
case. What comes back is judged by type, dtype, device and shape first (:mod:`.differences`), in those words and
with a short hint of that kind; the case's maths hint is shown only when all of those are right and the numbers
are off. An error raised by the function is reported in one line
(with the line of the learner's code where it happened), never as a traceback; a function that loops is stopped,
and a KeyboardInterrupt or any failure of the check itself still ends in :func:`use` returning the library's
version under a banner that says why.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import textwrap
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from ..devices import exact
from ..paths import GaussianPath
from .differences import (HINTS, KIND_DEVICE, KIND_DTYPE, KIND_SHAPE, KIND_TYPE, KIND_VALUES, diagnose, error_kind,
                          fmt, one_line, where)
from .observe import UNSET, Probe, Snapshot, copied
from .timeouts import call_with_limit, time_limit, worker_scope

__all__ = ["Case", "CaseResult", "CheckReport", "Exercise", "EXERCISES", "check", "use", "exercises_in",
           "register", "gen", "randn", "se_var", "path_of", "NOT_IMPLEMENTED", "NOT_RUN", "TIMED_OUT",
           "INTERRUPTED", "standing_in", "comparison_note",
           "GRADE_LOG_ENV", "cases_passed"]

NOT_IMPLEMENTED = "not implemented yet"
TIMED_OUT = "timed out"
INTERRUPTED = "interrupted"
NOT_RUN = "not run"

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


# --------------------------------------------------------------------------- running the cases
def _raised(case: Case, expected: Any, err: BaseException, probe: Probe, signature: str) -> CaseResult:
    """A case whose call raised: the error in one line, where it happened, and a hint of its kind."""
    kind = error_kind(err)
    after = probe.active and not probe.raised_inside and probe.output is not UNSET
    if after:  # the learner's function returned; the case could not use what came back
        got = f"it returned {fmt(probe.output)}, which the case cannot use: {one_line(err)}"
        if kind == "error":
            kind = KIND_TYPE
    else:
        got = f"it raised {one_line(err)}"
        place = where(err)
        if place:
            got += f" ({place})"
    if kind in (KIND_SHAPE, "index", KIND_TYPE, KIND_DTYPE, KIND_DEVICE) and probe.inputs():
        got += f"; its inputs: {probe.inputs()}"
    label = {KIND_SHAPE: "a shape problem", "index": "an indexing problem", KIND_TYPE: "a type problem", "inplace":
             "an in-place operation on an input",
             KIND_DTYPE: "a dtype problem", KIND_DEVICE: "a device problem"}.get(kind)
    if label:
        got = f"{label}: {got}"
    hint = (f"keep the parameters the notebook gives: {signature}" if kind == "signature" and signature
            else HINTS.get(kind, HINTS["error"]))
    return CaseResult(case.name, "fail", expected=fmt(expected), got=got, hint=hint, kind=kind)


def _changed_inputs(changed: list[tuple[str, Any, str]], probe: Probe) -> tuple[str, str]:
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
                f"on a copy (e.g. {copy})"), HINTS["replaced"]
    return f"your function modified {shown} in place; work on a copy (e.g. {copy})", HINTS["mutation"]


def _run_case(case: Case, fn: Any, limit: float | None | object = UNSET, signature: str = "") -> CaseResult:
    """Run one case on ``fn``: ``expected()`` first (the learner's function cannot move it), then the call in a
    worker thread under ``limit`` seconds (default :func:`time_limit`), the inputs snapshotted around it."""
    limit = time_limit() if limit is UNSET else limit
    expected = copied(case.expected())
    snapshot = Snapshot(case.got)
    probe = Probe(fn)
    out = call_with_limit(lambda: case.got(probe.callable), limit)  # type: ignore[arg-type]
    changed = snapshot.restore()
    if out.interrupted:
        return CaseResult(case.name, INTERRUPTED, got="interrupted (KeyboardInterrupt) before it returned",
                          kind="interrupted")
    if out.timed_out:
        got = f"it did not return within {limit:g} s — an infinite loop?"
        got += (" It is inside one long call (time.sleep, a huge tensor operation), far too slow, and stops only "
                "when that call returns" if out.stuck else " It was stopped")
        return CaseResult(case.name, TIMED_OUT, got=got, hint=HINTS["timeout"], kind="timeout")
    if isinstance(out.error, NotImplementedError):
        return CaseResult(case.name, NOT_IMPLEMENTED, hint=str(out.error) or case.hint)
    if out.error is not None:  # a learner's error is a finding of the check, not a crash of the notebook
        return _raised(case, expected, out.error, probe, signature)
    if changed:
        got, hint = _changed_inputs(changed, probe)
        return CaseResult(case.name, "fail", expected=fmt(expected), got=got, hint=hint, kind="mutation")
    found = diagnose(out.value, expected, case.atol, case.rtol)
    if found is None:
        return CaseResult(case.name, "pass")
    kind, diff = found
    hint = case.hint if kind == KIND_VALUES else HINTS[kind]  # the maths hint only when the numbers are what's wrong
    return CaseResult(case.name, "fail", expected=fmt(expected), got=f"{fmt(out.value)} ({diff})", hint=hint,
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
        with worker_scope():  # one thread for the cases, ended with the check
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
        report.stopped = f"the check itself failed ({one_line(exc)}), a bug of nbhelpers rather than of your code"
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
        report = CheckReport(ex, stopped=f"the check could not run ({one_line(exc)})")
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
        warnings.warn(f"could not append to ${GRADE_LOG_ENV} ({path}): {one_line(exc)}", stacklevel=3)


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
