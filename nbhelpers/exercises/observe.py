"""A learner's function watched during one case: :class:`Probe` records what it was called with and whether an
error came from inside it; :class:`Snapshot` copies the tensors a case can hand it and names (and undoes) any
write into them; :func:`copied` keeps a case's expected value apart from its inputs."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import torch
from torch import Tensor, nn


UNSET = object()


class Probe:
    """Stands in for a learner's function during one case: records its first call's arguments by parameter name
    and whether an error came from inside it or from the case working on what it returned. A class (an exercise
    that subclasses the library's) is passed through as it is."""

    def __init__(self, fn: Any) -> None:
        self.callable = fn
        self.active = False
        self.args: list[tuple[str, Any]] = []
        self.raised_inside = False
        self.output: Any = UNSET
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


class Snapshot:
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
                    out += Snapshot._roots(v, depth - 1, seen)
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


def copied(v: Any) -> Any:
    """``expected()`` kept apart from the inputs: a function that writes into a shared tensor cannot move it."""
    if isinstance(v, Tensor):
        return v.clone()
    if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
        return type(v)(copied(x) for x in v)
    return v
