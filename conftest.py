"""The test suite is hermetic: every output goes under a temporary root, never into the checkout.

Loaded by pytest for ``tests/`` and ``notebooks/`` alike (it sits at the repository root), before any
test or notebook kernel starts: ``$NBHELPERS_OUTPUT_DIR`` points ``build/``, ``checkpoints/`` and
``figures/`` (metrics, notebooks' outputs, dry runs, caches, stand-in data) at a fresh temporary folder,
which the kernels and subprocesses inherit. A user's own runs are byte-for-byte untouched by
``make test``; the last test of the session (``tests/test_hermetic.py``) checks that on the checkout.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
WATCHED = ("build", "checkpoints", "figures")
"""The checkout's folders a run writes into; the suite must leave them as they were."""

_CREATED: str | None = None
if not os.environ.get("NBHELPERS_OUTPUT_DIR", "").strip():
    _CREATED = tempfile.mkdtemp(prefix="nbhelpers-test-outputs-")
    os.environ["NBHELPERS_OUTPUT_DIR"] = _CREATED


def tree_digest(root: Path = REPO, folders: tuple[str, ...] = WATCHED) -> dict[str, str]:
    """``relative path → size, mtime and SHA-256`` of every file under ``root/<folder>`` (links by target)."""
    out: dict[str, str] = {}
    for name in folders:
        top = root / name
        if not top.exists():
            continue
        for path in sorted(top.rglob("*")):
            if path.is_symlink():
                out[str(path.relative_to(root))] = f"-> {os.readlink(path)}"
            elif path.is_file():
                st = path.stat()
                h = hashlib.sha256()
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                out[str(path.relative_to(root))] = f"{st.st_size} {st.st_mtime_ns} {h.hexdigest()}"
    return out


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_DIGEST] = tree_digest()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # the hermetic check runs last, after the notebooks
    last = [i for i in items if i.nodeid.startswith("tests/test_hermetic.py")]
    items[:] = [i for i in items if i not in last] + last


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CREATED is not None and not os.environ.get("NBHELPERS_KEEP_TEST_OUTPUTS"):
        shutil.rmtree(_CREATED, ignore_errors=True)


_DIGEST = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def checkout_digest_at_start(request: pytest.FixtureRequest) -> dict[str, str]:
    """The digest of the checkout's watched folders taken when the session started."""
    return request.config.stash[_DIGEST]
