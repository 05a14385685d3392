"""Colab in one cell: badges and install cells follow pyproject's repository URL; the install cell makes a
bare kernel import nbhelpers with no restart; installing the package never moves a hosted kernel's stack."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import nbformat
import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from nbhelpers.runner import list_notebooks
from nbhelpers.runtime import PROFILE_ENV, ROOT, resolve_profile
from tools import stamp_colab

COLAB_PINS = Path(__file__).parent / "data" / "colab-constraints.txt"
KERNEL_STACK = {"ipykernel", "ipython", "jupyter-client", "jupyter-core", "jupyterlab", "notebook", "tornado",
                "traitlets", "pyzmq", "papermill", "nbformat", "nbclient", "nbconvert"}


def _pins(path=COLAB_PINS):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _runtime_requirements():
    return [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]


# --------------------------------------------------------------------------- badges, costs, install cell
def test_badges_and_install_cells_follow_the_repository_url():
    url = stamp_colab.repository_url()
    readme = (ROOT / "README.md").read_text()
    for name in list_notebooks():
        nb = nbformat.read(str(ROOT / "notebooks" / f"{name}.ipynb"), as_version=4)
        link = f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/main/notebooks/{name}.ipynb"
        assert f"]({link})" in nb.cells[0].source.split("\n\n")[1], f"{name}: no badge under the title"
        assert f"]({link})" in readme, f"README: no Colab badge for {name}"
        install = next(c for c in nb.cells if c.cell_type == "code")
        assert f'"git+{url}"' in install.source and "%pip install" in install.source


def test_stamps_are_up_to_date():
    # badges, install cells, run costs (from benchmarks/results) and the README table: all as the tool writes them
    stale = stamp_colab.stamp_all(check=True)
    assert stale == [], f"out of date: {[str(p.relative_to(ROOT)) for p in stale]}; run `make colab-badges`"


def test_a_fork_restamps_everything_from_one_value(tmp_path):
    for rel in ("pyproject.toml", "README.md", "notebooks", "benchmarks/results"):
        src = ROOT / rel
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / rel)
    py = tmp_path / "pyproject.toml"
    py.write_text(py.read_text().replace(stamp_colab.repository_url(), "https://github.com/someone/my-fork"))
    changed = stamp_colab.stamp_all(root=tmp_path)
    assert len(changed) == len(list_notebooks()) + 1
    text = "".join(p.read_text() for p in changed)
    assert "diffusion-notebooks/diffusion-notebooks" not in text
    assert text.count("colab.research.google.com/github/someone/my-fork/blob/main/notebooks/") == 2 * len(changed) - 2
    assert stamp_colab.stamp_all(root=tmp_path) == []  # idempotent
    py.write_text(py.read_text().replace("https://github.com/someone/my-fork", "https://gitlab.com/a/b"))
    with pytest.raises(ValueError, match=r"must be https://github.com/<owner>/<name>.*'https://gitlab.com/a/b'"):
        stamp_colab.stamp_all(root=tmp_path)


def test_costs_quote_measurements_and_mark_the_gpu_unmeasured():
    from nbhelpers.runner import BenchmarkTime

    times = [BenchmarkTime("04_x", "cpu", "cpu2", 799.2), BenchmarkTime("04_x", "smoke", "cpu2", 48.0)]
    block = stamp_colab.costs_block("04_x", times)
    assert "| `smoke` | 48 s | 2 CPU cores |" in block and "| `cpu` | 13.3 min | 2 CPU cores |" in block
    assert "| `gpu` | estimate pending: not measured yet | — |" in block
    times.append(BenchmarkTime("04_x", "gpu", "h100", 75.0))
    assert "| `gpu` | 75 s | H100 |" in stamp_colab.costs_block("04_x", times)


def test_an_unmeasured_gpu_profile_quotes_the_dry_run_prediction(tmp_path):
    import json

    from nbhelpers.runner import BenchmarkTime

    rows = {"04_x": {"status": "ok", "predicted_s": {"T4": [3700.0, 1480.0], "A100": [1500.0, 290.0]}},
            "01_x": {"status": "ok", "predicted_s": {"T4": [0.0, 0.0]}},  # no network: nothing to predict
            "07_x": {"status": "error", "predicted_s": {"T4": [10.0, 5.0]}}}
    (tmp_path / "dryrun__gpu__cpu2.json").write_text(json.dumps({"kind": "dryrun", "notebooks": rows}))
    est = stamp_colab.gpu_estimates(tmp_path)
    assert est == {"04_x": (1480.0, 3700.0)}
    times = [BenchmarkTime("04_x", "cpu", "cpu2", 799.2)]
    block = stamp_colab.costs_block("04_x", times, est)
    assert "| `gpu` | estimate 25–62 min of network time (gpu dry run; not measured) | T4 (predicted) |" in block
    assert "| `gpu` | estimate pending: not measured yet | — |" in stamp_colab.costs_block("01_x", times, est)
    assert [stamp_colab.format_band(*b) for b in ((30, 80), (100, 400), (3000, 20000))] == \
        ["30–80 s", "2–7 min", "0.8–5.6 h"]
    times.append(BenchmarkTime("04_x", "gpu", "t4", 900.0))  # a measurement replaces the estimate
    assert "| `gpu` | 15.0 min | T4 |" in stamp_colab.costs_block("04_x", times, est)


def test_the_readme_quotes_the_whole_series_against_its_floor(tmp_path):
    import json

    from nbhelpers.runner import list_notebooks

    names = list_notebooks()
    run = {"kind": "series", "profile": "cpu", "machine_tag": "cpu2", "date": "2026-12-07 19:50", "variant": "",
           "floor": {"total_s": 1800.0}, "series": {"total_wall_s": 2700.0,
                                                    "notebooks": [{"notebook": n, "status": "ok"} for n in names]}}
    (tmp_path / "series__cpu__cpu2.json").write_text(json.dumps(run))
    (tmp_path / "series__cpu__cpu2__whole-batch.json").write_text(json.dumps({**run, "variant": "whole-batch"}))
    (tmp_path / "series__smoke__cpu2.json").write_text(json.dumps(  # a failed notebook: no total to quote
        {**run, "profile": "smoke", "series": {"total_wall_s": 60.0, "notebooks": [{"notebook": names[0], "status": "failed"}]}}))
    totals = stamp_colab.series_totals(tmp_path)
    assert totals == {"cpu": {"wall_s": 2700.0, "floor_s": 1800.0, "machine": "cpu2", "date": "2026-12-07 19:50"}}
    text = stamp_colab.stamp_readme("# x\n\n## The series\n\n| a |\n\nrest\n", stamp_colab.repository_url(), [],
                                    names, None, totals)
    assert "`cpu` 45.0 min on 2 CPU cores (2026-12-07), 1.5× its arithmetic floor of 30.0 min" in text
    assert stamp_colab.series_note({}) == ""


def test_auto_profile_picks_gpu_on_a_cuda_runtime(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert resolve_profile("auto", torch.device("cuda")) == "gpu"
    assert resolve_profile("auto", torch.device("cuda:0")) == "gpu"
    assert resolve_profile("auto", torch.device("cpu")) == "cpu"


# --------------------------------------------------------------------------- a wheel, a bare kernel
@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """nbhelpers built as a wheel from a copy of the sources (offline: no build isolation, so the [dev]
    extra's setuptools builds it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for rel in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / rel, src / rel)
    shutil.copytree(ROOT / "nbhelpers", src / "nbhelpers", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    str(src), "-w", str(tmp / "dist")], check=True, capture_output=True)
    (whl,) = (tmp / "dist").glob("nbhelpers-*.whl")
    return whl


@pytest.mark.slow
def test_install_cell_makes_a_bare_kernel_import_nbhelpers_without_restart(tmp_path, wheel, monkeypatch):
    # A venv that sees this environment's packages (torch, ipykernel, pip …) through a path entry, but not
    # nbhelpers: the editable install's import hook lives in a .pth file that a plain path entry does not run.
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = bare / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "host_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.delenv("PYTHONPATH", raising=False)
    probe = subprocess.run([str(python), "-c", "import torch, ipykernel, pip; import nbhelpers"], cwd=work,
                           capture_output=True, text=True)
    assert "No module named 'nbhelpers'" in probe.stderr, probe.stderr

    kernels = tmp_path / "jupyter" / "kernels" / "bare"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bare", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("NBHELPERS_INSTALL_SPEC", f"--no-index {wheel}")  # offline: the dependencies are present
    monkeypatch.setenv("NBHELPERS_HOME", str(work))
    monkeypatch.setenv(PROFILE_ENV, "smoke")

    from nbclient import NotebookClient

    nb = nbformat.read(str(ROOT / "notebooks" / "01_sdes.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    check = nbformat.v4.new_code_cell("import nbhelpers\nprint(nbhelpers.__file__)\nprint(run.profile, nb.runtime.ROOT)")
    nb.cells = code[:3] + [check]  # install, parameters, setup, then where the package came from
    NotebookClient(nb, kernel_name="bare", timeout=300, resources={"metadata": {"path": str(work)}}).execute()
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs).split()
    assert printed[0].startswith(str(site)), f"nbhelpers imported from {printed[0]}, not the wheel installed in {site}"
    assert printed[1:] == ["smoke", str(work)]


# --------------------------------------------------------------------------- a hosted kernel's pins
def test_runtime_requirements_admit_colab_pins():
    pins = _pins()
    reqs = _runtime_requirements()
    stack = sorted(canonicalize_name(r.name) for r in reqs if canonicalize_name(r.name) in KERNEL_STACK)
    assert stack == [], f"runtime dependencies name the kernel stack {stack}; they belong in the [lab] extra"
    for r in reqs:
        name = canonicalize_name(r.name)
        if name in pins:
            assert r.specifier.contains(pins[name], prereleases=True), \
                f"{r} would upgrade Colab's {name}=={pins[name]}"


@pytest.mark.slow
def test_install_resolves_without_moving_pinned_packages(tmp_path, wheel):
    # Offline resolution against this environment standing in for a hosted runtime: its kernel stack and torch
    # pinned where they are (the versions Colab pins are checked against the specifiers above).
    from importlib.metadata import PackageNotFoundError, version

    pins = {}
    for name in _pins():
        try:
            pins[name] = version(name)
        except PackageNotFoundError:
            continue
    assert {"torch", "ipykernel", "ipython", "jupyter-client", "ipywidgets"} <= set(pins)
    constraints = tmp_path / "pins.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet",
                           "--report", str(report), "-c", str(constraints), str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    install = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert "nbhelpers" in install
    moved = sorted(set(install) & set(pins))
    assert moved == [], f"installing nbhelpers would change {moved}"
