"""Sphinx configuration of the executed series' site, built by ``make site`` (``python -m tools.site``).

The builder copies this file beside the sources it writes, with ``site.json``: the values that come from
the repository and the run (the project's name, the repository's address). Sphinx with MyST-NB and the
book theme is the engine Jupyter Book 1 was built on; every piece of it, MathJax included, comes from
PyPI, so the site builds offline and loads nothing from another host.
"""
import json
from pathlib import Path

_site = json.loads((Path(__file__).parent / "site.json").read_text(encoding="utf-8"))

project = _site["project"]
html_title = _site["project"]
author = _site["project"]
copyright = _site["copyright"]

extensions = [
    "myst_nb",
    "sphinx-mathjax-offline",  # MathJax 3 served from _static/mathjax, not a CDN
]
exclude_patterns = ["site.json", "_build"]

# The pages are the run's executed notebooks: never executed again here, outputs as the run left them.
nb_execution_mode = "off"
# A written answer is a Markdown output with maths (run.answer): parse it as MyST, like the cells.
nb_render_markdown_format = "myst"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "attrs_inline"]
myst_heading_anchors = 3
# The notebooks number their sections themselves ("## 1a · ...") and some step from # to ###.
suppress_warnings = ["myst.header"]

html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": _site["repository_url"],
    "repository_branch": _site["branch"],
    "path_to_docs": "notebooks",
    "use_repository_button": True,
    "use_download_button": False,  # the executed notebooks are tens of MB; the badges lead to the sources
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navbar_persistent": [],  # search lives in the sidebar; without this a second search bar tops every page
}
# The theme's colour mode starts as "light" (with no stored choice it would log a console error).
html_context = {"default_mode": "light"}
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_favicon = "_static/favicon.svg"
html_copy_source = False
html_show_sourcelink = False
