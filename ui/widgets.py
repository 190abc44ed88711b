"""Small presentation helpers shared by the pages (time zone, number formats)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st


def browser_timezone() -> str:
    """The viewer's time zone (IANA name), or UTC when the browser does not say or the name is unknown."""
    try:
        name = st.context.timezone
    except Exception:  # no browser context (bare script run)
        name = None
    if not name:
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_money(value: float) -> str:
    return f"${value:,.2f}"


def fmt_credits(value: float) -> str:
    return f"{value:,.2f}"


def fmt_change(change: float | None) -> str | None:
    """``KpiReport.change`` as a delta label (None hides the delta)."""
    if change is None or math.isnan(change) or round(change, 2) == 0:
        return None  # "+0%" would still be drawn as a rise, in green or red
    return f"{change:+.0%}"


def budget_change(used: float | None, used_before: float | None) -> str | None:
    """Change of the budget share in percentage points (None hides it, also when it rounds to nothing)."""
    if used is None or used_before is None or round((used - used_before) * 100, 1) == 0:
        return None
    return f"{(used - used_before) * 100:+.1f} pts"


def label_lines(rows: Iterable[tuple[str, str]]) -> str:
    """Label/value rows as one Markdown block, a line each: one element to redraw every second, where a row of
    columns per line made three (half of the dashboard's own CPU while a session streamed was that redraw)."""
    return "  \n".join(f":gray[{label}] &ensp; {value}" for label, value in rows)
