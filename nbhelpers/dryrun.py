"""Dry run: a profile's full model and batch sizes for a couple of steps, on any machine.

Set the environment variable ``NBHELPERS_MAX_STEPS=N`` (a positive integer) and every notebook
runs its code at the sizes of its profile (``NBHELPERS_PROFILE=gpu``: the assignments' full
settings) but only N steps of everything that costs network evaluations:

* training (:func:`nbhelpers.training.train`, so also the MNIST evaluator and the AFHQ trainer)
  runs at most N optimisation steps from where it starts (a resumed model: N more);
* a sampler call (DDPM ancestral and DDIM, the ODE/SDE solvers) evaluates a network at most N
  times; later steps get a zero network output (:class:`NetworkBudget`), so loops, step
  counts, trajectories and shapes are those of the full run, but the results are not samples.
  The cap lives in two places only: :func:`sampler` marks a sampler's entry point (it opens one
  budget scope per outermost call, so chunks and nested samplers share it) and :func:`capped` is
  applied where a sampler evaluates its network (``ddpm._call``, ``solvers._call``);
* trained models are cached under ``build/dryrun/max-steps-N/`` with N in their key, so a capped
  model is never read or written in place of the full one.

Numbers a dry run reports (losses, accuracies, distances) mean nothing; it proves that the code
runs at full size and measures what one step costs. ``nb.setup`` prints a banner when the cap is
set. Unset (the default), nothing here changes anything.

Reading the cap and moving the outputs are :mod:`nbhelpers.layout`'s (``max_steps``, ``redirect``,
``dry_run_root``): every output folder goes through them; they are named here too (``root`` is
``dry_run_root``).
"""
from __future__ import annotations

import contextvars
import functools
import os
import types
import weakref
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .layout import MAX_STEPS_ENV, max_steps, redirect
from .layout import dry_run_root as root

__all__ = ["MAX_STEPS_ENV", "max_steps", "is_dry_run", "cap", "root", "redirect", "banner", "holds_network", "networks",
           "NetworkBudget", "budget", "sampler", "capped", "OpCounter", "flop_counter"]


def is_dry_run() -> bool:
    return max_steps() is not None


def cap(n: int) -> int:
    """``min(n, cap)`` in a dry run, else ``n``."""
    m = max_steps()
    return n if m is None else min(int(n), m)


def banner() -> str:
    """The line a notebook prints in a dry run ('' otherwise)."""
    n = max_steps()
    if n is None:
        return ""
    return (f"DRY RUN (${MAX_STEPS_ENV}={n}): every training stops after {n} steps and every sampler call evaluates its "
            f"network at most {n} times (then zeros); models are cached under {root(n)}; the numbers below mean nothing.")


def flop_counter() -> Any:
    """``torch.utils.flop_counter.FlopCounterMode`` that also counts the CPU's attention kernel.

    PyTorch's counter has formulas for the CUDA SDPA kernels (flash, memory-efficient, cuDNN) but none for
    ``_scaled_dot_product_flash_attention_for_cpu`` and its backward, so on the CPU every attention block
    counted 0 FLOPs (07's attention UNet looked a third cheaper than it is). The same formulas are mapped
    onto the CPU ops: 4·B·H·L·S·d forward (QKᵀ and the weighted sum of V), 2.5× that backward (four products
    and the recomputed QKᵀ).
    """
    import torch.utils.flop_counter as fc

    aten = torch.ops.aten

    def forward(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return fc.sdpa_flop_count(q, k, v)

    def backward(grad_out: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return fc.sdpa_backward_flop_count(grad_out, q, k, v)

    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: forward,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}
    return fc.FlopCounterMode(display=False, custom_mapping=mapping)


def holds_network(f: Any, depth: int = 3) -> bool:
    """Whether ``f`` is, or holds, an ``nn.Module`` with parameters (see :func:`networks`)."""
    return bool(networks(f, depth))


def networks(f: Any, depth: int = 3) -> list[nn.Module]:
    """The networks (modules with parameters) ``f`` is or holds: itself, the object of a bound
    method, a closure variable, a global name the function's code uses (a notebook's
    ``lambda x, t: flow(x, t)``), an attribute or a ``functools.partial`` argument, ``depth`` levels deep.

    Samplers are given networks wrapped in lambdas and SDE objects; analytic fields (an OU drift,
    a Gaussian mixture's exact score) hold none and are never cut short.
    """
    seen: set[int] = set()
    found: list[nn.Module] = []

    def visit(obj: Any, level: int) -> None:
        if obj is None or id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, torch.Tensor, types.ModuleType)):
            return
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            if any(True for _ in obj.parameters()):
                found.append(obj)
            return
        if level <= 0:
            return
        children: list[Any] = []
        if hasattr(obj, "__self__"):
            children.append(obj.__self__)
        if getattr(obj, "__closure__", None):
            for cell in obj.__closure__:
                try:
                    children.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
        code, glob = getattr(obj, "__code__", None), getattr(obj, "__globals__", None)
        if isinstance(code, types.CodeType) and isinstance(glob, dict):
            children.extend(glob[n] for n in code.co_names if n in glob)
        for name in ("func", "args", "keywords"):  # functools.partial
            if hasattr(obj, name) and not callable(getattr(type(obj), name, None)):
                v = getattr(obj, name)
                children.extend(v if isinstance(v, tuple) else (v.values() if isinstance(v, dict) else [v]))
        if isinstance(obj, (list, tuple)):
            children.extend(obj)
        elif isinstance(obj, dict):
            children.extend(obj.values())
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            children.extend(vars(obj).values())
        for c in children:
            visit(c, level - 1)

    visit(f, depth)
    return found


_EVALUATED: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]]" = weakref.WeakKeyDictionary()
"""network → {(ids of the networks evaluated together, input shape, dtype): FLOPs of one evaluation}."""


class NetworkBudget(nn.Module):
    """``f`` for its first ``n`` calls, then ``zeros_like(x)``: a sampler's network evaluations, capped.

    Every network in this package (ε, velocity, score predictors) returns a tensor shaped like its
    input ``x``, so a sampler keeps running with the same shapes after the budget is spent. The
    number of batches is capped too: once a sampler call has evaluated the same networks on an input
    of the same shape, later calls (a sweep over a guidance weight or σ, the chunks of a big sample)
    evaluate once — their own cost is counted, never another call's — and get zeros after that. A module itself (``f`` a network is its submodule), so code that asks a
    model for its device still can.
    """

    def __init__(self, f: Callable[..., torch.Tensor], n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"budget must be a non-negative integer, got {n!r}")
        super().__init__()
        self.f = f
        self.left = n
        self.calls = 0
        self.skipped = 0
        self.record: dict[str, Any] | None = None
        nets = networks(f)
        self._first = nets[0] if nets else None
        self._nets = tuple(sorted(id(m) for m in nets))

    def _done(self) -> dict[tuple, int]:
        if self._first is None:
            return {}
        return _EVALUATED.setdefault(self._first, {})

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        key = (self._nets, tuple(x.shape), x.dtype)
        done = self._done()
        if self.calls == 0 and self.left > 0 and key in done:  # these networks at this batch have run already:
            # one evaluation still counts this call's own cost — the same networks can cost differently
            # (05's σ = 0 never evaluates the score network, σ > 0 does) — then zeros
            self.left = 1
        if self.left <= 0:
            self.skipped += 1
            return torch.zeros_like(x)
        self.left -= 1
        self.calls += 1
        if self.calls == 1:
            counter, ops = flop_counter(), OpCounter()
            with counter, ops:
                out = self.f(x, *args, **kwargs)
            done[key] = int(counter.get_total_flops())
            if record_path() is not None:
                self.record = {**self._describe(x, done[key]), "ops_per_call": ops.ops,
                               "memory_bound_bytes_per_call": ops.memory_bytes,
                               "largest_attention_elements": ops.largest_attention()}
            return out
        return self.f(x, *args, **kwargs)

    @staticmethod
    def _describe(x: torch.Tensor, flops: int) -> dict[str, Any]:
        return {"kind": "sampler", "flops_per_call": flops, "batch": int(x.shape[0]), "shape": list(x.shape),
                "device": str(x.device)}

    def close(self) -> None:
        """The sampler call has returned: record it (the full run would have made calls + skipped evaluations)."""
        if getattr(self, "record", None) is not None:
            record, self.record = self.record, None
            _append({**record, "calls": self.calls + self.skipped, "calls_made": self.calls})

    def __del__(self) -> None:  # a budget used outside a sampler scope records when it is dropped
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


def budget(f: Any) -> Any:
    """``f`` wrapped in a :class:`NetworkBudget` of :func:`max_steps` calls in a dry run when it holds a
    network (:func:`holds_network`); otherwise ``f`` itself."""
    n = max_steps()
    if n is None or isinstance(f, NetworkBudget) or not holds_network(f):
        return f
    return NetworkBudget(f, n)


class _Scope:
    """The budgets of one sampler call: one :func:`budget` per field evaluated in it, kept until it returns."""

    def __init__(self) -> None:
        self.budgets: dict[Any, Any] = {}

    def get(self, f: Any) -> Any:
        try:  # bound methods compare equal when they bind the same function to the same object (sde.drift, twice)
            key = (hash(f), f)
        except TypeError:  # an unhashable callable: by identity
            key = (id(f), id(f))
        if key not in self.budgets:
            self.budgets[key] = budget(f)
        return self.budgets[key]

    def close(self) -> None:
        for b in self.budgets.values():
            if isinstance(b, NetworkBudget):
                b.close()


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("nbhelpers_dryrun_scope", default=None)


def sampler(fn: Callable) -> Callable:
    """Decorate a sampler's entry point: in a dry run its outermost call opens a budget scope, within which
    every field :func:`capped` at an evaluation point is evaluated at most :func:`max_steps` times (then
    zeros), and which records each capped network's cost when the call returns. A sampler called inside
    another (the chunks of :func:`nbhelpers.solvers.sample_from_noise`, guided sampling in chunks) spends the
    outer call's budget. Without the cap the call goes straight through."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if max_steps() is None or _SCOPE.get() is not None:
            return fn(*args, **kwargs)
        scope = _Scope()
        token = _SCOPE.set(scope)
        try:
            return fn(*args, **kwargs)
        finally:
            _SCOPE.reset(token)
            scope.close()

    return call


def capped(f: Any) -> Any:
    """``f`` as the open sampler scope evaluates it: its :class:`NetworkBudget` when ``f`` holds a network and a
    dry run's :func:`sampler` call is open, else ``f`` itself (training, analytic fields, no dry run)."""
    scope = _SCOPE.get()
    return f if scope is None else scope.get(f)


# --------------------------------------------------------------------------- what one step costs
RECORD_ENV = "NBHELPERS_DRYRUN_RECORD"
"""Path of a JSON-lines file; when set in a dry run, every training and sampler call appends what one
step costs there (``python -m benchmarks.dryrun`` sets it per notebook)."""


def record_path() -> Path | None:
    raw = os.environ.get(RECORD_ENV, "").strip()
    return Path(raw) if raw and max_steps() is not None else None


def _append(record: dict[str, Any]) -> None:
    import json

    path = record_path()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    if hasattr(obj, "__dict__"):
        return [t for o in vars(obj).values() for t in _tensors(o)]
    return []


def _nbytes(tensors: Any) -> int:
    seen, total = set(), 0
    for t in _tensors(tensors):
        s = t.untyped_storage()
        if s.data_ptr() not in seen:
            seen.add(s.data_ptr())
            total += s.nbytes()
    return total


_SDPA_FORWARD = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                 "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
                 "_scaled_dot_product_attention_math")
"""The aten attention kernels (forward) whose score matrix :class:`OpCounter` records."""


def _compute_ops() -> frozenset:
    """Operators the FLOP counter prices (matrix products, convolutions, attention): compute-bound, so their
    bytes are not charged to memory bandwidth."""
    import torch.utils.flop_counter as fc

    names = {getattr(k, "__name__", str(k)) for k in fc.flop_registry}
    names |= {"_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward"}
    return frozenset(names)


def _io_bytes(args: Any, kwargs: dict, out: Any) -> int:
    """Bytes an eager operator reads (its tensor inputs) and writes (its outputs): with no fusion, each
    elementwise operator moves its whole operands through memory once."""
    from torch.utils._pytree import tree_leaves

    return sum(t.numel() * t.element_size() for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor))


class OpCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the aten operators a step dispatches (on a GPU, about one kernel launch each), the bytes the
    memory-bound ones move (everything but matrix products, convolutions and attention; views move nothing),
    and the shape of every attention score matrix (``(B·H, L, S)``: what an unfused kernel would materialise)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.memory_bytes = 0
        self.attention: list[tuple[int, int, int]] = []
        self._compute = _compute_ops()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops += 1
        name = func.overloadpacket.__name__
        if name in _SDPA_FORWARD and len(args) >= 2:
            q, k = args[0], args[1]  # (B, H, L, d) and (B, H, S, d)
            self.attention.append((int(q.numel() // (q.shape[-1] * q.shape[-2])), int(q.shape[-2]), int(k.shape[-2])))
        if not func.is_view and name not in self._compute:
            self.memory_bytes += _io_bytes(args, kwargs, out)
        return out

    def attention_elements(self) -> int:
        """Σ B·H·L·S over the attention calls seen: the score entries an unfused (math-path) kernel writes."""
        return sum(bh * l * s for bh, l, s in self.attention)

    def largest_attention(self) -> int:
        """The largest single B·H·L·S: the transient score matrix of one unfused attention call."""
        return max((bh * l * s for bh, l, s in self.attention), default=0)


def _rss_peak_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


class StepProbe:
    """Measures the first step of a capped training (FLOPs, operators, memory) and times the second.

    FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and
    attention: forward, backward and the optimizer step; elementwise work is not counted). Memory is
    estimated from the graph: weights + gradients + optimizer state + EMA copy + the tensors autograd
    saves for the backward pass (measured with saved-tensor hooks) + the batch; on CUDA the allocator's
    peak is recorded beside it, on the CPU the growth of the process's peak RSS (a lower bound).
    """

    def __init__(self, desc: str, model: nn.Module, full_steps: int, first_step: int, last_step: int,
                 key: dict[str, Any] | None, amp: bool) -> None:
        self.desc, self.model, self.full_steps, self.first, self.amp = desc, model, full_steps, first_step, amp
        self.last = last_step
        self.key = key
        self.record: dict[str, Any] | None = None
        self._modes: list[Any] = []
        self._t0 = 0.0

    def start(self, step: int) -> None:
        import time

        if step == self.first:
            params = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
            self._saved = 0
            self._seen: set[int] = set()

            def pack(t: torch.Tensor) -> torch.Tensor:
                ptr = t.untyped_storage().data_ptr()
                if ptr not in params and ptr not in self._seen:
                    self._seen.add(ptr)
                    self._saved += t.untyped_storage().nbytes()
                return t

            self._flops = flop_counter()
            self._ops = OpCounter()
            self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
            self._modes = [self._flops, self._ops, self._hooks]
            for m in self._modes:
                m.__enter__()
            dev = next(self.model.parameters()).device
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
            self._rss0 = _rss_peak_bytes()
        elif step == self.first + 1:
            dev = next(self.model.parameters()).device
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        self._t0 = time.perf_counter()

    def stop(self, step: int, batch: Any, optimizer: torch.optim.Optimizer, ema: nn.Module | None) -> None:
        import time

        dev = next(self.model.parameters()).device
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - self._t0
        if step == self.first:
            for m in reversed(self._modes):
                m.__exit__(None, None, None)
            self._modes = []
            params = list(self.model.parameters())
            weights = _nbytes(params)
            grads = _nbytes([p.grad for p in params if p.grad is not None])
            opt_state = _nbytes(list(optimizer.state.values()))
            ema_bytes = _nbytes(list(ema.parameters())) if ema is not None else 0
            batch_bytes = _nbytes(batch)
            shapes = [list(t.shape) for t in _tensors(batch)]
            self.record = {
                "kind": "train", "desc": self.desc, "key": self.key, "device": str(dev), "amp": self.amp,
                "parameters": sum(p.numel() for p in params if p.requires_grad),
                "batch_shapes": shapes[:4], "full_steps": self.full_steps, "start_step": self.first - 1,
                "flops_per_step": int(self._flops.get_total_flops()), "ops_per_step": self._ops.ops,
                "memory_bound_bytes_per_step": self._ops.memory_bytes,
                "attention_elements_per_step": self._ops.attention_elements(),
                "attention_calls_per_step": len(self._ops.attention),
                "memory_bytes": {"weights": weights, "gradients": grads, "optimizer_state": opt_state, "ema": ema_bytes,
                                 "saved_activations": self._saved, "batch": batch_bytes,
                                 "estimate": weights + grads + opt_state + ema_bytes + self._saved + batch_bytes,
                                 "rss_peak_growth": max(0, _rss_peak_bytes() - self._rss0)},
                "first_step_seconds": seconds,
            }
            if dev.type == "cuda":
                self.record["memory_bytes"]["cuda_peak_allocated"] = torch.cuda.max_memory_allocated(dev)
            if step == self.last:
                self._write()
        elif step == self.first + 1 and self.record is not None:
            self.record["step_seconds"] = seconds
            self._write()

    def _write(self) -> None:
        if self.record is not None:
            _append(self.record)
            self.record = None


def probe(desc: str, model: nn.Module, full_steps: int, first_step: int, last_step: int,
          key: dict[str, Any] | None, amp: bool) -> StepProbe | None:
    """A :class:`StepProbe` when a dry run records (``$NBHELPERS_DRYRUN_RECORD``) and a step is left, else ``None``."""
    if record_path() is None or first_step > last_step:
        return None
    return StepProbe(desc, model, full_steps, first_step, last_step, key, amp)
