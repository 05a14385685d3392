"""The executed series as a static site: ``make site`` (``python -m tools.site``).

Input: the last run of the series under ``nbhelpers.runtime.output_root()`` — the executed notebooks in
``build/notebooks/`` and their records in ``build/metrics/`` — which must be a finished ``cpu`` or ``gpu``
run, one profile for every notebook: a smoke run or a run stopped half-way is refused, naming the file and
what is wrong. Output: ``build/site/`` under the same root (never committed): a landing page with the
series table, the gallery, and one page per notebook with its outputs, maths typeset, the static figure of
each explorer and the written answers set apart with the claims checked beside them.

The site is built by Sphinx with MyST-NB and the book theme (``conf.py``), the engine of Jupyter Book 1.
Jupyter Book 2 and Quarto were the first choices, but both fetch part of themselves from GitHub at build
or install time (Jupyter Book 2 its site theme, Quarto its binary), which an offline machine cannot; the
Sphinx stack, MathJax included, installs from PyPI alone (the ``[site]`` extra).

``python -m tools.site --check`` also opens every page in Chromium (``browser.py``): console errors,
broken images and links, formulas not typeset, and a screenshot per page in ``build/site-screenshots/``.
"""
from tools.site.build import BuiltSite, SeriesRun, build_site, find_run, screenshots_dir, site_dir

__all__ = ["BuiltSite", "SeriesRun", "build_site", "find_run", "site_dir", "screenshots_dir"]
