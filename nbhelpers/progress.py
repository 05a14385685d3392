"""Progress bars that suit where they run: a widget in a live notebook, a text bar on a terminal, and in a
headless kernel (papermill, nbval) a text bar that writes only its final state."""
from __future__ import annotations

import os
from typing import Any

HEADLESS_ENV = "NBHELPERS_HEADLESS"


def in_interactive_frontend() -> bool:
    """True when cells run in a live Jupyter frontend that can display widgets.

    False outside an IPython kernel, in a kernel executing without stdin (how papermill and nbclient run
    cells: nothing will ever render a widget there) and where ``NBHELPERS_HEADLESS=1``."""
    if os.environ.get(HEADLESS_ENV, "").strip() not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return False
    return bool(getattr(kernel, "_allow_stdin", False))


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class _FinalLine:
    """A text stream for tqdm that passes on only each bar's last state (the text after the last carriage
    return, once the bar ends its line): a headless executed notebook keeps ``100%|…| 500/500`` and no
    frozen ``0%``; a bar closed with ``leave=False`` leaves nothing."""

    def __init__(self, target: Any):
        self.target, self.line = target, ""

    def write(self, text: str) -> int:
        for i, part in enumerate(text.split("\n")):
            if i:  # a newline ended the bar's line: emit its final state
                final = self.line.rsplit("\r", 1)[-1].rstrip()
                if final:
                    self.target.write(final + "\n")
                self.line = ""
            self.line += part
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm bar that suits where it runs: a widget in a live notebook, a text bar on a terminal, and in a
    headless kernel (papermill, nbval) a text bar that writes only its final state."""
    if in_interactive_frontend():
        from tqdm.notebook import tqdm
    else:
        import sys

        from tqdm.std import tqdm

        if _in_kernel():
            kwargs = {**kwargs, "file": _FinalLine(sys.stderr), "dynamic_ncols": False, "ncols": 100}
    return tqdm(iterable, **kwargs)
