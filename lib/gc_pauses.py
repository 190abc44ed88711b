"""Keep Python's full garbage collections from stalling live media.

A full (generation 2) collection stops every thread while it walks every tracked object. With
Streamlit, pandas, Altair and aiortc loaded that is 70–190 ms, several times a second while frames
flow: the 20 ms audio packets to the browser go out in bursts, Chromium's jitter buffer grows to
300–600 ms and it holds the picture back to match. Freezing the long-lived heap (modules, caches,
models) takes it out of every later collection, which then costs a few milliseconds.

Frozen objects are never collected, so ``settle`` first thaws and collects: garbage made since the
last settle (closed sessions' reference cycles) is freed, not pinned for ever.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import threading
from collections.abc import Callable

_lock = threading.Lock()
_modules_at_settle = 0


def settle() -> int:
    """Collect everything, then freeze what survives. Call at quiet moments (start-up, nothing streaming).

    Returns how many objects are now frozen."""
    global _modules_at_settle
    with _lock:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _modules_at_settle = len(sys.modules)
        return gc.get_freeze_count()


def settle_if_imports_grew() -> bool:
    """Settle again when modules were imported since the last settle (a page's first visit: pandas, Altair):
    their objects would otherwise be walked by every full collection until the next settle."""
    if len(sys.modules) <= _modules_at_settle:
        return False
    settle()
    return True


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return None


_trim = _malloc_trim()


def release_memory() -> bool:
    """Collect, then hand freed heap pages back to the OS. glibc keeps them otherwise, so a process that ran
    ten sessions at once stays that big for ever. Call when no media is flowing (a full collection pauses)."""
    gc.collect()
    return bool(_trim(0)) if _trim is not None else False
