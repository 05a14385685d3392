"""``make site``: the executed series as a static site (``tools/site/``).

Which runs the site refuses is checked on records written here (fast). Then a real run: notebooks 01 and 02
in the cpu profile (about ten seconds each on two cores, no data set), the site built from them through the
command line, and every page opened in Debian's Chromium through playwright, served by ``http.server`` on
127.0.0.1: no console error, every image and internal link answering 200, every formula typeset by MathJax,
nothing loaded from another host, one screenshot per page under the output root's ``build/site-screenshots/``.
The browser check is itself tested on a page broken on purpose, so a check that sees nothing cannot pass.
Needs the ``[site]`` extra, playwright and Chromium; without them the browser tests skip (fail under CI=true).
The two browser tests are marked slow: about 40 s together on a quiet two-core machine (two notebook runs,
the build, Chromium), so ``make unit`` leaves them to ``make test``.
"""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from nbhelpers.runtime import OUTPUT_ENV, PROFILE_ENV, figures_dir
from tests.needs import need, need_module
from tools.readme_figures import GALLERY
from tools.site import build as site_build
from tools.site.__main__ import main

PNG = bytes.fromhex("89504e470d0a1a0a")


@pytest.fixture
def out_root(tmp_path, monkeypatch):
    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path))
    return tmp_path


def _record(root, name, profile="cpu", complete=True, commit="abc1234"):
    """A run of ``name`` as the runner leaves it: executed copy, metrics record, gallery figure."""
    (root / "build" / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}")]),
                   root / "build" / "notebooks" / f"{name}.ipynb")
    (root / "build" / "metrics").mkdir(parents=True, exist_ok=True)
    (root / "build" / "metrics" / f"{name}.json").write_text(json.dumps({
        "notebook": name, "profile": profile, "complete": complete, "commit": commit, "device": "cpu",
        "seed": 0, "machine": {"threads": 2}, "metrics": {}}))
    fig = figures_dir(profile) / name / f"{GALLERY[name]}.png"
    fig.parent.mkdir(parents=True, exist_ok=True)
    fig.write_bytes(PNG)


# --------------------------------------------------------------------------- what the site refuses
def test_a_smoke_run_is_refused_naming_its_record(out_root, capsys):
    _record(out_root, "01_sdes", profile="smoke")
    metrics = out_root / "build" / "metrics" / "01_sdes.json"
    with pytest.raises(ValueError, match="smoke run") as err:
        site_build.find_run("01")
    assert str(metrics) in str(err.value) and "finished cpu or gpu run" in str(err.value)
    assert main(["--notebooks", "01"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "smoke run" in captured.err
    assert not (out_root / "build" / "site").exists()


def test_a_run_stopped_half_way_is_refused(out_root):
    _record(out_root, "01_sdes", complete=False)
    with pytest.raises(ValueError, match=r"did not finish.*make notebooks NOTEBOOKS=01 PROFILE=cpu"):
        site_build.find_run("01")


def test_a_notebook_never_run_and_a_mix_of_profiles_are_refused(out_root):
    _record(out_root, "01_sdes")
    with pytest.raises(ValueError, match=r"02_paths_schedules has no finished run here.*NOTEBOOKS=02"):
        site_build.find_run("01,02")
    _record(out_root, "02_paths_schedules", profile="gpu")
    with pytest.raises(ValueError, match="mix profiles.*01_sdes: cpu, 02_paths_schedules: gpu"):
        site_build.find_run("01,02")
    _record(out_root, "02_paths_schedules", commit="def5678")
    run = site_build.find_run("01,02")  # one profile, two commits: published, and both commits named
    assert run.profile == "cpu" and run.commit == "abc1234 (01), def5678 (02)"
    assert "the cpu run of 2 notebooks" in run.describe()


def test_the_readme_gives_the_series_table_and_the_gallery_captions():
    readme = (site_build.ROOT / "README.md").read_text()
    rows, cost_cols, note = site_build.readme_series(readme)
    assert set(rows) == set(GALLERY) and cost_cols == ["`smoke` run", "`cpu` run", "`gpu` run"]
    assert all(r.what and r.data and all(r.costs.values()) for r in rows.values())
    assert note.startswith("Run times:")
    assert set(site_build.readme_captions(readme)) == set(GALLERY)


# --------------------------------------------------------------------------- the browser
@pytest.fixture
def browser_check():
    """The site's browser check, with what it needs from the machine checked first."""
    need_module("playwright.sync_api", "playwright missing: pip install -e '.[dev]'")
    from tools.site import browser

    need(browser.chromium() is not None, "no Chromium on PATH: `apt-get install chromium` (.ci/run does)")
    return browser.check_site


@pytest.mark.slow
def test_the_browser_check_sees_what_a_reader_would(tmp_path, browser_check):
    site = tmp_path / "broken"
    site.mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4), "white").save(site / "ok.png")
    (site / "index.html").write_text(
        "<!doctype html><html><head><link rel='icon' href='data:,'></head><body>"
        "<img src='missing.png'><img src='ok.png'><img src='https://example.org/x.png'>"
        "<a href='nowhere.html'>a</a><a href='index.html#no-such-id'>b</a>"
        "<span class='math'>\\(x^2\\)</span><script>console.error('boom')</script></body></html>")
    result = browser_check(site, tmp_path / "shots")
    problems = "\n".join(result.problems)
    for expected in ("console error: boom", "HTTP 404: http://127.0.0.1", "image did not load",
                     "loads from another host: https://example.org/x.png", "nowhere.html: HTTP 404",
                     "no element with id 'no-such-id'", "1 of 1 formulas not typeset"):
        assert expected in problems, problems
    assert "ok.png" not in problems
    assert (tmp_path / "shots" / "index.png").read_bytes().startswith(PNG)


@pytest.mark.slow
def test_the_site_of_a_cpu_run_reads_well_in_a_browser(out_root, monkeypatch, capsys, browser_check):
    need_module("sphinx", "Sphinx missing: pip install -e '.[site]' (make site installs it)")
    need_module("myst_nb", "MyST-NB missing: pip install -e '.[site]' (make site installs it)")
    from nbhelpers.runner import run_notebook

    monkeypatch.delenv(PROFILE_ENV, raising=False)  # make test asks for smoke; the site takes a cpu run only
    names = ("01_sdes", "02_paths_schedules")
    for name in names:
        result = run_notebook(name, profile="cpu", device="cpu")
        assert result.status == "ok", result.error

    assert main(["--notebooks", "01,02"]) == 0
    said = capsys.readouterr().out
    commit = json.loads((out_root / "build" / "metrics" / "01_sdes.json").read_text())["commit"]
    assert f"site of the cpu run of 2 notebooks (01_sdes … 02_paths_schedules) in {out_root / 'build'}" in said
    assert f"commit {commit}" in said

    site = out_root / "build" / "site"
    index = (site / "index.html").read_text()
    for name in names:  # the series table: a link to the page, the README's costs, both Colab links
        assert f'href="{name}.html"' in index
        assert f"/notebooks/{name}.ipynb" in index and f"/exercises/{name}.ipynb" in index
    assert "03_flow_matching_2d" not in index and "colab-badge.svg" not in index
    page = (site / "02_paths_schedules.html").read_text()
    executed = nbformat.read(out_root / "build" / "notebooks" / "02_paths_schedules.ipynb", as_version=4)
    answers = sum("text/markdown" in o.get("data", {}) for c in executed.cells if ".answer(" in c.get("source", "")
                  for o in c.get("outputs", []))
    assert answers > 0 and len(re.findall(r'class="[^"]*\banswer admonition\b', page)) == answers
    assert "Checked in this run:" in page and 'id="claims-checked-in-this-run"' in page
    assert "NBHELPERS_INSTALL_SPEC" not in page  # Colab's install cell is left out

    shots = out_root / "build" / "site-screenshots"
    result = browser_check(site, shots)
    assert not result.problems, result.summary()
    pages = {p.page: p for p in result.pages}
    assert {"index.html", "gallery.html", *(f"{n}.html" for n in names)} <= set(pages)
    for name in names:  # maths typeset, every output figure shown
        assert pages[f"{name}.html"].formulas > 10 and pages[f"{name}.html"].typeset == pages[f"{name}.html"].formulas
        shown = sum("image/png" in o.get("data", {}) for c in
                    nbformat.read(out_root / "build" / "notebooks" / f"{name}.ipynb", as_version=4).cells
                    for o in c.get("outputs", []))
        assert pages[f"{name}.html"].images >= shown > 0
    assert pages["gallery.html"].images == len(names)
    for p in result.pages:
        assert p.screenshot.parent == shots and p.screenshot.read_bytes().startswith(PNG)
    assert re.search(r"\d+ pages, \d+ images, \d+ formulas typeset: no problem", result.summary())
