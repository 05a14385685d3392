"""Networks. Every network is ``forward(x, t, y=None)``: ``x`` batch-first, ``t`` float ``(B,)``,
``y`` int64 labels ``(B,)`` with the null label = ``num_classes`` (or ``None``).

Submodules load on first use: ``embeddings``, ``mlp``, ``two_pixel``, ``unet``.
"""
from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = {"embeddings", "mlp", "two_pixel", "unet"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'nbhelpers.models' has no attribute {name!r}")
