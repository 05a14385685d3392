"""What a notebook study returns: its figure, the numbers it records and a printed summary."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Study"]


@dataclass
class Study:
    """A study's figure (``None`` when it draws none), the numbers it records (metric name → value,
    the notebook's names, for ``run.report_all``) and its text summary (printed by the notebook)."""

    figure: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
