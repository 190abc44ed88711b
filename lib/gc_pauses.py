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

import gc
import threading

_lock = threading.Lock()


def settle() -> int:
    """Collect everything, then freeze what survives. Call at quiet moments (start-up, session start).

    Returns how many objects are now frozen."""
    with _lock:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        return gc.get_freeze_count()
