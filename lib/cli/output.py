"""Plain-text tables and number formats for the ops command line (no dependencies beyond the stdlib)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

Align = Literal["<", ">"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[Align] | None = None) -> str:
    """Columns padded to their widest cell, two spaces apart; no trailing spaces on any line."""
    align = align or ["<"] * len(headers)
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    """``45s``, ``4m05s``, ``1h02m``; ``-`` when unknown."""
    if seconds is None or math.isnan(seconds):
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def credits(value: float) -> str:
    return f"{value:,.2f}"


def money(value: float) -> str:
    return f"${value:,.2f}"


def text(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def to_json(payload: Any) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False, default=str)
