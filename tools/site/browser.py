"""Open every page of a built site in a real browser, as a reader would, and say what is wrong.

The site is served by ``http.server`` on 127.0.0.1 and read by Debian's Chromium through playwright (its own
browser download is not needed). Per page: the console's errors, every request that failed or was answered
with an error, every image that did not load, every internal link whose page or anchor is missing, any
request to another host (the site must be self-contained), and the maths — every formula typeset by
MathJax, none with a TeX error. One screenshot per page.
"""
from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

VIEWPORT = {"width": 1280, "height": 900}


@dataclass(frozen=True)
class PageCheck:
    """What one page showed in the browser."""

    page: str
    screenshot: Path
    console_errors: tuple[str, ...]
    broken: tuple[str, ...]
    formulas: int
    typeset: int
    images: int

    @property
    def problems(self) -> list[str]:
        out = [f"{self.page}: console error: {e}" for e in self.console_errors]
        out += [f"{self.page}: {b}" for b in self.broken]
        if self.typeset < self.formulas:
            out.append(f"{self.page}: {self.formulas - self.typeset} of {self.formulas} formulas not typeset")
        return out


@dataclass(frozen=True)
class SiteCheck:
    pages: tuple[PageCheck, ...]

    @property
    def problems(self) -> list[str]:
        return [p for page in self.pages for p in page.problems]

    def summary(self) -> str:
        n_img = sum(p.images for p in self.pages)
        n_math = sum(p.typeset for p in self.pages)
        bad = self.problems
        head = f"{len(self.pages)} pages, {n_img} images, {n_math} formulas typeset: "
        return head + ("no problem" if not bad else f"{len(bad)} problems\n  " + "\n  ".join(bad))


def chromium() -> str | None:
    """Debian's Chromium on PATH (``apt-get install chromium``), or None."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (a free port) for the duration; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a page closed mid-download: not an error
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


_PAGE_STATE = """() => ({
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  images: [...document.querySelectorAll('img')].map(i => ({src: i.currentSrc || i.src,
                                                           ok: i.complete && i.naturalWidth > 0})),
  formulas: document.querySelectorAll('.math').length,
  typeset: [...document.querySelectorAll('.math')].filter(m => m.querySelector('mjx-container')).length,
  texErrors: document.querySelectorAll('mjx-merror').length,
})"""


def _refuse(broken: list[str]):
    """A route handler for requests to another host: noted, and answered with a network error."""

    def handler(route) -> None:
        broken.append(f"loads from another host: {route.request.url}")
        route.abort()

    return handler


def pages_of(folder: Path) -> list[str]:
    """The site's pages: every ``*.html`` outside the folders Sphinx keeps its assets in (``_static/`` …)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(folder).parts[:-1]))


def check_site(folder: Path, screenshots: Path, browser_path: str | None = None) -> SiteCheck:
    """Every page of the site at ``folder`` in Chromium; screenshots to ``screenshots/<page>.png``."""
    from playwright.sync_api import sync_playwright

    exe = browser_path or chromium()
    if exe is None:
        raise ValueError("no Chromium on PATH: apt-get install chromium")
    folder = Path(folder)
    screenshots = Path(screenshots)
    screenshots.mkdir(parents=True, exist_ok=True)
    results: list[PageCheck] = []
    ids: dict[str, set[str]] = {}
    links: dict[str, list[str]] = {}
    with serve(folder) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            for name in pages_of(folder):
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(120_000)  # a busy two-core machine: MathJax on a long page takes a while
                errors: list[str] = []
                broken: list[str] = []
                page.on("console", lambda m, errors=errors: m.type == "error" and errors.append(m.text))
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.on("requestfailed", lambda r, broken=broken: broken.append(f"request failed: {r.url} ({r.failure})"))
                page.on("response", lambda r, broken=broken: r.status >= 400 and broken.append(f"HTTP {r.status}: {r.url}"))

                page.route(lambda url: not url.startswith(base), _refuse(broken))
                url = urllib.parse.urljoin(base, name)
                page.goto(url, wait_until="load")
                # MathJax typesets after load; its startup promise settles when every formula is done
                page.evaluate("async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise)"
                              " await MathJax.startup.promise; }")
                state = page.evaluate(_PAGE_STATE)
                broken += [f"image did not load: {i['src']}" for i in state["images"] if not i["ok"]]
                if state["texErrors"]:
                    broken.append(f"{state['texErrors']} formulas with a TeX error")
                shot = screenshots / (name.replace("/", "__").removesuffix(".html") + ".png")
                page.screenshot(path=str(shot))
                ids[url] = set(state["ids"])
                links[name] = state["links"]
                results.append(PageCheck(name, shot, tuple(errors), tuple(broken), state["formulas"],
                                         state["typeset"], len(state["images"])))
                page.close()
        finally:
            browser.close()
        statuses: dict[str, int] = {}
        final = []
        for result in results:  # internal links: the target answers 200 and, for a page, has the anchor
            bad = list(result.broken)
            for href in links[result.page]:
                if not href.startswith(base):
                    continue
                target, _, anchor = href.partition("#")
                if target not in statuses:
                    statuses[target] = _status(target)
                if statuses[target] != 200:
                    bad.append(f"link to {href}: HTTP {statuses[target]}")
                elif anchor and target in ids and urllib.parse.unquote(anchor) not in ids[target]:
                    bad.append(f"link to {href}: no element with id {anchor!r} there")
            final.append(PageCheck(result.page, result.screenshot, result.console_errors, tuple(dict.fromkeys(bad)),
                                   result.formulas, result.typeset, result.images))
    return SiteCheck(tuple(final))
