"""What a test needs from the machine (a browser, a data set, an optional package), said one way.

Locally a missing need skips the test with the reason. Under ``CI=true`` it fails instead, naming what
is missing, so a CI run can never pass by skipping (``.ci/run`` installs everything the suite needs).
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

__all__ = ["in_ci", "need", "need_module"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(ok: bool, what: str) -> None:
    """Skip (locally) or fail (under ``CI=true``) unless ``ok``; ``what`` says what is missing and how to get it."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"CI=true and {what}: a CI run must not skip this test", pytrace=False)
    pytest.skip(what)


def need_module(name: str, what: str) -> ModuleType:
    """Import ``name``, or :func:`need` it with ``what`` (e.g. "clean-fid missing: pip install -e '.[fid]'")."""
    try:
        return importlib.import_module(name)
    except ImportError:
        need(False, what)
        raise  # unreachable: need() skipped or failed
