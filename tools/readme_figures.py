"""Refresh the README's gallery on purpose: ``make readme-figures`` (``python -m tools.readme_figures``).

A run of the series writes its figures to ``figures/<notebook>/``, which git ignores, so running
the notebooks never modifies the checkout. This command copies the one figure per notebook that
the README shows into the committed folder ``figures/readme/<notebook>/`` and records where each
came from — profile, device, thread count, machine, commit and date, read from the run's
``build/metrics/<notebook>.json`` — in ``figures/readme/source.json`` and ``SOURCE.md``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nbhelpers.cli import read_json, tool_errors

ROOT = Path(__file__).resolve().parent.parent
GALLERY_DIR = ROOT / "figures" / "readme"

GALLERY: dict[str, str] = {
    "01_sdes": "ou_paths_and_endpoints",
    "02_paths_schedules": "corruption_schedules",
    "03_flow_matching_2d": "samples_vs_truth",
    "04_unet_images": "samples_schedules",
    "05_score_sde": "5b_image_sigma_samples",
    "06_two_pixel_ddpm_cfg": "q2_trajectory_over_density",
    "07_mnist_cfg": "grid_10x10",
    "08_afhq_ddpm": "samples_long",
}
"""Notebook → the figure (file stem under ``figures/<notebook>/``) the README shows for it."""


def gallery_path(notebook: str) -> Path:
    return GALLERY_DIR / notebook / f"{GALLERY[notebook]}.png"


def _select(spec: str) -> list[str]:
    if spec == "all":
        return list(GALLERY)
    chosen = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        match = [n for n in GALLERY if n == item or n.split("_", 1)[0] == item.zfill(2)]
        if not match:
            raise ValueError(f"unknown notebook {item!r}; valid choices: {', '.join(GALLERY)} (or their numbers)")
        chosen += [m for m in match if m not in chosen]
    return chosen


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "nbhelpers", "notebooks"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(notebook: str, figures_root: Path, metrics_root: Path) -> dict[str, Any]:
    """Where a run's gallery figure came from, or a ``ValueError`` saying what to run first."""
    fig = figures_root / notebook / f"{GALLERY[notebook]}.png"
    metrics_file = metrics_root / f"{notebook}.json"
    if not fig.is_file():
        raise ValueError(f"{fig} does not exist: run `make notebooks NOTEBOOKS={notebook[:2]} PROFILE=cpu` first")
    if not metrics_file.is_file():
        raise ValueError(f"{metrics_file} does not exist: the figure's run recorded no metrics; re-run the notebook")
    record = read_json(metrics_file, "metrics file")
    if record.get("complete") is False:
        raise ValueError(f"{metrics_file} is from a run that did not finish (stopped, killed or failed half-way): "
                         f"run `make notebooks NOTEBOOKS={notebook[:2]} PROFILE=cpu` to the end first")
    if record.get("profile") == "smoke":
        raise ValueError(f"{metrics_file} is from a smoke run; the gallery takes cpu or gpu runs only")
    machine = record.get("machine") or {}
    return {
        "figure": f"{notebook}/{fig.name}",
        "profile": record.get("profile"),
        "device": record.get("device"),
        "seed": record.get("seed"),
        "threads": machine.get("threads"),
        "processor": machine.get("processor"),
        "cpu_count": machine.get("cpu_count"),
        "torch": machine.get("torch"),
        # the run's own commit; a run recorded before runs kept one gets today's, marked as such
        "commit": record.get("commit") or f"{_commit()} (at copy time)",
        "date": time.strftime("%Y-%m-%d", time.gmtime(fig.stat().st_mtime)),
    }


def write_source_md(entries: dict[str, dict[str, Any]], folder: Path) -> None:
    lines = [
        "# Where the README's figures come from",
        "",
        "Written by `make readme-figures`, which copies the figures of a run from `figures/<notebook>/`.",
        "The same seed reproduces a figure byte for byte only with the same machine, library versions",
        "and thread count (see the README's *Reproducibility*).",
        "",
        "| figure | profile | device | threads | processor (cores) | torch | commit | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in GALLERY:
        e = entries.get(name)
        if e is None:
            continue
        lines.append(f"| `{e['figure']}` | {e['profile']} | {e['device']} | {e['threads']} | "
                     f"{e['processor']} ({e['cpu_count']}) | {e['torch']} | {e['commit']} | {e['date']} |")
    (folder / "SOURCE.md").write_text("\n".join(lines) + "\n")


def refresh(notebooks: list[str], figures_root: Path | None = None, metrics_root: Path | None = None,
            folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """Copy the chosen notebooks' gallery figures and update ``source.json`` / ``SOURCE.md``.

    Everything is checked before anything is copied, so a missing figure changes nothing.
    """
    from nbhelpers.runtime import figures_dir, metrics_dir

    figures_root = figures_root or figures_dir()
    metrics_root = metrics_root or metrics_dir()
    folder = folder or GALLERY_DIR
    found = {nb: provenance(nb, figures_root, metrics_root) for nb in notebooks}
    source = folder / "source.json"
    entries = read_json(source, "gallery record") if source.is_file() else {}
    for nb, entry in found.items():
        dest = folder / nb / f"{GALLERY[nb]}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figures_root / nb / f"{GALLERY[nb]}.png", dest)
        entries[nb] = entry
    folder.mkdir(parents=True, exist_ok=True)
    source.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    write_source_md(entries, folder)
    return found


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--notebooks", default="all", help="'all' or a comma list such as 04,07")
    return ap


@tool_errors
def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        found = refresh(_select(args.notebooks))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for nb, e in found.items():
        print(f"{e['figure']}: {e['profile']} profile, {e['device']}, {e['threads']} threads, commit {e['commit']}")
    print(f"updated {GALLERY_DIR.relative_to(ROOT)}/ — review the figures, then commit them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
