"""Benchmarks: notebook wall times and headline metrics per profile, and peer comparisons.

Benchmarks read the data where ``$NBHELPERS_DATA_DIR`` points. When it is unset and the offline copies sit
beside the checkout (``../shared/data``, as on the project's machines), they are used, so a benchmark never
quietly falls back to random images.
"""
import os
from pathlib import Path

from nbhelpers.runtime import DATA_ENV, ROOT

OFFLINE_DATA = ROOT.parent / "shared" / "data"

if not os.environ.get(DATA_ENV, "").strip() and OFFLINE_DATA.is_dir():
    os.environ[DATA_ENV] = str(OFFLINE_DATA)
