"""Run notebooks headless with papermill: ``python -m nbhelpers.runner`` (``make notebooks``).

Each notebook is executed into ``build/notebooks/<name>.ipynb`` with the parameters
``device`` and ``profile`` (plus any ``-p NAME VALUE`` the notebook declares); its figures land in
``figures/`` and its headline numbers in ``build/metrics/<name>.json``. Per notebook the runner
prints the profile and device the run resolves to, the time the last benchmark of that profile took,
and progress while it runs (cell k of n, elapsed time); the kernel's own log (start-up warnings,
the interrupt at shutdown) goes to ``build/notebooks/<name>.kernel.log`` instead of the terminal.
A summary table (status, wall time) is printed at the end; the exit status is non-zero when a
notebook failed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from .cli import tool_errors
from .devices import get_device
from .files import atomic_write_bytes
from .layout import (CHECKPOINT_ENV, DATA_ENV, DEVICE_ENV, OUTPUT_ENV, PROFILE_ENV, PROFILES, ROOT, build_dir,
                     metrics_dir, resolve_profile)

NOTEBOOK_DIR = ROOT / "notebooks"
BENCHMARK_RESULTS = ROOT / "benchmarks" / "results"


def list_notebooks() -> list[str]:
    """Names (without ``.ipynb``) of the series' notebooks, in order."""
    return sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(spec: str | list[str] | None) -> list[str]:
    """``"all"``, ``"01,02"``, ``"01_sdes"`` → notebook names; unknown entries are an error."""
    names = list_notebooks()
    if spec is None or spec == "all" or spec == ["all"]:
        return names
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    if not any(str(i).strip() for i in items):
        raise ValueError(f"no notebook named in {spec!r}; give 'all' or numbers such as 01,02 "
                         f"(valid choices: {', '.join(names)})")
    chosen = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        match = [n for n in names if n == item or n.split("_", 1)[0] == item.zfill(2)]
        if not match:
            raise ValueError(f"unknown notebook {item!r}; valid choices: {', '.join(names)} (or their numbers)")
        chosen.extend(m for m in match if m not in chosen)
    return chosen


def declared_parameters(name: str) -> list[str]:
    """Names assigned in the notebook's ``parameters`` cell, as papermill reads them."""
    import papermill as pm

    return list(pm.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb")))


def check_parameters(name: str, parameters: dict[str, Any]) -> None:
    """Refuse parameters the notebook does not declare (papermill would only warn and run the default)."""
    declared = declared_parameters(name)
    unknown = [k for k in parameters if k not in declared]
    if unknown:
        raise ValueError(f"{name} declares no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters are: {', '.join(declared)}")


# --------------------------------------------------------------------------- expected cost
@dataclass(frozen=True)
class BenchmarkTime:
    """Wall time of the last benchmark of one notebook in one profile, on one machine."""
    notebook: str
    profile: str
    machine: str
    seconds: float
    date: str = ""


def machine_tag() -> str:
    """``cpu<cores>`` or the GPU's short name: the key benchmark results are filed under."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0).replace("NVIDIA ", "").replace(" ", "-").lower()
    return f"cpu{os.cpu_count()}"


def benchmark_times(results_dir: Path | None = None) -> list[BenchmarkTime]:
    """Every successful notebook benchmark in ``benchmarks/results/*.json``, sorted by notebook, profile, machine."""
    folder = Path(results_dir) if results_dir is not None else BENCHMARK_RESULTS
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(path.read_text())
        if data.get("kind") != "notebook" or data.get("status") != "ok" or "wall_s" not in data:
            continue
        out.append(BenchmarkTime(data["notebook"], data["profile"], data.get("machine_tag", "?"),
                                 float(data["wall_s"]), data.get("date", "")))
    return sorted(out, key=lambda b: (b.notebook, b.profile, b.machine))


def expected_time(name: str, profile: str, results_dir: Path | None = None, machine: str | None = None) -> BenchmarkTime | None:
    """The benchmark to quote before a run: this machine's if there is one, else any machine's."""
    runs = [b for b in benchmark_times(results_dir) if b.notebook == name and b.profile == profile]
    if not runs:
        return None
    machine = machine or machine_tag()
    return next((b for b in runs if b.machine == machine), runs[0])


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``1.2 h``: the unit a reader expects for that length."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


# --------------------------------------------------------------------------- progress and a quiet kernel
class Progress:
    """Prints ``cell k/n · elapsed`` lines while a notebook runs: at a cell start when the last line is
    ``every`` seconds old, and a heartbeat when a cell has been running ``heartbeat`` seconds in silence."""

    def __init__(self, stream: TextIO | None = None, every: float = 3.0, heartbeat: float = 30.0,
                 clock: Callable[[], float] = time.perf_counter):
        self.stream = stream if stream is not None else sys.stdout
        self.every, self.heartbeat, self.clock = every, heartbeat, clock
        self.total, self.k = 0, 0
        self.t0 = self.last = clock()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _print(self, text: str) -> None:
        print(f"  {text}", file=self.stream, flush=True)
        self.last = self.clock()

    def start(self, total: int) -> None:
        self.total, self.k = total, 0
        self.t0 = self.last = self.clock()
        if self.heartbeat > 0:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()

    def cell(self, k: int) -> None:
        with self._lock:
            self.k = k
            now = self.clock()
            if k == 1 or now - self.last >= self.every:
                self._print(f"cell {k}/{self.total} · {_clock(now - self.t0)}")

    def _beat(self) -> None:
        while not self._stop.wait(min(5.0, self.heartbeat)):
            with self._lock:
                now = self.clock()
                if now - self.last >= self.heartbeat:
                    self._print(f"cell {self.k}/{self.total} still running · {_clock(now - self.t0)}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _engine_name() -> str:
    """Register (once) a papermill engine that reports each code cell to a :class:`Progress`."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    name = "nbhelpers"
    if name in papermill_engines._engines:
        return name

    class _Manager(NotebookExecutionManager):
        progress: Progress | None = None

        def cell_start(self, cell, cell_index=None, **kwargs):
            super().cell_start(cell, cell_index, **kwargs)
            if self.progress is not None and cell.cell_type == "code" and cell_index is not None:
                k = sum(c.cell_type == "code" for c in self.nb.cells[:cell_index + 1])
                self.progress.cell(k)

    class _Engine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=False, log_output=False,
                             autosave_cell_every=30, progress: Progress | None = None, **kwargs):
            nb_man = _Manager(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                              autosave_cell_every=autosave_cell_every)
            nb_man.progress = progress
            if progress is not None:
                progress.start(sum(c.cell_type == "code" for c in nb.cells))
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                if progress is not None:
                    progress.stop()
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register(name, _Engine)
    return name


def quiet_kernel_manager(log_path: Path) -> type:
    """A kernel manager whose kernel writes its own log (stderr) to ``log_path``, not the terminal:
    ipykernel's "running over TCP without encryption" warning and the "KeyboardInterrupt caught"
    line nbclient's shutdown provokes are no news about the notebook. Cell output is unaffected."""
    from jupyter_client import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            log_path.parent.mkdir(parents=True, exist_ok=True)
            kw["stderr"] = open(log_path, "ab")  # noqa: SIM115 - held by the kernel process until it exits
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return QuietKernelManager


# --------------------------------------------------------------------------- running
@dataclass
class NotebookResult:
    name: str
    profile: str
    device: str
    status: str
    seconds: float
    output: Path
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    resolved_device: str = ""


def run_notebook(name: str, profile: str = "auto", device: str = "auto", parameters: dict[str, Any] | None = None,
                 output_dir: Path | None = None, progress: bool | Progress = False) -> NotebookResult:
    """Execute one notebook with papermill and collect its status, wall time and metrics.

    ``progress``: ``True`` prints cell progress to stdout, or pass a :class:`Progress`.
    """
    import papermill as pm

    if profile not in ("auto",) + PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid choices: auto, {', '.join(PROFILES)}")
    src = NOTEBOOK_DIR / f"{name}.ipynb"
    if not src.exists():
        raise ValueError(f"unknown notebook {name!r}; valid choices: {', '.join(list_notebooks())}")
    check_parameters(name, parameters or {})
    out_dir = Path(output_dir) if output_dir is not None else build_dir() / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    log = out_dir / f"{name}.kernel.log"
    if log.exists():
        log.unlink()
    params = {"device": device, "profile": profile, **(parameters or {})}
    metrics_file = metrics_dir() / f"{name}.json"
    if metrics_file.exists():
        metrics_file.unlink()
    reporter = Progress() if progress is True else (progress or None)
    t0 = time.perf_counter()
    status, error = "ok", ""
    try:
        pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3", engine_name=_engine_name(),
                            cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=False, progress=reporter,
                            kernel_manager_class=quiet_kernel_manager(log))
    except Exception as exc:  # papermill wraps the cell's exception; keep its last line
        status = "failed"
        lines = [l for l in str(exc).strip().splitlines() if l.strip()]
        error = lines[-1] if lines else type(exc).__name__
    seconds = time.perf_counter() - t0
    metrics: dict[str, Any] = {}
    resolved = ""
    if metrics_file.exists():
        payload = json.loads(metrics_file.read_text())
        metrics = payload.get("metrics", {})
        resolved = payload.get("device", "")
        profile = payload.get("profile", profile)
        # the notebook ran to its last cell: only now are its metrics a finished run's
        payload["complete"] = status == "ok"
        atomic_write_bytes(metrics_file, json.dumps(payload, indent=2, sort_keys=True).encode())
    return NotebookResult(name, profile, device, status, seconds, out, error, metrics, resolved)


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def check_environment() -> None:
    """The ``NBHELPERS_*`` variables a run reads, checked up front: one ``ValueError`` naming the variable."""
    from .dryrun import max_steps

    max_steps()  # a positive integer or unset
    if os.environ.get(PROFILE_ENV, "").strip():
        import torch

        resolve_profile("auto", torch.device("cpu"))
    for var in (CHECKPOINT_ENV, OUTPUT_ENV, DATA_ENV):
        raw = os.environ.get(var, "").strip()
        if raw and not os.path.isabs(os.path.expanduser(raw)):
            raise ValueError(f"${var} must be an absolute path (a notebook's kernel runs in another folder), "
                             f"got {raw!r}")


@tool_errors  # a read-only build/, a full disk: one error line, not a traceback
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nbhelpers.runner", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="auto", choices=("auto",) + PROFILES)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--notebooks", default="all", help="'all' or a comma list such as 01,02")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a parameter the notebook declares (value parsed as JSON when possible)")
    args = ap.parse_args(argv)
    try:
        names = select_notebooks(args.notebooks)
    except ValueError as exc:
        ap.error(str(exc))
    extra = {k: _parse_value(v) for k, v in args.parameter}
    for key, flag_value in (("profile", args.profile), ("device", args.device)):
        if key in extra:  # one place for each: the flag and a -p of the same name would disagree in silence
            ap.error(f"-p {key} {extra[key]!r} repeats --{key} (here {flag_value!r}); give --{key} only")
    try:  # the environment the kernels inherit, checked before the first notebook starts
        check_environment()
    except ValueError as exc:
        ap.error(str(exc))
    for name in names:  # before anything runs: a typo must not cost the notebooks before it
        try:
            check_parameters(name, extra)
        except ValueError as exc:
            ap.error(str(exc))
    try:  # what the notebook's setup cell will resolve to (the environment overrides apply there too)
        dev = get_device(os.environ.get(DEVICE_ENV, "").strip() or args.device)
        prof = resolve_profile(args.profile, dev)
    except ValueError as exc:
        ap.error(str(exc))
    results = []
    for i, name in enumerate(names, 1):
        bench = expected_time(name, prof)
        expect = (f"last benchmark {format_duration(bench.seconds)} on {bench.machine}" if bench
                  else f"no {prof} benchmark yet")
        print(f"▶ [{i}/{len(names)}] {name}: profile {prof}, device {dev} ({expect})", flush=True)
        r = run_notebook(name, args.profile, args.device, extra, progress=True)
        print(f"  {r.status} in {format_duration(r.seconds)}" + (f": {r.error}" if r.error else ""), flush=True)
        results.append(r)
    print("\n| notebook | profile | device | status | wall time |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {r.profile} | {r.resolved_device or r.device} | {r.status} | {format_duration(r.seconds)} |")
    failed = [r.name for r in results if r.status != "ok"]
    if failed:
        print(f"\nfailed: {', '.join(failed)} (executed copies and kernel logs in {build_dir() / 'notebooks'}/)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
