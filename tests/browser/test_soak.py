"""Soak (issue 13 §1): live tabs that talk and close, and START/close cycles, leave the dashboard as they found it —
its threads back to where they were, its memory within a margin, every session ended at the engine.

The longer version with figures is ``benchmarks/bench_soak.py``. This module runs its own app process (the
``app`` fixture is per module), so the figures are this test's alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from lib.heygen import StreamingClient
from lib.usage.store import UsageLog
from tests.support.browser import ROOT, AppServer
from tests.support.soak import (
    Footprint,
    census_back,
    footprint,
    open_live_tabs,
    rss_back,
    settled,
    talk,
    thread_census,
    threads_back,
    wait_no_sessions,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Threads are counted by kind from the dashboard's own thread dump (lib.thread_dump): see tests.support.soak for
# the margins. Before the fix every closed tab kept 2 polling threads for minutes (+10 here), and the peer
# connections' relays kept reading. CI once failed on +5 threads in all after these rounds; run here with a
# py-spy dump, the extra threads were all idle workers of pools that had grown (asyncio_3..5 of the server loop's
# executor, AnyIO workers), which a plain thread count cannot tell from a leak.
# glibc's heap and Python's arenas do not shrink to the byte: after these rounds the process measured +10 MB
# over its baseline (2-core machine at load 5–7), after 4 tabs and 8 cycles in the bench -9 to +40 MB. Before
# the fix 2 closed tabs had grown it by 1 GB within 20 s, and 3 cycles left it 117 MB up.
RSS_MARGIN_MB = 60.0


def live_round(browser: Browser, app: AppServer, client: StreamingClient, tabs: int) -> list[str]:
    """``tabs`` tabs live at once, each asked something, then all closed; the engine sessions they had."""
    pages: list[Page] = open_live_tabs(browser, app.url, tabs)
    for page in pages:
        talk(page, "Hello there")
    sessions = [s.session_id for s in client.list()]
    time.sleep(1.0)  # the answers stream while the tabs are open
    for page in pages:
        page.close()
    assert wait_no_sessions(client), client.list()
    return sessions


def end_reasons(app: AppServer, session_ids: list[str]) -> set[str | None]:
    with UsageLog(app.data_dir / "usage.db") as log:
        return {(row.end_reason if (row := log.get_session(s)) else None) for s in session_ids}


def test_live_tabs_and_cycles_give_back_threads_and_memory(
    app: AppServer, browser: Browser, client: StreamingClient
) -> None:
    pid = app.process.pid
    live_round(browser, app, client, tabs=2)  # warm-up: imports, the media loop, pools grown to this load
    settled(pid, 10_000, timeout=40, quiet=6.0)
    baseline, base_rss = thread_census(pid, app.log_path), footprint(pid)

    sessions = live_round(browser, app, client, tabs=2)
    for _ in range(3):
        sessions += live_round(browser, app, client, tabs=1)
    settled(pid, 10_000, timeout=20, quiet=3.0)
    after, waited = census_back(pid, app.log_path, baseline, timeout=40)
    rss, rss_waited = rss_back(pid, base_rss.rss_mb + RSS_MARGIN_MB, timeout=20)

    print(
        f"baseline {baseline} {base_rss}, after {after} {rss} (threads back in {waited:.1f} s, memory "
        f"{rss_waited:.1f} s later), {len(sessions)} sessions"
    )
    assert len(set(sessions)) == 5, sessions
    assert end_reasons(app, sessions) == {"released"}  # each ended when its tab closed, none left billing
    assert threads_back(after, baseline), (baseline, after)
    assert rss.rss_mb <= base_rss.rss_mb + RSS_MARGIN_MB, (base_rss, rss)


def test_footprint_counts_the_process_it_is_given() -> None:
    """The measurement itself: this test process has at least its main thread and some memory."""
    here = footprint(os.getpid())
    assert here.threads >= 1 and here.rss_mb > 10
    assert footprint(2**22 + 12345) == Footprint(0.0, 0)  # a pid that cannot exist counts as nothing


CENSUS_CHILD = """
import sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from lib import thread_dump
assert thread_dump.install()
pool = ThreadPoolExecutor(3)
list(pool.map(time.sleep, [0.2, 0.2, 0.2]))  # three workers, then idle
busy = threading.Thread(target=time.sleep, args=(60,), daemon=True)
busy.start()
print("ready", flush=True)
time.sleep(60)
"""


def test_thread_census_tells_idle_pool_workers_from_working_threads(tmp_path: Path) -> None:
    """The census itself, on a child process with 3 idle pool workers and 2 working threads (main, sleeper)."""
    log_path = tmp_path / "child.log"
    with log_path.open("wb") as out:
        child = subprocess.Popen([sys.executable, "-c", CENSUS_CHILD], cwd=ROOT, stdout=subprocess.PIPE, stderr=out)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        census = thread_census(child.pid, log_path)
    finally:
        child.kill()
        child.wait()
    assert (census.idle_pool, census.working) == (3, 2), census
