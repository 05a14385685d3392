"""Project-level checks: notebooks are committed clean and well-formed, environment.yml matches
pyproject.toml, and the notebook harness fails early and clearly on bad parameters."""
import json
import re
import subprocess
import tomllib

import pytest
import torch
import yaml

from nbhelpers.runner import NOTEBOOK_DIR, list_notebooks, select_notebooks
from nbhelpers.runtime import ROOT
from tests.conftest import read_notebook as _nb
from tests.needs import git_checkout_problem, need

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert [p.stem for p in NOTEBOOKS] == list_notebooks() and len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    for cell in _nb(path)["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], f"{path.name} carries outputs"
            assert cell.get("execution_count") is None, f"{path.name} carries execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    cells = _nb(path)["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).lstrip().startswith("#")
    code = [c for c in cells if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = "".join(tagged[0]["source"])
    for name in ("device", "profile", "seed"):
        assert re.search(rf"^{name}\s*=", params, re.M), f"parameters cell lacks {name}"
    assert code[0].get("id") == "cell-install" and "%pip install" in "".join(code[0]["source"]), \
        "the first code cell installs nbhelpers where it is missing (make colab-badges writes it)"
    assert code[1] is tagged[0], "the parameters cell follows the install cell"
    setup = "".join(code[2]["source"])
    assert f'nb.setup("{path.stem}"' in setup, "the cell after the parameters resolves device and profile"
    src = "".join("".join(c["source"]) for c in code)
    assert "import *" not in src


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_sees_every_parameter(path):
    # papermill skips (with a warning) any parameter line it cannot parse, e.g. one whose comment holds "=";
    # such a parameter would not be listed by `papermill --help-notebook`.
    import nbformat
    from papermill.translators import PythonTranslator

    cell = next(c for c in _nb(path)["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    src = "".join(cell["source"])
    assigned = re.findall(r"^(\w+)\s*=", src, re.M)
    parsed = [p.name for p in PythonTranslator.inspect(nbformat.v4.new_code_cell(src))]
    assert parsed == assigned


def test_select_notebooks():
    names = list_notebooks()
    assert select_notebooks("all") == names
    assert select_notebooks(names[0][:2]) == [names[0]]
    with pytest.raises(ValueError, match="valid choices"):
        select_notebooks("99")


def _requirements_from_pyproject():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = data["project"]["optional-dependencies"]
    # every extra the Makefile installs (the peer benchmarks' extra is not part of the environment)
    installed = re.search(r'pip install --quiet -e "\.\[([a-z,]+)\]"', (ROOT / "Makefile").read_text()).group(1).split(",")
    assert set(installed) >= {"lab", "dev", "fid", "site", "course"}, installed
    reqs = list(data["project"]["dependencies"]) + [r for key in installed for r in extras[key]]
    return {re.split(r"[<>=!~ ]", r, maxsplit=1)[0].lower(): r[len(re.split(r'[<>=!~ ]', r, maxsplit=1)[0]):].strip() for r in reqs}


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    pip = next((d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d), [])
    for dep in [d for d in env["dependencies"] if isinstance(d, str)] + [d for d in pip if not d.startswith("-")]:
        name = re.split(r"[<>=!~ ]", dep, maxsplit=1)[0].lower()
        conda[name] = dep[len(name):].strip()
    rename = {"torch": "pytorch"}
    py = _requirements_from_pyproject()
    for name, spec in py.items():
        assert rename.get(name, name) in conda, f"{name} missing from environment.yml"
        assert conda[rename.get(name, name)] == spec, f"{name}: pyproject {spec!r} vs environment.yml {conda[rename.get(name, name)]!r}"
    assert conda["python"] == ">=" + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"][2:]
    # conda-forge alone: its pytorch selects the CUDA build itself; the pytorch channel is deprecated
    assert env["channels"] == ["conda-forge"]
    assert not any(isinstance(d, str) and d.startswith("pytorch-cuda") for d in env["dependencies"])


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "NBHELPERS_DATA_DIR" in ci and re.search(r"^make test$", ci, re.M)
    assert "MPLBACKEND" not in ci
    # the real-browser test needs Debian's chromium: CI installs it where it is missing, before the tests
    assert re.search(r"apt-get install -y -q chromium", ci) and ci.index("chromium") < ci.index("\nmake test")
    readme = (ROOT / "README.md").read_text()
    assert "make notebooks" in readme and "make test" in readme


def _papermill_error(tmp_path, **params):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="ValueError") as err:
        pm.execute_notebook(str(NOTEBOOKS[0]), str(tmp_path / "out.ipynb"), parameters=params,
                            kernel_name="python3", progress_bar=False, cwd=str(NOTEBOOK_DIR))
    return err.value


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_papermill_missing_device_stops_at_setup(tmp_path, monkeypatch):
    monkeypatch.delenv("NBHELPERS_DEVICE", raising=False)
    err = _papermill_error(tmp_path, device="cuda")
    assert err.ename == "ValueError"
    assert err.evalue == "device 'cuda' is not available here; available devices: cpu"
    out = json.loads((tmp_path / "out.ipynb").read_text())
    code = [c for c in out["cells"] if c["cell_type"] == "code"]
    failed = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    # install, parameters, injected parameters, then the setup cell: nothing after it ran
    assert failed == [3] and all(c.get("execution_count") is None for c in code[4:])


def test_papermill_unknown_profile_lists_choices(tmp_path, monkeypatch):
    monkeypatch.delenv("NBHELPERS_PROFILE", raising=False)
    err = _papermill_error(tmp_path, profile="fast")
    assert err.ename == "ValueError" and "smoke, cpu, gpu" in err.evalue


def test_every_figure_the_readme_shows_is_in_the_repository():
    readme = (ROOT / "README.md").read_text()
    shown = [p for p in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme) if not p.startswith("https://")]  # badges
    assert shown, "the README shows no figures"
    missing = [p for p in shown if not (ROOT / p).is_file()]
    assert not missing, f"README figures missing from the checkout: {missing}"
    problem = git_checkout_problem()
    need(not problem, f"not inside a git checkout: {problem}")
    proc = subprocess.run(["git", "check-ignore", *shown], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode in (0, 1), f"git check-ignore failed ({proc.returncode}): {proc.stderr.strip()}"
    ignored = proc.stdout.split()  # exit 1: none of them is ignored
    assert proc.returncode == 1 and not ignored, f"README figures ignored by .gitignore (they would not be committed): {ignored}"
