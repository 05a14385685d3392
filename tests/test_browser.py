"""A real browser: JupyterLab on 127.0.0.1, notebook 02 in the smoke profile, run all, move the explorer's
slider and dropdown and see the figure redraw; save, reopen without the kernel, and the explorer is still
there. Needs Debian's ``chromium`` (``.ci/run`` installs it) and the ``playwright`` package, whose bundled
driver is pointed at that browser; without them the test skips (fails under CI=true) and says which is missing."""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nbhelpers.runtime import ROOT
from tests.needs import need, need_module

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
OVERRIDES = ROOT / "tools" / "jupyterlab-overrides.json"
pytestmark = [pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET"):
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture
def sync_api():
    """Playwright's sync API, driving Debian's Chromium; checked before JupyterLab is started."""
    need(CHROMIUM is not None, "no Chromium on PATH: `apt-get install chromium` (.ci/run does)")
    return need_module("playwright.sync_api", "playwright missing: pip install -e '.[dev]'")


@pytest.fixture
def lab(tmp_path):
    need_module("jupyterlab", "JupyterLab missing: pip install -e '.[lab]'")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "02_paths_schedules.ipynb", work / "02.ipynb")
    app_settings = tmp_path / "app-settings"
    app_settings.mkdir()
    settings = json.loads(OVERRIDES.read_text())  # the project's setting: widget state saved with the notebook
    settings.update({  # for the test alone: every cell rendered (no windowing), no news pop-up over the page
        "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false"},
    })
    (app_settings / "overrides.json").write_text(json.dumps(settings))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "NBHELPERS_PROFILE": "smoke", "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
                             f"--LabApp.app_settings_dir={app_settings}", "--ServerApp.port_retries=0", "--allow-root",
                             "--LabApp.extension_manager=readonly"],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield base, token, work
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _open(page, base, token):
    page.goto(f"{base}/lab/tree/02.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    select = page.locator(".jp-Dialog button", has_text="Select")
    try:  # a kernel-choice dialog where the preferred kernel does not start by itself
        select.wait_for(timeout=5_000)
        select.click()
    except Exception:  # noqa: BLE001 - no dialog: the kernel started
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)


def _menu(page, top: str, item: str):
    page.locator(f".lm-MenuBar-itemLabel:text-is('{top}')").click()
    page.locator(f".lm-Menu-itemLabel:text-is('{item}')").click()


def _explorer(page):
    return page.locator(".jp-CodeCell", has_text="path_explorer(").last


def _figure_src(page) -> str:
    return _explorer(page).locator(".jp-OutputArea-output img").last.get_attribute("src")


def _wait_for_change(page, before: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        src = _figure_src(page)
        if src and src != before:
            return src
        page.wait_for_timeout(250)
    pytest.fail("the explorer's figure did not redraw")


def test_explorer_redraws_and_survives_save_and_reopen(sync_api, lab, tmp_path):
    base, token, work = lab
    page = None
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            _open(page, base, token)
            _menu(page, "Run", "Run All Cells")
            slider = _explorer(page).locator(".widget-slider .noUi-handle")
            slider.wait_for(timeout=240_000)
            page.wait_for_function("document.querySelectorAll('.jp-InputPrompt').length > 0 && "
                                   "![...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('[*]'))",
                                   timeout=240_000)
            first = _figure_src(page)
            assert first and first.startswith("data:image/png"), first

            slider.scroll_into_view_if_needed()
            box = slider.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + 150, box["y"] + box["height"] / 2, steps=8)
            page.mouse.up()
            second = _wait_for_change(page, first)
            _explorer(page).locator(".widget-dropdown select").select_option("cosine")
            third = _wait_for_change(page, second)
            assert len({first, second, third}) == 3
            page.screenshot(path=str(tmp_path / "live.png"))

            page.keyboard.press("Control+s")
            page.wait_for_function("!document.querySelector('.jp-mod-dirty')", timeout=30_000)
            saved = json.loads((work / "02.ipynb").read_text())
            assert "application/vnd.jupyter.widget-state+json" in saved["metadata"].get("widgets", {})
            page.close()

            for session in _api(base, token, "/api/sessions"):  # no kernel holds the widgets any more
                _api(base, token, f"/api/sessions/{session['id']}", method="DELETE")
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _open(page, base, token)
            _explorer(page).locator(".jp-OutputArea-output img").last.wait_for(timeout=60_000)
            page.wait_for_timeout(3000)  # the widget manager restores the saved state
            page.screenshot(path=str(tmp_path / "reopened.png"))
            text = page.locator(".jp-Notebook").inner_text()
            assert "model not found" not in text and "Error displaying widget" not in text
            assert _figure_src(page) == third  # the last figure, from the saved notebook
            assert _explorer(page).locator(".widget-slider").count() == 1
        except Exception:
            if page is not None and not page.is_closed():
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert not [e for e in errors if "widget" in e.lower()], errors
