"""Stamp what is derived from the repository's URL and its benchmarks into the notebooks and the README.

    python -m tools.stamp_colab          # rewrite (make colab-badges)
    python -m tools.stamp_colab --check  # exit 1 and name the files that are out of date

The repository URL is declared once, as ``Repository`` in pyproject's ``[project.urls]``; a fork changes
that value and runs this tool. Per notebook it writes
- an "Open in Colab" badge under the title of the first (markdown) cell,
- the run costs per profile at the end of that cell, from ``benchmarks/results/*.json``
  (a profile without a benchmark says so; an unmeasured gpu profile quotes the gpu dry run's prediction
  for a T4, marked as an estimate),
- the install cell, the first code cell: where ``nbhelpers`` cannot be imported (Colab, a bare kernel) it
  ``%pip install``s the package from the URL, not editable, so the running kernel imports it with no restart;
and in the README the series table's cost and Colab columns. Notebooks are rewritten with nbformat
(the format they are committed in), touching no other cell.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

import nbformat

from nbhelpers.cli import read_json, tool_errors
from nbhelpers.runner import BenchmarkTime, benchmark_times, format_duration, list_notebooks
from nbhelpers.runtime import PROFILES, ROOT

BADGE_IMG = "https://colab.research.google.com/assets/colab-badge.svg"
BRANCH = "main"
INSTALL_ENV = "NBHELPERS_INSTALL_SPEC"
INSTALL_CELL_ID = "cell-install"
COSTS_BEGIN, COSTS_END = "<!-- run-costs:begin (make colab-badges) -->", "<!-- run-costs:end -->"
SERIES_BEGIN, SERIES_END = "<!-- series:begin (make colab-badges) -->", "<!-- series:end -->"
BADGE_LINE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\s*$", re.M)


def repository_url(pyproject: Path | None = None) -> str:
    """``[project.urls] Repository`` from pyproject.toml, without a trailing slash or ``.git``."""
    path = pyproject or ROOT / "pyproject.toml"
    try:
        urls = tomllib.loads(path.read_text()).get("project", {}).get("urls", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path} cannot be read as TOML ({exc})") from None
    url = urls.get("Repository", "").strip()
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+?(\.git)?/?", url):
        raise ValueError(f"[project.urls] Repository in {path} must be https://github.com/<owner>/<name> "
                         f"(Colab opens notebooks from GitHub), got {url!r}")
    return re.sub(r"(\.git)?/?$", "", url)


def colab_url(repo_url: str, notebook: str) -> str:
    owner_repo = repo_url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/notebooks/{notebook}.ipynb"


def badge(repo_url: str, notebook: str) -> str:
    return f"[![Open In Colab]({BADGE_IMG})]({colab_url(repo_url, notebook)})"


def install_source(repo_url: str) -> str:
    return (
        "# Where nbhelpers is missing (Colab, a bare kernel) install it from the repository; not\n"
        "# editable, so this kernel imports it with no restart. $" + INSTALL_ENV + " installs\n"
        "# something else instead (a wheel, a fork).\n"
        "import importlib\n"
        "import os\n"
        "\n"
        "try:\n"
        "    import nbhelpers\n"
        "except ImportError:\n"
        f'    _spec = (os.environ.get("{INSTALL_ENV}")\n'
        f'             or "git+{repo_url}")\n'
        "    %pip install --quiet {_spec}\n"
        "    importlib.invalidate_caches()\n"
        "    import nbhelpers"
    )


def _machine(tag: str) -> str:
    m = re.fullmatch(r"cpu(\d+)", tag)
    return f"{m.group(1)} CPU cores" if m else tag.upper()


GPU_UNMEASURED = "estimate pending: not measured yet"
ESTIMATE_GPU = "T4"  # Colab's GPU: the one a learner who presses the badge most likely gets


def gpu_estimates(results_dir: Path | None = None, gpu: str = ESTIMATE_GPU) -> dict[str, tuple[float, float]]:
    """Per notebook, the gpu profile's predicted (fast, slow) seconds on ``gpu`` from the last gpu dry run
    (``python -m benchmarks.dryrun``): network time only, so only notebooks that train or sample a network
    get one."""
    folder = Path(results_dir) if results_dir is not None else ROOT / "benchmarks" / "results"
    out: dict[str, tuple[float, float]] = {}
    for path in sorted(folder.glob("dryrun__gpu__*.json")) if folder.is_dir() else []:
        data = read_json(path, "benchmark result")
        for name, row in data.get("notebooks", {}).items():
            band = row.get("predicted_s", {}).get(gpu)
            if row.get("status") == "ok" and band and max(band) > 0:
                out[name] = (min(band), max(band))
    return out


def series_totals(results_dir: Path | None = None) -> dict[str, dict]:
    """Per profile, the last whole-series run (``python -m benchmarks.series``, its JSON without a variant):
    ``{"wall_s", "floor_s", "machine", "date"}``, where every notebook ran and ended ``ok``."""
    folder = Path(results_dir) if results_dir is not None else ROOT / "benchmarks" / "results"
    out: dict[str, dict] = {}
    for path in sorted(folder.glob("series__*.json")) if folder.is_dir() else []:
        data = read_json(path, "benchmark result")
        rows = data.get("series", {}).get("notebooks", [])
        if data.get("variant") or not rows or any(r.get("status") != "ok" for r in rows):
            continue
        if [r["notebook"] for r in rows] != list_notebooks():
            continue  # a run of some notebooks only is not the series
        out[data["profile"]] = {"wall_s": data["series"]["total_wall_s"], "floor_s": data["floor"]["total_s"],
                                "machine": data.get("machine_tag", ""), "date": data.get("date", "")}
    return out


def series_note(totals: dict[str, dict]) -> str:
    """The sentence under the README's table: what ``make notebooks`` takes in order, against its floor."""
    parts = [f"`{p}` {format_duration(t['wall_s'])} on {_machine(t['machine'])} ({t['date'][:10]}), "
             f"{t['wall_s'] / t['floor_s']:.1f}× its arithmetic floor of {format_duration(t['floor_s'])}"
             for p, t in totals.items() if t["floor_s"] > 0]
    if not parts:
        return ""
    return (" The whole series in order, as `make notebooks` runs it on a fresh machine (one trained-model cache "
            "shared from empty): " + "; ".join(parts) + " (every counted FLOP of its trainings and samplers at the "
            "machine's float32 GEMM peak; `python -m benchmarks.series`).")


def format_band(lo: float, hi: float) -> str:
    """A predicted range in one unit, rounded as loosely as a prediction deserves: ``25–62 min``."""
    if hi < 90:
        return f"{lo:.0f}–{hi:.0f} s"
    if hi < 90 * 60:
        return f"{max(lo / 60, 1):.0f}–{hi / 60:.0f} min"
    return f"{lo / 3600:.1f}–{hi / 3600:.1f} h"


def _estimate_text(band: tuple[float, float] | None, short: bool = False) -> str:
    if band is None:
        return "not measured" if short else GPU_UNMEASURED
    if short:
        return f"~{format_band(*band)} ({ESTIMATE_GPU}, est.)"
    return f"estimate {format_band(*band)} of network time (gpu dry run; not measured)"


def costs(notebook: str, times: list[BenchmarkTime]) -> dict[str, BenchmarkTime | None]:
    """Per profile, the benchmark to quote: the slowest machine's (what a user should expect at worst)."""
    out: dict[str, BenchmarkTime | None] = {}
    for profile in PROFILES:
        runs = [b for b in times if b.notebook == notebook and b.profile == profile]
        out[profile] = max(runs, key=lambda r: r.seconds) if runs else None
    return out


def _cost_text(b: BenchmarkTime | None, profile: str, estimate: tuple[float, float] | None = None) -> str:
    if b is None:
        return _estimate_text(estimate) if profile == "gpu" else "not measured yet"
    return format_duration(b.seconds)


def _where(b: BenchmarkTime | None, profile: str, estimate: tuple[float, float] | None) -> str:
    if b is not None:
        return _machine(b.machine)
    return f"{ESTIMATE_GPU} (predicted)" if profile == "gpu" and estimate is not None else "—"


def costs_block(notebook: str, times: list[BenchmarkTime], estimates: dict[str, tuple[float, float]] | None = None) -> str:
    c = costs(notebook, times)
    est = (estimates or {}).get(notebook)
    return "\n".join([
        COSTS_BEGIN,
        "**What a run costs**: wall time of the whole notebook per `profile` (set in the parameters cell), "
        "from the last `make bench` (`benchmarks/README.md`).",
        "",
        "| profile | wall time | measured on |",
        "|---|---|---|",
        *(f"| `{p}` | {_cost_text(c[p], p, est)} | {_where(c[p], p, est)} |" for p in PROFILES),
        COSTS_END,
    ])


def stamp_header(source: str, notebook: str, repo_url: str, times: list[BenchmarkTime],
                 estimates: dict[str, tuple[float, float]] | None = None) -> str:
    """The header cell with its badge (second paragraph) and cost table (last block) brought up to date."""
    body = re.sub(re.escape(COSTS_BEGIN) + r".*?" + re.escape(COSTS_END), "", source, flags=re.S).rstrip()
    body = BADGE_LINE.sub("", body)
    title, _, rest = body.partition("\n")
    rest = re.sub(r"\A\n+", "", rest)
    return f"{title}\n\n{badge(repo_url, notebook)}\n\n{rest}\n\n{costs_block(notebook, times, estimates)}"


def stamp_notebook(nb: nbformat.NotebookNode, notebook: str, repo_url: str, times: list[BenchmarkTime],
                   estimates: dict[str, tuple[float, float]] | None = None) -> nbformat.NotebookNode:
    cells = nb.cells
    if not cells or cells[0].cell_type != "markdown":
        raise ValueError(f"{notebook}: the first cell must be the markdown header, got {cells[0].cell_type if cells else 'no cells'}")
    cells[0].source = stamp_header(cells[0].source, notebook, repo_url, times, estimates)
    install = next((c for c in cells if c.get("id") == INSTALL_CELL_ID), None)
    if install is None:
        install = nbformat.v4.new_code_cell()
        install["id"] = INSTALL_CELL_ID
        cells.insert(1, install)
    install.source = install_source(repo_url)
    install.metadata = {}
    install.outputs, install.execution_count = [], None
    return nb


def stamp_readme(text: str, repo_url: str, times: list[BenchmarkTime], names: list[str],
                 estimates: dict[str, tuple[float, float]] | None = None,
                 totals: dict[str, dict] | None = None) -> str:
    """The README's series table with its cost columns and Colab badges; the prose columns are kept."""
    if SERIES_BEGIN in text:
        head, rest = text.split(SERIES_BEGIN, 1)
        table, tail = rest.split(SERIES_END, 1)
    else:  # first stamp: the table under "## The series"
        m = re.search(r"(## The series\n\n)(\|.*?\n)(\n)", text, re.S)
        if not m:
            raise ValueError("README.md: no series table found under '## The series'")
        head, table, tail = text[:m.end(1)], m.group(2), text[m.start(3):]
    prose = {}
    for line in table.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`(\d\d_\w+)`", cols[0]) if cols else None
        if m:
            prose[m.group(1)] = cols[1:3]
    lines = [SERIES_BEGIN,
             "| notebook | what you learn | data | " + " | ".join(f"`{p}` run" for p in PROFILES) + " | |",
             "|---|---|---|" + "---|" * len(PROFILES) + "---|"]
    for name in names:
        what, data = (prose.get(name, []) + ["", ""])[:2]
        c = costs(name, times)
        cost_cells = [format_duration(c[p].seconds) if c[p] is not None
                      else _estimate_text((estimates or {}).get(name), short=True) if p == "gpu"
                      else "not measured" for p in PROFILES]
        lines.append(f"| `{name}` | {what} | {data} | " + " | ".join(cost_cells) + f" | {badge(repo_url, name)} |")
    where = []
    for p in PROFILES:
        machines = sorted({_machine(b.machine) for b in times if b.profile == p and b.notebook in names})
        where.append(f"`{p}` on {' and '.join(machines)}" if machines else f"`{p}` not measured yet")
    note = (f" A `gpu` time marked *est.* is the dry run's prediction of the network time on a {ESTIMATE_GPU} "
            "(`python -m benchmarks.dryrun`), not a measurement." if estimates else "")
    lines += ["", "Run times: wall time of the whole notebook from the last `make bench` of each profile "
              f"(`benchmarks/README.md`); {', '.join(where)}.{note}{series_note(totals or {})} The badge opens "
              "the notebook in Colab, where its first cell installs `nbhelpers`.", SERIES_END]
    return head + "\n".join(lines) + "\n\n" + tail.lstrip("\n")


def stamp_all(check: bool = False, root: Path | None = None) -> list[Path]:
    """Stamp every notebook and the README; return the files that changed (or would, with ``check``)."""
    root = Path(root) if root is not None else ROOT
    repo_url = repository_url(root / "pyproject.toml")
    times = benchmark_times(root / "benchmarks" / "results")
    estimates = gpu_estimates(root / "benchmarks" / "results")
    names = list_notebooks()
    changed = []
    for name in names:
        path = root / "notebooks" / f"{name}.ipynb"
        before = path.read_text()
        after = nbformat.writes(stamp_notebook(nbformat.reads(before, as_version=4), name, repo_url, times, estimates)) + "\n"
        if after != before:
            changed.append(path)
            if not check:
                path.write_text(after)
    readme = root / "README.md"
    before = readme.read_text()
    after = stamp_readme(before, repo_url, times, names, estimates, series_totals(root / "benchmarks" / "results"))
    if after != before:
        changed.append(readme)
        if not check:
            readme.write_text(after)
    return changed


@tool_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.stamp_colab", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = ap.parse_args(argv)
    changed = stamp_all(check=args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'stamped'}: {path.relative_to(ROOT)}")
    if args.check and changed:
        print("run `make colab-badges` to bring them up to date", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
