"""Keep a repeating warning from flooding the log while still saying how often it happened."""

from __future__ import annotations

import logging
import threading
import time


class OncePerInterval(logging.Filter):
    """Lets one record per message template through every ``interval_s`` and counts the ones it held back.

    streamlit-webrtc warns "Audio frame callback is too slow" for every late 20 ms audio frame; on a busy
    machine that was half of the app's log. The status panel's *Audio to browser* row shows the same stalls
    per session.
    """

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self.interval_s) < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.interval_s:g} s)"
        return True


def limit_logger(name: str, interval_s: float = 60.0) -> OncePerInterval:
    """Install (once) a :class:`OncePerInterval` filter on the logger ``name``."""
    logger = logging.getLogger(name)
    for existing in logger.filters:
        if isinstance(existing, OncePerInterval):
            return existing
    limit = OncePerInterval(interval_s)
    logger.addFilter(limit)
    return limit
