"""Soak: several live Live chat tabs that talk, then all closed — does the dashboard give its memory and threads
back (issue 13 §1)?

Run: ``.venv/bin/python benchmarks/bench_soak.py`` (``--tabs``, ``--talk``, ``--cycles``, ``--paths``). For each
media path (the engine's packets forwarded as they are, and ``AVATAR_OPS_MEDIA_PASSTHROUGH=0``: decoded and
re-encoded) it starts a local engine and ``streamlit run app.py`` on loopback, drives Debian's Chromium and
samples both processes' RSS and OS threads (children included) four times a second. Prints one JSON object;
progress goes to stderr.

* ``cold``: the app before any tab. ``baseline``: after one warm-up tab went live, talked and closed (the media
  loop's thread and the imports of the first session stay for the process's life; they are not a leak).
* ``load``: ``--tabs`` tabs live at once, each sent a message every few seconds for ``--talk`` seconds; the peak.
* ``after_load``: every tab closed, every engine session gone, then the process left to settle: threads (until at
  the baseline or ``--settle`` s), then memory (until within ``RSS_MARGIN_MB`` or 20 s; ``rss_wait_s``).
* ``cycles``: ``--cycles`` times one tab opened, START, a message, closed; the footprint after each (its slope is
  ``growth_per_cycle.before_release``: a closed tab's peer connection, and the memory it holds, goes only when
  ICE notices, ~30 s later). Then the process is left until its RSS stops falling (``released``, at most
  ``--settle`` × 2 s), and the growth per cycle is what stayed: (released − baseline) / cycles.

Goals: after the load and after the cycles, the dashboard's threads back to the baseline by kind (its own thread
dump, ``kill -USR1``: working and native threads within a margin, idle pool workers within the pools' reach; see
``tests.support.soak``) and RSS within ``RSS_MARGIN_MB`` of it; RSS growth per cycle under ``CYCLE_GROWTH_MB``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError

from benchmarks.checks import finish
from lib.engine.launcher import start_engine
from lib.heygen.client import StreamingClient
from lib.live.media.passthrough import PASSTHROUGH_ENV
from tests.support.browser import chromium_missing, launch_chromium, run_app
from tests.support.soak import (
    NATIVE_MARGIN,
    POOL_REACH,
    WORKING_MARGIN,
    Footprint,
    Sampler,
    ThreadCensus,
    census_back,
    footprint,
    open_live_tab,
    rss_back,
    settled,
    talk,
    thread_census,
    threads_back,
    wait_no_sessions,
)

RSS_MARGIN_MB = 60.0
CYCLE_GROWTH_MB = 5.0
PROMPTS = ["Hello there", "What can you do?", "Is it offline?", "How are sessions billed?", "Tell me about usage"]
PATHS = {"passthrough": "1", "transcode": "0"}


def log(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


def slope(values: list[float]) -> float:
    """Least-squares growth per step of a series (0 for fewer than two points)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return num / sum((i - mean_x) ** 2 for i in range(n))


def rss_settled(pid: int, timeout: float, window: float = 10.0, slack_mb: float = 2.0) -> tuple[Footprint, float]:
    """Wait until the process's RSS has not fallen by more than ``slack_mb`` for ``window`` seconds (or the
    timeout); its footprint then, and the seconds it took."""
    started = time.monotonic()
    low, low_at = footprint(pid), started
    while time.monotonic() - started < timeout and time.monotonic() - low_at < window:
        time.sleep(0.5)
        now = footprint(pid)
        if now.rss_mb < low.rss_mb - slack_mb:
            low, low_at = now, time.monotonic()
    return footprint(pid), time.monotonic() - started


def close_all(pages: list[Page], client: StreamingClient) -> float:
    started = time.monotonic()
    for page in pages:
        page.close()
    if not wait_no_sessions(client, timeout=60):
        raise RuntimeError(f"engine sessions left running: {[s.session_id for s in client.list()]}")
    return time.monotonic() - started


def one_cycle(browser: Browser, url: str, client: StreamingClient, prompt: str) -> None:
    page = open_live_tab(browser, url)
    talk(page, prompt)
    time.sleep(2.0)
    close_all([page], client)


def versus(after: Footprint, census: ThreadCensus, baseline: Footprint, base_census: ThreadCensus) -> dict[str, Any]:
    extra_rss = after.rss_mb - baseline.rss_mb
    return {
        **after.as_dict(),
        "threads_by_kind": census.as_dict(),
        "threads_over_baseline": after.threads - baseline.threads,
        "rss_over_baseline_mb": round(extra_rss, 1),
        "meets_goal": threads_back(census, base_census) and extra_rss <= RSS_MARGIN_MB,
    }


def run_path(name: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"avatar-bench-soak-{name}-"))
    budget = str(max(6, args.tabs + 1))
    engine = start_engine(extra_args=["--history-db", str(work / "history.db"), "--session-budget", budget])
    started = time.monotonic()
    try:
        with (
            StreamingClient(engine.url, engine.api_key, backoff=0) as client,
            run_app(engine, work / "app", extra_env={PASSTHROUGH_ENV: PATHS[name]}) as app,
            launch_chromium() as browser,
        ):
            app_pid, engine_pid = app.process.pid, engine.process.pid
            with Sampler({"app": app_pid, "engine": engine_pid}) as sampler:
                cold = {"app": footprint(app_pid), "engine": footprint(engine_pid)}
                log(f"{name}: warm-up tab")
                sampler.phase("warmup")
                one_cycle(browser, app.url, client, PROMPTS[0])
                # The warm-up tab's peer connection ends seconds after its tab (ICE): a longer quiet spell.
                base_app, waited = settled(app_pid, 10_000, timeout=args.settle, quiet=6.0)
                baseline = {"app": base_app, "engine": footprint(engine_pid)}
                base_census = thread_census(app_pid, app.log_path)
                log(f"{name}: baseline {baseline} (settled in {waited:.1f} s)")

                sampler.phase("load")
                pages = []
                for i in range(args.tabs):
                    pages.append(open_live_tab(browser, app.url))
                    log(f"{name}: tab {i + 1} live, app {footprint(app_pid)}")
                talk_until = time.monotonic() + args.talk
                sent = missed = 0
                while time.monotonic() < talk_until:
                    for page in pages:
                        try:
                            talk(page, PROMPTS[(sent + missed) % len(PROMPTS)])
                            sent += 1
                        except PlaywrightError:  # overloaded: the chat box stayed disabled (reconnecting)
                            missed += 1
                    time.sleep(args.every)
                log(f"{name}: {sent} messages sent, {missed} not (chat box disabled); app {footprint(app_pid)}")
                sampler.phase("closing")
                close_s = close_all(pages, client)
                sampler.phase("settle_load")
                census_load, settle_load_s = census_back(app_pid, app.log_path, base_census, timeout=args.settle)
                after_load = footprint(app_pid)
                after_load, rss_load_s = rss_back(app_pid, base_app.rss_mb + RSS_MARGIN_MB, timeout=20)
                engine_after_load = footprint(engine_pid)
                log(f"{name}: after load {after_load} (settled in {settle_load_s:.1f} s)")

                cycles: list[Footprint] = []
                sampler.phase("cycles")
                for k in range(args.cycles):
                    one_cycle(browser, app.url, client, PROMPTS[k % len(PROMPTS)])
                    cycles.append(settled(app_pid, baseline["app"].threads, timeout=10, quiet=1.0)[0])
                    log(f"{name}: cycle {k + 1}: {cycles[-1]}")
                sampler.phase("settle_cycles")
                census_cycles, settle_cycles_s = census_back(app_pid, app.log_path, base_census, timeout=args.settle)
                after_cycles = footprint(app_pid)
                after_cycles, rss_cycles_s = rss_back(app_pid, base_app.rss_mb + RSS_MARGIN_MB, timeout=20)
                released, released_s = rss_settled(app_pid, timeout=args.settle * 2)
                engine_after = footprint(engine_pid)
            if args.series:
                with open(f"{args.series}.{name}.json", "w") as out:
                    json.dump(
                        [
                            [round(t, 2), phase, {k: f.as_dict() for k, f in fps.items()}]
                            for t, phase, fps in sampler.series
                        ],
                        out,
                    )
            peak_app = sampler.peak("app", "load", "closing")
            peak_engine = sampler.peak("engine", "load", "closing")
            cycle_peak = sampler.peak("app", "cycles")
    finally:
        engine.stop()
    growth = (released.rss_mb - base_app.rss_mb) / max(1, len(cycles))
    return {
        "media_path": name,
        "app": {
            "cold": cold["app"].as_dict(),
            "baseline": {**baseline["app"].as_dict(), "threads_by_kind": base_census.as_dict()},
            "peak_load": {**peak_app.as_dict(), "rss_over_baseline_mb": round(peak_app.rss_mb - base_app.rss_mb, 1)},
            "after_load": {
                **versus(after_load, census_load, base_app, base_census),
                "settle_s": round(settle_load_s, 1),
                "rss_wait_s": round(rss_load_s, 1),
            },
            "cycles": [c.as_dict() for c in cycles],
            "cycle_peak": cycle_peak.as_dict(),
            "released": {**released.as_dict(), "wait_s": round(released_s, 1)},
            "growth_per_cycle": {
                "rss_mb": round(growth, 2),
                "before_release": {
                    "rss_mb": round(slope([c.rss_mb for c in cycles]), 2),
                    "threads": round(slope([float(c.threads) for c in cycles]), 2),
                },
                "goal_rss_mb": CYCLE_GROWTH_MB,
                "meets_goal": growth <= CYCLE_GROWTH_MB,
            },
            "after_cycles": {
                **versus(after_cycles, census_cycles, base_app, base_census),
                "settle_s": round(settle_cycles_s, 1),
                "rss_wait_s": round(rss_cycles_s, 1),
            },
        },
        "engine": {
            "cold": cold["engine"].as_dict(),
            "baseline": baseline["engine"].as_dict(),
            "peak_load": peak_engine.as_dict(),
            "after_load": engine_after_load.as_dict(),
            "after_cycles": engine_after.as_dict(),
        },
        "messages": {"sent": sent, "not_sent": missed},
        "tabs_closed_to_sessions_gone_s": round(close_s, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tabs", type=int, default=4, help="live tabs at once (default 4)")
    parser.add_argument("--talk", type=float, default=60.0, help="seconds the tabs talk (default 60)")
    parser.add_argument("--every", type=float, default=4.0, help="seconds between rounds of messages (default 4)")
    parser.add_argument("--cycles", type=int, default=8, help="open/START/close cycles on one tab (default 8)")
    parser.add_argument("--settle", type=float, default=30.0, help="most seconds to wait for rest (default 30)")
    parser.add_argument("--paths", default="passthrough,transcode", help="media paths: passthrough, transcode")
    parser.add_argument("--series", help="also write every sample to SERIES.<path>.json")
    args = parser.parse_args(argv)
    if reason := chromium_missing():
        print(json.dumps({"benchmark": "soak", "skipped": reason}))
        return 0
    load_before = os.getloadavg()
    runs = []
    for name in (n.strip() for n in args.paths.split(",") if n.strip()):
        try:
            runs.append(run_path(name, args))
        except Exception as exc:  # one path failing still reports the other
            log(f"{name}: failed: {exc!r}")
            runs.append({"media_path": name, "error": repr(exc)[:500]})
    result: dict[str, Any] = {
        "benchmark": "soak",
        "what": f"{args.tabs} live Live chat tabs talking for {args.talk:.0f} s, all closed; then {args.cycles} "
        "open/START/close cycles on one tab; RSS and threads of the dashboard (streamlit run) and the engine",
        "margins": {
            "working_threads": WORKING_MARGIN,
            "native_threads": NATIVE_MARGIN,
            "idle_pool_threads": POOL_REACH,
            "rss_mb": RSS_MARGIN_MB,
            "growth_per_cycle_mb": CYCLE_GROWTH_MB,
        },
        "runs": runs,
        "meets_all_goals": all(
            "error" not in r and r["app"][k]["meets_goal"]
            for r in runs
            for k in ("after_load", "after_cycles", "growth_per_cycle")
        ),
        "load_average_1m_before": round(load_before[0], 2),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    code = finish(result)
    print(json.dumps(result, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
