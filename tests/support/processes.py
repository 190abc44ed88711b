"""Watching processes the tests do not own (an engine started by another process): has it exited, and when."""

from __future__ import annotations

import time
from pathlib import Path


def process_gone(pid: int) -> bool:
    """Exited (a zombie nobody reaps counts: it runs no code and holds no port)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> float | None:
    """Seconds until ``pid`` exited, or None if it still runs after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process_gone(pid):
            return time.monotonic() - started
        time.sleep(0.05)
    return None
