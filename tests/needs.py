"""What a test needs from the machine (a browser, a data set, an optional package), said one way.

Locally a missing need skips the test with the reason. Under ``CI=true`` it fails instead, naming what
is missing, so a CI run can never pass by skipping (``.ci/run`` installs everything the suite needs).
"""
from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

__all__ = ["in_ci", "need", "need_module", "git_checkout_problem"]

ROOT = Path(__file__).resolve().parents[1]


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


def git_checkout_problem() -> str:
    """Why ``ROOT`` is not a usable git checkout of this repository ("" when it is): no git, not a work
    tree, or git refusing it (e.g. "detected dubious ownership")."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--is-inside-work-tree", "--show-toplevel"], cwd=ROOT,
                              capture_output=True, text=True)
    except FileNotFoundError:
        return "git is not installed"
    if proc.returncode != 0:
        return proc.stderr.strip() or f"git rev-parse exited with {proc.returncode}"
    inside, top = (proc.stdout.splitlines() + ["", ""])[:2]
    if inside != "true" or Path(top).resolve() != Path(ROOT).resolve():
        return f"{ROOT} is not the top of a git work tree (git says {proc.stdout.strip()!r})"
    return ""
