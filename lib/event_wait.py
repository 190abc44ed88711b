"""Waiting on an ``asyncio.Event`` with a timeout, without losing a cancellation.

Python 3.11's ``asyncio.wait_for`` returns the inner result when the awaiting task is cancelled in the same
turn that the inner wait completes: the cancellation is lost (fixed in 3.12, CPython gh-86296). A media
track's ``recv`` waits on an event set from another thread many times a second, so sooner or later the
sender's ``stop()`` cancelled its task in that turn, and the page's peer connection waited forever for a task
that went on forwarding packets. ``asyncio.timeout`` keeps the cancellation.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass (None: no limit); True when it is set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()
