"""The machinery of the student edition: cases, checks, reports, the fallback, the registry.

Each notebook's exercises live in their own module of this package (``flows`` for 01–03, ...) and
:func:`register` them here; :mod:`nbhelpers.exercises` imports them all.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from ..paths import GaussianPath

__all__ = ["Case", "CaseResult", "CheckReport", "Exercise", "EXERCISES", "check", "use", "exercises_in",
           "register", "gen", "randn", "se_var", "path_of", "NOT_IMPLEMENTED"]

NOT_IMPLEMENTED = "not implemented yet"

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
    status: str  # "pass" | "fail" | NOT_IMPLEMENTED
    expected: str = ""
    got: str = ""
    hint: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class CheckReport:
    """The outcome of :func:`check`; ``str()`` is the message printed in the notebook."""

    exercise: Exercise
    results: list[CaseResult] = field(default_factory=list)

    @property
    def not_implemented(self) -> bool:
        return bool(self.results) and all(r.status == NOT_IMPLEMENTED for r in self.results)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def __str__(self) -> str:
        ex, n = self.exercise, len(self.results)
        if self.not_implemented:
            return f"{ex.name}: {NOT_IMPLEMENTED} — {ex.task}"
        ok = sum(r.passed for r in self.results)
        lines = [f"{ex.name}: {ok} of {n} cases pass" + (" ✓" if ok == n else "")]
        for i, r in enumerate(self.results, 1):
            mark = "✓" if r.passed else "✗"
            lines.append(f"  {mark} case {i}/{n}: {r.case}" + (f" — {r.status}" if r.status == NOT_IMPLEMENTED else ""))
            if not r.passed:
                if r.status != NOT_IMPLEMENTED:
                    lines.append(f"      expected: {r.expected}")
                    lines.append(f"      got:      {r.got}")
                lines.append(f"      hint:     {r.hint}")
        return "\n".join(lines)

    def banner(self) -> str:
        """The box :func:`use` prints when the later cells run on the library's implementation."""
        ex = self.exercise
        why = NOT_IMPLEMENTED if self.not_implemented else f"{len(self.failures)} of {len(self.results)} cases fail"
        text = (f"{ex.name}: {why}. The cells below use the library's {ex.reference_name} instead, "
                f"so they still run; fill in {ex.name} and re-run its cell and this one.")
        body = textwrap.wrap(text, 96)
        width = max(map(len, body)) + 2
        return "\n".join(["┌" + "─" * width, *(f"│ {line}" for line in body), "└" + "─" * width])


# --------------------------------------------------------------------------- comparing and formatting
def _fmt(v: Any) -> str:
    if isinstance(v, Tensor):
        if v.device.type == "meta":
            return f"tensor of shape {tuple(v.shape)} on the meta device (no values)"
        flat = v.detach().flatten().cpu()
        flat = flat.abs() if flat.is_complex() else flat.double()
        vals = ", ".join(f"{x:.4g}" for x in flat[:6].tolist()) + (", …" if flat.numel() > 6 else "")
        return f"tensor of shape {tuple(v.shape)} [{vals}]" if v.ndim else f"{flat.item():.6g} (0-d tensor)"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, tuple) and all(isinstance(x, int) for x in v):
        return f"shape {v}"
    return repr(v)


def _compare(got: Any, expected: Any, atol: float, rtol: float) -> str | None:
    """None when ``got`` matches ``expected``; otherwise what differs (shape, type or values)."""
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            return f"a tensor was expected, got {type(got).__name__}"
        if got.device.type == "meta":
            return "a tensor on the meta device, which holds no values"
        if got.is_complex() and not expected.is_complex():
            return f"a complex tensor ({got.dtype}); the task's values are real"
        if (got.is_floating_point() != expected.is_floating_point()  # float labels, integer noise …
                or got.dtype == torch.float64 and expected.dtype in (torch.float32, torch.float16, torch.bfloat16)):
            # later cells mix it with the library's tensors, and float64 or float labels break them there
            # (a float64 closed form accepts float32: the library computes in the inputs' dtype)
            return (f"dtype {str(got.dtype).replace('torch.', '')} instead of "
                    f"{str(expected.dtype).replace('torch.', '')}; give the result its input's dtype, e.g. "
                    f"buffer.to(x) for a float64 table")
        if got.device != expected.device:
            return f"on {got.device} instead of {expected.device} (where its inputs were)"
        if tuple(got.shape) != tuple(expected.shape):
            return f"shape {tuple(got.shape)} instead of {tuple(expected.shape)}"
        if expected.requires_grad and not got.requires_grad:
            return ("no gradient reaches the network through it (detached: no .detach(), .item(), .data or "
                    "torch.no_grad() in a loss)")
        g, e = got.detach().double().cpu(), expected.detach().double().cpu()
        if not torch.isfinite(g).all():
            return "it holds inf or nan"
        if torch.allclose(g, e, atol=atol, rtol=rtol):
            return None
        return f"max |got − expected| = {(g - e).abs().max().item():.3g}"
    if isinstance(expected, tuple):
        return None if tuple(got) == expected else "a different shape"
    try:
        g = float(got)
    except (TypeError, ValueError, RuntimeError):
        return f"a number was expected, got {type(got).__name__}"
    if math.isfinite(g) and abs(g - float(expected)) <= atol + rtol * abs(float(expected)):
        return None
    return f"|got − expected| = {abs(g - float(expected)):.3g}, allowed {atol + rtol * abs(float(expected)):.3g}"


def _run_case(case: Case, fn: Any) -> CaseResult:
    try:
        got = case.got(fn)
    except NotImplementedError as exc:
        return CaseResult(case.name, NOT_IMPLEMENTED, hint=str(exc) or case.hint)
    except Exception as exc:  # a student's error is a finding of the check, not a crash of the notebook
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return CaseResult(case.name, "fail", expected=_fmt(case.expected()), got=f"it raised {msg}", hint=case.hint)
    expected = case.expected()
    diff = _compare(got, expected, case.atol, case.rtol)
    if diff is None:
        return CaseResult(case.name, "pass")
    return CaseResult(case.name, "fail", expected=_fmt(expected), got=f"{_fmt(got)} ({diff})", hint=case.hint)


def _exercise(name: str) -> Exercise:
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; valid choices: {', '.join(EXERCISES)}")
    return EXERCISES[name]


def check(name: str, fn: Any) -> CheckReport:
    """Run exercise ``name``'s cases on ``fn`` (the student's function or class) and report each one."""
    ex = _exercise(name)
    return CheckReport(ex, [_run_case(c, fn) for c in ex.cases()])


def use(name: str, fn: Any, quiet: bool = False) -> Any:
    """Check ``fn`` and return what the later cells should call: ``fn`` once every case passes, otherwise the
    library's equivalent (the report and a banner say so)."""
    report = check(name, fn)
    if not quiet:
        print(report)
    if report.passed:
        return fn
    if not quiet:
        print(report.banner())
    return report.exercise.reference()


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
