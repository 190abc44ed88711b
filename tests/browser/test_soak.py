"""Soak (issue 13 §1): live tabs that talk and close, and START/close cycles, leave the dashboard as they found it —
its threads back to where they were, its memory within a margin, every session ended at the engine.

The longer version with figures is ``benchmarks/bench_soak.py``. This module runs its own app process (the
``app`` fixture is per module), so the figures are this test's alone.
"""

from __future__ import annotations

import os
import time

import pytest
from playwright.sync_api import Browser, Page

from lib.heygen import StreamingClient
from lib.usage.store import UsageLog
from tests.support.browser import AppServer
from tests.support.soak import Footprint, footprint, open_live_tabs, rss_back, settled, talk, wait_no_sessions

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Thread pools (asyncio's default executors, AnyIO's workers) grow to what the load needs and keep some idle
# threads; the warm-up round below runs the same load first, so what is left over is what an ended session
# kept (measured: +2 after the rounds below). Before the fix every closed tab kept 2 polling threads for
# minutes (+10 here), and the peer connections' relays kept reading.
THREAD_MARGIN = 4
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
    baseline, _ = settled(pid, 10_000, timeout=40, quiet=6.0)

    sessions = live_round(browser, app, client, tabs=2)
    for _ in range(3):
        sessions += live_round(browser, app, client, tabs=1)
    after, waited = settled(pid, baseline.threads + THREAD_MARGIN, timeout=40)
    after, rss_waited = rss_back(pid, baseline.rss_mb + RSS_MARGIN_MB, timeout=20)

    print(
        f"baseline {baseline}, after {after} (threads settled in {waited:.1f} s, memory {rss_waited:.1f} s later), "
        f"{len(sessions)} sessions"
    )
    assert len(set(sessions)) == 5, sessions
    assert end_reasons(app, sessions) == {"released"}  # each ended when its tab closed, none left billing
    assert after.threads <= baseline.threads + THREAD_MARGIN, (baseline, after)
    assert after.rss_mb <= baseline.rss_mb + RSS_MARGIN_MB, (baseline, after)


def test_footprint_counts_the_process_it_is_given() -> None:
    """The measurement itself: this test process has at least its main thread and some memory."""
    here = footprint(os.getpid())
    assert here.threads >= 1 and here.rss_mb > 10
    assert footprint(2**22 + 12345) == Footprint(0.0, 0)  # a pid that cannot exist counts as nothing
