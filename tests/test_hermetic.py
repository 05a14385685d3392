"""``make test`` touches nothing of the user's: checked on the checkout at the end of the session.

The root ``conftest.py`` points every output at a temporary root; this test (moved to the end of the
session, after the notebooks) compares the checkout's ``build/``, ``checkpoints/`` and ``figures/``
with their state when the session started, file by file (size, mtime, SHA-256).
"""
from __future__ import annotations

import os
from pathlib import Path

import conftest
from nbhelpers import runtime


def test_outputs_go_to_the_temporary_root():
    out = Path(os.environ["NBHELPERS_OUTPUT_DIR"]).resolve()
    assert out != runtime.ROOT and runtime.ROOT not in out.parents
    for path in (runtime.build_dir(), runtime.checkpoints_dir(), runtime.checkpoints_dir("smoke"),
                 runtime.figures_dir(), runtime.figures_dir("smoke"), runtime.metrics_dir()):
        assert out in path.parents, f"{path} is outside the test's output root {out}"


def test_the_checkout_is_unchanged_after_the_session(checkout_digest_at_start, tmp_path):
    # a sentinel: a file written through the runtime's paths lands in the temporary root, not the checkout
    sentinel = runtime.build_dir() / "metrics" / "hermetic-sentinel.json"
    runtime.atomic_write_bytes(sentinel, b"{}")
    assert sentinel.is_file() and runtime.output_root() in sentinel.parents
    now = conftest.tree_digest()
    changed = sorted(k for k in set(now) | set(checkout_digest_at_start) if now.get(k) != checkout_digest_at_start.get(k))
    assert not changed, f"the test session changed the checkout's own outputs: {changed[:20]}"
