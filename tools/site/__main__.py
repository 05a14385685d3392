"""``python -m tools.site``: build the site of the last finished run (``make site``)."""
from __future__ import annotations

import argparse
import sys

from nbhelpers.cli import tool_errors
from nbhelpers.runtime import ROOT
from tools.site.build import build_site, find_run, screenshots_dir


def _shown(path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


@tool_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.site",
                                 description="Build build/site/, a static site of the last finished cpu or gpu run.")
    ap.add_argument("--notebooks", default="all", help="'all' (the default) or a comma list such as 01,02")
    ap.add_argument("--check", action="store_true",
                    help="then open every page in Chromium: console errors, broken images and links, maths, "
                         "a screenshot per page in build/site-screenshots/")
    args = ap.parse_args(argv)
    run = find_run(args.notebooks)
    print(f"site of {run.describe()}", flush=True)
    site = build_site(run)
    print(f"wrote {_shown(site.folder)}/ ({len(site.pages)} pages) in {site.seconds:.0f} s")
    if args.check:
        from tools.site.browser import check_site

        result = check_site(site.folder, screenshots_dir())
        print(result.summary())
        print(f"screenshots in {_shown(screenshots_dir())}/")
        return 1 if result.problems else 0
    print(f"view it with `python -m http.server -d {_shown(site.folder)}` (http://127.0.0.1:8000), "
          f"check it in a browser with `python -m tools.site --check`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
