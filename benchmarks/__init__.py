"""Benchmarks: notebook wall times and headline metrics per profile, and peer comparisons.

Benchmarks read the data where ``$NBHELPERS_DATA_DIR`` points. When it is unset and the offline copies sit
beside the checkout (``../shared/data``, as on the project's machines), a benchmark's ``main`` uses them,
so a benchmark never quietly falls back to a stand-in.
"""
import os
from pathlib import Path

from nbhelpers.runtime import DATA_ENV, ROOT

OFFLINE_DATA = ROOT.parent / "shared" / "data"


def use_offline_data() -> None:
    """Point ``$NBHELPERS_DATA_DIR`` at the offline copies when it is unset and they exist. Called by each
    benchmark's ``main`` (not on import, so importing a benchmark in a test changes nothing around it)."""
    if not os.environ.get(DATA_ENV, "").strip() and OFFLINE_DATA.is_dir():
        os.environ[DATA_ENV] = str(OFFLINE_DATA)


def start(build_parser, argv):
    """A benchmark's first lines: the offline data where nothing else is set, then its parsed arguments.
    Returns ``(parser, args)``."""
    use_offline_data()
    ap = build_parser()
    return ap, ap.parse_args(argv)
