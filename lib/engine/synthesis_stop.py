"""Stopping a neural synthesis that is already running, from another thread.

An interrupt drops a task's queued speech at once, but the piece Piper is synthesizing (up to 100 characters,
0.3–1 s on a loaded 2-core machine) used to run to its end, and the voice is one onnxruntime session used by
one thread at a time: the next task's first piece waited for it. onnxruntime ends a ``run`` early when its
``RunOptions.terminate`` is set; this module ties that flag to a task's interrupt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class SynthesisCancelled(Exception):
    """The synthesis was stopped by its task's interrupt; nothing of it is to be played."""


class SynthesisStop:
    """Set once by whoever interrupts; read by the synthesis thread. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._hooks: list[Callable[[], None]] = []

    @property
    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            hooks = list(self._hooks)
        for hook in hooks:
            hook()

    @contextmanager
    def while_running(self, on_stop: Callable[[], None]) -> Iterator[None]:
        """Calls ``on_stop`` if the stop is set while the block runs (or was set before it began)."""
        with self._lock:
            already = self._set
            self._hooks.append(on_stop)
        try:
            if already:
                on_stop()
            yield
        finally:
            with self._lock:
                self._hooks.remove(on_stop)


class StoppableSession:
    """An onnxruntime session whose ``run`` uses the given ``RunOptions``: what piper calls, so that setting
    ``terminate`` on them ends piper's run early."""

    def __init__(self, session: Any, run_options: Any) -> None:
        self._session = session
        self._run_options = run_options

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or self._run_options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
