"""Run notebooks headless with papermill: ``python -m nbhelpers.runner`` (``make notebooks``).

Each notebook is executed into ``build/notebooks/<name>.ipynb`` with the parameters
``device`` and ``profile`` (plus any ``-p key value``); its figures land in ``figures/`` and its
headline numbers in ``build/metrics/<name>.json``. A summary table (status, wall time) is
printed at the end; the exit status is non-zero when a notebook failed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runtime import PROFILES, ROOT, build_dir, metrics_dir

NOTEBOOK_DIR = ROOT / "notebooks"


def list_notebooks() -> list[str]:
    """Names (without ``.ipynb``) of the series' notebooks, in order."""
    return sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(spec: str | list[str] | None) -> list[str]:
    """``"all"``, ``"01,02"``, ``"01_sdes"`` → notebook names; unknown entries are an error."""
    names = list_notebooks()
    if spec is None or spec == "all" or spec == ["all"]:
        return names
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        match = [n for n in names if n == item or n.split("_", 1)[0] == item.zfill(2)]
        if not match:
            raise ValueError(f"unknown notebook {item!r}; valid choices: {', '.join(names)} (or their numbers)")
        chosen.extend(m for m in match if m not in chosen)
    return chosen


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
                 output_dir: Path | None = None, progress: bool = False) -> NotebookResult:
    """Execute one notebook with papermill and collect its status, wall time and metrics."""
    import papermill as pm

    if profile not in ("auto",) + PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid choices: auto, {', '.join(PROFILES)}")
    src = NOTEBOOK_DIR / f"{name}.ipynb"
    if not src.exists():
        raise ValueError(f"unknown notebook {name!r}; valid choices: {', '.join(list_notebooks())}")
    out_dir = Path(output_dir) if output_dir is not None else build_dir() / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    params = {"device": device, "profile": profile, **(parameters or {})}
    metrics_file = metrics_dir() / f"{name}.json"
    if metrics_file.exists():
        metrics_file.unlink()
    t0 = time.perf_counter()
    status, error = "ok", ""
    try:
        pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3",
                            cwd=str(NOTEBOOK_DIR), progress_bar=progress, log_output=False)
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
    return NotebookResult(name, profile, device, status, seconds, out, error, metrics, resolved)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="auto", choices=("auto",) + PROFILES)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--notebooks", default="all", help="'all' or a comma list such as 01,02")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="extra papermill parameter (value parsed as JSON when possible)")
    args = ap.parse_args(argv)
    try:
        names = select_notebooks(args.notebooks)
    except ValueError as exc:
        ap.error(str(exc))
    extra = {}
    for k, v in args.parameter:
        try:
            extra[k] = json.loads(v)
        except json.JSONDecodeError:
            extra[k] = v
    results = []
    for name in names:
        print(f"▶ {name} (profile={args.profile}, device={args.device}) …", flush=True)
        r = run_notebook(name, args.profile, args.device, extra, progress=False)
        print(f"  {r.status} in {r.seconds:.1f} s" + (f": {r.error}" if r.error else ""), flush=True)
        results.append(r)
    print("\n| notebook | profile | device | status | wall time |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {r.profile} | {r.resolved_device or r.device} | {r.status} | {r.seconds:.1f} s |")
    failed = [r.name for r in results if r.status != "ok"]
    if failed:
        print(f"\nfailed: {', '.join(failed)} (executed copies in build/notebooks/)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
