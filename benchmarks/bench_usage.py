"""Usage page query speed on a large log, on SQLite or PostgreSQL: N sessions (10 events each) over 90 days.

Run: ``.venv/bin/python -m benchmarks.bench_usage [--database-url URL] [--sessions N] [--seed S]``.
The same seed and size give the same log (same sessions, same figures, whatever the day it runs) in either
backend: ``--database-url postgresql://…`` (or ``DATABASE_URL``) fills that database, else a SQLite file cached
in the system temp dir. A log already holding this very dataset is reused; ``--rebuild`` regenerates it.
Prints one JSON object; goal: the page's full query set under 1000 ms. ``write_cost`` times session writes
on that same log with and without the summary-row upkeep (the sessions it writes are removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.checks import finish
from lib.usage import rollups, store
from lib.usage.credits import PRESETS, Pricing
from lib.usage.db import POSTGRES
from lib.usage.queries import (
    UsageFilter,
    cumulative_credits,
    duration_distribution,
    kpis,
    minutes_per_day,
    sessions_by_hour,
    sessions_table,
)
from lib.usage.store import EndReason, EventKind, UsageLog

SESSIONS = 100_000
EVENTS_PER_SESSION = 10
DAYS = 90
DATASET_VERSION = 2
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
"""End of the 90 days: fixed, so every run builds the same log whatever the day."""
CHUNK = 20_000
BENCH_DIR = Path(tempfile.gettempdir()) / "avatar-ops-bench"

AVATARS = [f"avatar_{i:02d}" for i in range(12)]
VOICES = [f"voice_{i:02d}" for i in range(6)]
QUALITIES = ["low", "medium", "high"]
TASK_KINDS = ["task", "task", "task", "keep_alive", "interrupt", "voice_turn"]
REASONS = np.array(["stopped", "released", "idle_timeout", "force_stopped", "lost"])
SESSION_COLUMNS = (
    "session_id, provider, avatar_id, voice_id, quality, video_encoding, started_by_dashboard, created_at, "
    "connected_at, ended_at, end_reason, last_seen"
)

Session = tuple[str, str, str, str, str, str, int, float, float, float | None, str | None, float]
Event = tuple[str, float, str, str | None]


def dataset_key(sessions: int, seed: int) -> dict[str, int]:
    return {"version": DATASET_VERSION, "sessions": sessions, "events": sessions * EVENTS_PER_SESSION, "seed": seed}


def chunks(sessions: int, seed: int) -> Iterator[tuple[list[Session], list[Event]]]:
    """The dataset in chunks of sessions with their events; chunk k draws from its own seeded generator,
    so the log depends only on (sessions, seed)."""
    for k, first in enumerate(range(0, sessions, CHUNK)):
        n = min(CHUNK, sessions - first)
        rng = np.random.default_rng([seed, k])
        created = ANCHOR - rng.uniform(0, DAYS * 86400, n)
        duration = np.clip(rng.lognormal(np.log(180), 1.0, n), 3.0, 3600.0)
        is_open = rng.random(n) < 0.005
        provider = np.where(rng.random(n) < 0.7, "heygen", "local")
        avatar = rng.integers(0, len(AVATARS), n)
        voice = rng.integers(0, len(VOICES), n)
        quality = rng.integers(0, len(QUALITIES), n)
        reason = REASONS[rng.choice(len(REASONS), n, p=[0.6, 0.2, 0.12, 0.05, 0.03])]
        # created + connected + closed per session, the other 7 at sorted random points in between.
        extra = EVENTS_PER_SESSION - 3
        points = np.sort(rng.random((n, extra)), axis=1)
        rows: list[Session] = []
        events: list[Event] = []
        for i in range(n):
            start = round(float(created[i]), 3)
            end = round(start + float(duration[i]), 3)
            sid = f"bench-{first + i:08d}"
            rows.append(
                (
                    sid,
                    str(provider[i]),
                    AVATARS[avatar[i]],
                    VOICES[voice[i]],
                    QUALITIES[quality[i]],
                    "VP8",
                    1,
                    start,
                    start + 1.5,
                    None if is_open[i] else end,
                    None if is_open[i] else str(reason[i]),
                    end,
                )
            )
            events.append((sid, start, "created", None))
            events.append((sid, start + 1.5, "connected", None))
            span = end - start - 1.5
            for j, p in enumerate(points[i].tolist()):
                kind = TASK_KINDS[j % len(TASK_KINDS)]
                events.append((sid, start + 1.5 + p * span, kind, '{"task_type":"repeat"}' if kind == "task" else None))
            events.append((sid, end, "closed", '{"reason":"stopped"}'))
        yield rows, events


def generate(target: str, sessions: int, seed: int) -> None:
    """Empty the log at ``target`` and write the dataset through the fastest bulk path of its backend."""
    with UsageLog(target) as log:  # creates the schema through the real migrations
        with log.write() as conn:
            for table in ("events", "sessions", "settings"):
                conn.execute(f"DELETE FROM {table}")
        if log.dialect == POSTGRES:
            _fill_postgres(log, sessions, seed)
        else:
            _fill_sqlite(log, sessions, seed)
        with log.write() as conn:
            rollups.rebuild(conn)  # bulk loads bypass the per-write upkeep
            conn.execute("ANALYZE")
        log.set_setting("bench_dataset", dataset_key(sessions, seed))


def _fill_sqlite(log: UsageLog, sessions: int, seed: int) -> None:
    marks = ", ".join("?" * len(SESSION_COLUMNS.split(",")))
    with log.write() as conn:
        raw: Any = conn.sa.connection.dbapi_connection
        for rows, events in chunks(sessions, seed):
            raw.executemany(f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({marks})", rows)
            raw.executemany("INSERT INTO events (session_id, at, kind, details) VALUES (?, ?, ?, ?)", events)


def _fill_postgres(log: UsageLog, sessions: int, seed: int) -> None:
    with log.write() as conn:
        raw: Any = conn.sa.connection.dbapi_connection
        with raw.cursor() as cur:
            for rows, events in chunks(sessions, seed):
                with cur.copy(f"COPY sessions ({SESSION_COLUMNS}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                with cur.copy("COPY events (session_id, at, kind, details) FROM STDIN") as copy:
                    for event in events:
                        copy.write_row(event)


def holds_dataset(target: str, sessions: int, seed: int) -> bool:
    try:
        with UsageLog(target) as log:
            return bool(log.get_setting("bench_dataset") == dataset_key(sessions, seed))
    except Exception:
        return False


def page_queries(log: UsageLog, flt: UsageFilter, pricing: Pricing, today: date, now: float) -> dict[str, float]:
    """Everything the Usage page draws for one filter; returns milliseconds per query."""
    steps: list[tuple[str, Callable[[], object]]] = [
        ("kpis", lambda: kpis(log, flt, pricing, now=now)),
        ("minutes_per_day", lambda: minutes_per_day(log, flt, pricing, by="avatar", now=now)),
        ("duration_distribution", lambda: duration_distribution(log, flt, now=now)),
        ("cumulative_credits", lambda: cumulative_credits(log, today, pricing, flt=flt, today=today, now=now)),
        ("sessions_by_hour", lambda: sessions_by_hour(log, flt, now=now)),
        ("sessions_table", lambda: sessions_table(log, flt, pricing, limit=1000, now=now)),
    ]
    timings = {}
    for name, step in steps:
        t = time.perf_counter()
        step()
        timings[name] = (time.perf_counter() - t) * 1000
    return timings


WRITE_AT = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
"""Where the write-cost sessions go (outside the dataset's 90 days); they are deleted afterwards."""


def _lifecycle(log: UsageLog, sid: str, at: float) -> dict[str, float]:
    """One session as the live page writes it; milliseconds per kind of write."""
    steps: list[tuple[str, Callable[[], object]]] = [
        ("open", lambda: log.open_session(sid, "heygen", "avatar_00", "voice_00", "high", "VP8", created_at=at)),
        ("connect", lambda: log.mark_connected(sid, at=at + 1.5)),
        ("heartbeat", lambda: log.heartbeat(sid, at=at + 30)),
        ("event", lambda: log.record_event(sid, EventKind.TASK, {"task_type": "repeat"}, at=at + 40)),
        ("close", lambda: log.close_session(sid, EndReason.STOPPED, at=at + 180)),
    ]
    out = {}
    for name, step in steps:
        t = time.perf_counter()
        step()
        out[name] = (time.perf_counter() - t) * 1000
    return out


def write_cost(log: UsageLog, sessions: int) -> dict[str, dict[str, float]]:
    """Median ms per write with the summary rows kept (as shipped) and with their upkeep switched off, in
    alternating rounds so both see the same load; the log is left as it was."""
    kept_add, kept_remove = rollups.add, rollups.remove
    timings: dict[str, list[dict[str, float]]] = {"with_rollups": [], "without_rollups": []}
    ids: list[str] = []
    try:
        for i in range(sessions):
            for arm in timings:
                off = arm == "without_rollups"
                store.rollups.add = (lambda *_a: None) if off else kept_add  # type: ignore[assignment]
                store.rollups.remove = (lambda *_a: None) if off else kept_remove  # type: ignore[assignment]
                sid = f"write-cost-{arm}-{i:05d}"
                ids.append(sid)
                timings[arm].append(_lifecycle(log, sid, WRITE_AT + i * 600))
    finally:
        store.rollups.add, store.rollups.remove = kept_add, kept_remove
        with log.write() as conn:
            rollups.remove(conn, ids)  # the arm without upkeep added nothing: only what was added comes out
            for start in range(0, len(ids), 500):
                chunk = {f"w{n}": sid for n, sid in enumerate(ids[start : start + 500])}
                marks = ", ".join(":" + k for k in chunk)
                conn.execute(f"DELETE FROM events WHERE session_id IN ({marks})", chunk)
                conn.execute(f"DELETE FROM sessions WHERE session_id IN ({marks})", chunk)
    return {
        arm: {name: round(statistics.median(r[name] for r in runs), 3) for name in runs[0]}
        | {"lifecycle": round(statistics.median(sum(r.values()) for r in runs), 3)}
        for arm, runs in timings.items()
    }


def summarize(totals: list[float]) -> dict[str, float | int]:
    ordered = sorted(totals)
    p95 = ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)]
    return {"median": round(statistics.median(ordered), 1), "p95": round(p95, 1), "runs": len(ordered)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        metavar="URL",
        help="postgresql://… or sqlite:///… (default: DATABASE_URL, else a cached SQLite file). Prefer the "
        "environment variable: a URL on the command line shows its password to every user of the machine.",
    )
    parser.add_argument("--sessions", type=int, default=SESSIONS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--write-sessions", type=int, default=100, help="sessions per arm of the write-cost test")
    args = parser.parse_args(argv)
    target = args.database_url or str(BENCH_DIR / f"usage-{args.sessions}-s{args.seed}-v{DATASET_VERSION}.db")
    if not args.database_url:
        BENCH_DIR.mkdir(parents=True, exist_ok=True)

    generate_s = None
    if args.rebuild or not holds_dataset(target, args.sessions, args.seed):
        t = time.perf_counter()
        generate(target, args.sessions, args.seed)
        generate_s = round(time.perf_counter() - t, 1)

    today = datetime.fromtimestamp(ANCHOR - 1, UTC).date()
    pricing = Pricing(PRESETS["heygen_current"], price_per_credit=0.99, monthly_budget_credits=5000)
    scopes = {
        "this_month": UsageFilter(today.replace(day=1), today),
        "all": UsageFilter(),
    }
    result: dict[str, object] = {}
    per_query: dict[str, dict[str, float]] = {}
    with UsageLog(target) as log:
        location, backend = log.location, log.dialect
        for scope, flt in scopes.items():
            page_queries(log, flt, pricing, today, ANCHOR)  # warm the page cache like a second visit
            runs = [page_queries(log, flt, pricing, today, ANCHOR) for _ in range(args.runs)]
            result[f"usage_queries_ms_{scope}"] = summarize([sum(r.values()) for r in runs])
            per_query[scope] = {name: round(statistics.median(r[name] for r in runs), 1) for name in runs[0]}
        totals = kpis(log, UsageFilter(), pricing, now=ANCHOR).current
        writes = write_cost(log, args.write_sessions) if args.write_sessions else None
    output = {
        # Headline: the heavier scope (every session).
        "usage_queries_ms": result["usage_queries_ms_all"],
        **result,
        "per_query_median_ms": per_query,
        "write_cost_median_ms": writes,
        "goal_ms": 1000,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "dataset": {
            "backend": backend,
            "where": location,  # the password is never printed
            "sessions": args.sessions,
            "events": args.sessions * EVENTS_PER_SESSION,
            "seed": args.seed,
            "days": DAYS,
            "generate_s": generate_s,
            # The same seed gives these same figures on either backend.
            "check": {"minutes": round(totals.total_minutes, 3), "credits": round(totals.credits, 3)},
        },
    }
    code = finish(output)
    print(json.dumps(output, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
