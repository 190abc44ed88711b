"""Memory and threads of the dashboard and engine processes while live tabs open, talk and close (issue 13 §1).

Shared by the soak test and ``benchmarks/bench_soak.py``: a process's footprint (RSS and OS threads, its
children included), a background sampler that keeps each phase's peak, a live Live chat tab, and the wait for a
process to come back to rest after its sessions ended.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError

from lib.heygen.client import StreamingClient
from lib.thread_dump import DUMP_SIGNAL
from tests.support.browser import click_start, go_to, open_app, send_chat, wait_for, wait_video_playing, webrtc_frame

MB = 1024 * 1024


@dataclass(frozen=True)
class Footprint:
    rss_mb: float
    threads: int

    def as_dict(self) -> dict[str, Any]:
        return {"rss_mb": round(self.rss_mb, 1), "threads": self.threads}


def footprint(pid: int) -> Footprint:
    """RSS and OS threads of a process and all its children (a process that is gone counts as nothing)."""
    rss, threads = 0, 0
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return Footprint(0.0, 0)
    for p in procs:
        try:
            with p.oneshot():
                rss += p.memory_info().rss
                threads += p.num_threads()
        except psutil.NoSuchProcess:
            continue
    return Footprint(rss / MB, threads)


class Sampler:
    """Samples named processes every ``every`` seconds on a thread; ``phase`` starts a new peak record."""

    def __init__(self, pids: dict[str, int], every: float = 0.25) -> None:
        self._pids = pids
        self._every = every
        self._lock = threading.Lock()
        self._phase = "start"
        self.peaks: dict[str, dict[str, Footprint]] = {}
        self.series: list[tuple[float, str, dict[str, Footprint]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def phase(self, name: str) -> None:
        with self._lock:
            self._phase = name

    def _run(self) -> None:
        while not self._stop.is_set():
            now = {name: footprint(pid) for name, pid in self._pids.items()}
            with self._lock:
                self.series.append((time.monotonic() - self._started, self._phase, now))
                peaks = self.peaks.setdefault(self._phase, {})
                for name, fp in now.items():
                    old = peaks.get(name)
                    peaks[name] = (
                        fp if old is None else Footprint(max(old.rss_mb, fp.rss_mb), max(old.threads, fp.threads))
                    )
            self._stop.wait(self._every)

    def peak(self, name: str, *phases: str) -> Footprint:
        """The highest RSS and thread count of process ``name`` over the given phases (each its own maximum)."""
        with self._lock:
            seen = [self.peaks[p][name] for p in phases if p in self.peaks and name in self.peaks[p]]
        return Footprint(max((f.rss_mb for f in seen), default=0.0), max((f.threads for f in seen), default=0))


def open_live_tab(browser: Browser, url: str, timeout: float = 40.0) -> Page:
    """A tab on Live chat with the avatar live: START pressed and the video playing."""
    return open_live_tabs(browser, url, 1, timeout)[0]


def open_live_tabs(browser: Browser, url: str, count: int, timeout: float = 40.0) -> list[Page]:
    """``count`` tabs on Live chat, START pressed in each before waiting for any: the sessions connect at once."""
    pages = []
    for _ in range(count):
        page = open_app(browser, url)
        go_to(page, "Live chat")
        click_start(page)
        pages.append(page)
    for page in pages:
        wait_video_playing(webrtc_frame(page), timeout=timeout)
    return pages


def talk(page: Page, text: str) -> None:
    """Send a chat message once the chat box takes one (it is disabled until the session is connected). When it
    never does, the failure says what the page showed: the status panel tells a session that never connected from
    a page that was not redrawn after it did."""
    try:
        send_chat(page, text)
    except PlaywrightError as exc:
        try:
            shown = page.locator("body").inner_text(timeout=2_000)[-3000:]
        except PlaywrightError:
            shown = "(page text unreadable)"
        raise AssertionError(f"the chat box stayed disabled; the page showed:\n{shown}") from exc


def wait_no_sessions(client: StreamingClient, timeout: float = 30.0) -> bool:
    return bool(wait_for(lambda: not client.list(), timeout=timeout, interval=0.3))


def settled(pid: int, threads_at_most: int, timeout: float, quiet: float = 3.0) -> tuple[Footprint, float]:
    """Wait until the process has at most ``threads_at_most`` threads and its thread count has not changed for
    ``quiet`` seconds (or ``timeout`` passed); its footprint then, and the seconds it took."""
    started = time.monotonic()
    last = footprint(pid)
    steady_since = started
    while True:
        time.sleep(0.25)
        now = footprint(pid)
        if now.threads != last.threads:
            steady_since = time.monotonic()
        last = now
        waited = time.monotonic() - started
        if (now.threads <= threads_at_most and time.monotonic() - steady_since >= quiet) or waited > timeout:
            return now, waited


def rss_back(pid: int, at_most_mb: float, timeout: float) -> tuple[Footprint, float]:
    """Wait until the process's RSS is at most ``at_most_mb`` (memory is handed back a few seconds after the last
    peer connection ends); its footprint then, or at the timeout, and the seconds it took."""
    started = time.monotonic()
    while True:
        now = footprint(pid)
        waited = time.monotonic() - started
        if now.rss_mb <= at_most_mb or waited > timeout:
            return now, waited
        time.sleep(0.5)


@dataclass(frozen=True)
class ThreadCensus:
    """A process's threads by kind: ``idle_pool`` are workers of an executor or AnyIO's pool waiting for work
    (pools are bounded and keep idle workers), ``working`` every other Python thread, ``native`` threads without
    a Python frame (codec and library threads)."""

    idle_pool: int
    working: int
    native: int

    @property
    def total(self) -> int:
        return self.idle_pool + self.working + self.native

    def as_dict(self) -> dict[str, int]:
        return {"working": self.working, "native": self.native, "idle_pool": self.idle_pool}


_THREAD_HEAD = re.compile(r"^(?:Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\):$")
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line \d+ in (?P<func>\S+)$')


def is_idle_pool_worker(frames: list[tuple[str, str]]) -> bool:
    """Whether a stack (innermost frame first, as (file, function)) is a pool worker blocked on its work queue."""
    if not frames:
        return False
    file, func = frames[0]
    if file.endswith("concurrent/futures/thread.py") and func == "_worker":
        return True
    top = [(f.rsplit("/", 1)[-1], fn) for f, fn in frames[:2]]
    return (
        top == [("threading.py", "wait"), ("queue.py", "get")]
        and len(frames) > 2
        and frames[2][0].endswith("anyio/_backends/_asyncio.py")
    )


def parse_thread_dump(text: str) -> list[list[tuple[str, str]]]:
    """The stacks of a ``faulthandler`` all-threads dump (see lib.thread_dump), one list of frames per thread."""
    stacks: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if _THREAD_HEAD.match(line):
            stacks.append([])
        elif stacks and (m := _FRAME.match(line)):
            stacks[-1].append((m["file"], m["func"]))
    return stacks


def thread_census(pid: int, log_path: Path, timeout: float = 10.0) -> ThreadCensus:
    """Ask the dashboard (pid) for its thread dump, read it from its log, and sort its threads by kind."""
    start = log_path.stat().st_size
    os_threads = psutil.Process(pid).num_threads()
    os.kill(pid, DUMP_SIGNAL)
    deadline = time.monotonic() + timeout
    text, last_size = "", -1
    while time.monotonic() < deadline:
        time.sleep(0.3)
        size = log_path.stat().st_size
        if size == last_size and size > start:  # the handler writes the whole dump at once; wait till it stops
            with log_path.open("rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
            break
        last_size = size
    stacks = parse_thread_dump(text)
    if not stacks:
        raise AssertionError(f"no thread dump from pid {pid} in {log_path}")
    idle = sum(is_idle_pool_worker(s) for s in stacks)
    return ThreadCensus(idle_pool=idle, working=len(stacks) - idle, native=max(0, os_threads - len(stacks)))


# Idle workers of the thread pools (each event loop's default executor, at most min(32, cores + 4) threads;
# AnyIO's workers, which end after 10 s idle) are not per session: how far a pool grows depends on how many calls
# happened to overlap, so their count is only held to the pools' reach (two event loops' executors and a few AnyIO
# workers). Every other thread must come back.
WORKING_MARGIN = 1
NATIVE_MARGIN = 2
POOL_REACH = 2 * min(32, (os.cpu_count() or 1) + 4) + 4


def threads_back(after: ThreadCensus, baseline: ThreadCensus) -> bool:
    """Working and native threads back within their margins of the baseline, idle pool workers within reach."""
    return (
        after.working <= baseline.working + WORKING_MARGIN
        and after.native <= baseline.native + NATIVE_MARGIN
        and after.idle_pool <= baseline.idle_pool + POOL_REACH
    )


def census_back(pid: int, log_path: Path, baseline: ThreadCensus, timeout: float) -> tuple[ThreadCensus, float]:
    """The census once ``threads_back`` holds (or at the timeout), and the seconds it took."""
    started = time.monotonic()
    while True:
        now = thread_census(pid, log_path)
        waited = time.monotonic() - started
        if threads_back(now, baseline) or waited > timeout:
            return now, waited
        time.sleep(2.0)
