"""One background asyncio loop per process for every live session, so media never runs on Streamlit's loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def media_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="avatar-media", daemon=True).start()
            _loop = loop
        return _loop


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on the media loop from any other thread and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coro, media_loop()).result(timeout)


def submit(coro: Coroutine[Any, Any, Any]) -> Any:
    """Start a coroutine on the media loop without waiting (returns a concurrent Future)."""
    return asyncio.run_coroutine_threadsafe(coro, media_loop())
