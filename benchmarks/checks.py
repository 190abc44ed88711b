"""Physical-range checks shared by every benchmark: a figure that cannot be true fails its bench.

A CPU share below zero or above every core, a negative duration or a negative count means the measurement
itself went wrong (a baseline taken while the process was still warming up, a clock mix-up); such a run must
not report ``meets_goal: true``. Each bench's ``main`` prints its JSON with ``invalid_figures`` and exits 1.
"""

from __future__ import annotations

import math
import os
from typing import Any

CORES = os.cpu_count() or 1
_DURATION_UNITS = ("ms", "s")


def _limits(key: str, unit: str) -> tuple[float, float] | None:
    """The range a figure can physically have, from its key or its unit; None when nothing is known."""
    if "offset" in key:
        return None  # a signed difference: either side of zero is possible
    if key.endswith("_pct") or unit.startswith("%"):
        return (
            0.0,
            100.0 * CORES * 1.05,
        )  # a little over: psutil samples processes and cores at slightly different times
    if key.endswith(("_ms", "_s")) or unit.split(":")[0].strip() in _DURATION_UNITS:
        return 0.0, math.inf
    return None


def invalid_figures(result: Any, path: str = "", unit: str = "") -> list[str]:
    """Dotted paths (with the value) of every number outside its physical range, anywhere in ``result``."""
    found: list[str] = []
    if isinstance(result, dict):
        own_unit = str(result.get("unit", unit))
        for key, value in result.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, (dict, list)):
                found.extend(invalid_figures(value, where, own_unit if key in ("value", "p95") else ""))
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            figure_key = path.rsplit(".", 1)[-1] if key in ("value", "p95", "min", "max") else key
            figure_unit = own_unit if key in ("value", "p95", "min", "max") else ""
            limits = _limits(figure_key, figure_unit)
            if (limits is not None and not (limits[0] <= value <= limits[1])) or (
                isinstance(value, float) and math.isnan(value)
            ):
                found.append(f"{where} = {value}")
    elif isinstance(result, list):
        for i, item in enumerate(result):
            found.extend(invalid_figures(item, f"{path}[{i}]", unit))
    return found


def finish(result: dict[str, Any]) -> int:
    """Mark a result invalid when a figure is out of range (and its goals unmet); the exit code for ``main``."""
    bad = invalid_figures(result)
    result["invalid_figures"] = bad
    if bad:
        result["meets_all_goals"] = False
    return 1 if bad else 0
