"""Usage page query speed on a large log: 100,000 sessions and 1,000,000 events over 90 days.

Run: ``.venv/bin/python -m benchmarks.bench_usage`` (or ``python benchmarks/bench_usage.py``).
The log is generated once and cached (``--path``, default in the system temp dir); ``--rebuild``
regenerates it. Prints one JSON object; goal: the page's full query set under 1000 ms.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.checks import finish
from lib.usage import (
    PRESETS,
    Pricing,
    UsageFilter,
    UsageLog,
    cumulative_credits,
    duration_distribution,
    kpis,
    minutes_per_day,
    sessions_by_hour,
    sessions_table,
)

SESSIONS = 100_000
EVENTS = 1_000_000
DAYS = 90
DATASET_VERSION = 1
DEFAULT_PATH = Path(tempfile.gettempdir()) / "avatar-ops-bench" / f"usage-100k-v{DATASET_VERSION}.db"

AVATARS = [f"avatar_{i:02d}" for i in range(12)]
VOICES = [f"voice_{i:02d}" for i in range(6)]
QUALITIES = ["low", "medium", "high"]
TASK_KINDS = ["task", "task", "task", "keep_alive", "interrupt", "voice_turn"]


def generate(path: Path, seed: int = 42) -> float:
    """Write the synthetic log; returns the anchor time (end of the 90 days) it was built around."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    UsageLog(path).close()  # creates the schema through the real migrations

    rng = np.random.default_rng(seed)
    anchor = time.time()
    created = np.sort(anchor - rng.uniform(0, DAYS * 86400, SESSIONS))
    duration = np.clip(rng.lognormal(np.log(180), 1.0, SESSIONS), 3.0, 3600.0)
    is_open = rng.random(SESSIONS) < 0.005
    provider = np.where(rng.random(SESSIONS) < 0.7, "heygen", "local")
    avatar = rng.integers(0, len(AVATARS), SESSIONS)
    voice = rng.integers(0, len(VOICES), SESSIONS)
    quality = rng.integers(0, len(QUALITIES), SESSIONS)
    # created + connected + closed per session, the rest spread as tasks etc.
    extra = rng.multinomial(EVENTS - 3 * SESSIONS, np.full(SESSIONS, 1 / SESSIONS))
    reasons = np.array(["stopped", "released", "idle_timeout", "force_stopped", "lost"])
    reason = reasons[rng.choice(len(reasons), SESSIONS, p=[0.6, 0.2, 0.12, 0.05, 0.03])]

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    rows = []
    for i in range(SESSIONS):
        start = float(created[i])
        end = start + float(duration[i])
        rows.append(
            (
                f"bench-{i:07d}",
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
    conn.executemany(
        "INSERT INTO sessions (session_id, provider, avatar_id, voice_id, quality, video_encoding, "
        "started_by_dashboard, created_at, connected_at, ended_at, end_reason, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    # Extra events of session i sit at sorted random points between its connect and its end.
    owner = np.repeat(np.arange(SESSIONS), extra)
    fraction = np.sort(owner + rng.random(owner.size)) - owner
    at_all = created[owner] + 1.5 + fraction * (duration[owner] - 1.5)
    offsets = np.concatenate(([0], np.cumsum(extra)))
    events: list[tuple[str, float, str, str | None]] = []
    for i in range(SESSIONS):
        sid, start, end = rows[i][0], rows[i][7], rows[i][11]
        events.append((sid, start, "created", None))
        events.append((sid, start + 1.5, "connected", None))
        for k, at in enumerate(at_all[offsets[i] : offsets[i + 1]].tolist()):
            kind = TASK_KINDS[k % len(TASK_KINDS)]
            events.append((sid, at, kind, '{"task_type":"repeat"}' if kind == "task" else None))
        events.append((sid, end, "closed", '{"reason":"stopped"}'))
        if len(events) >= 200_000:
            _insert_events(conn, events)
    _insert_events(conn, events)
    conn.execute("INSERT INTO settings (key, value) VALUES ('bench_anchor', ?)", (json.dumps(anchor),))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return anchor


def _insert_events(conn: sqlite3.Connection, events: list[tuple[str, float, str, str | None]]) -> None:
    conn.executemany("INSERT INTO events (session_id, at, kind, details) VALUES (?, ?, ?, ?)", events)
    events.clear()


def cached_anchor(path: Path) -> float | None:
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path)
        (sessions,) = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()
        (events,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        row = conn.execute("SELECT value FROM settings WHERE key = 'bench_anchor'").fetchone()
        conn.close()
    except sqlite3.Error:
        return None
    if sessions != SESSIONS or events != EVENTS or row is None:
        return None
    return float(json.loads(row[0]))


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


def summarize(totals: list[float]) -> dict[str, float | int]:
    ordered = sorted(totals)
    p95 = ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)]
    return {"median": round(statistics.median(ordered), 1), "p95": round(p95, 1), "runs": len(ordered)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)

    generate_s = None
    anchor = None if args.rebuild else cached_anchor(args.path)
    if anchor is None:
        t = time.perf_counter()
        anchor = generate(args.path)
        generate_s = round(time.perf_counter() - t, 1)

    today = datetime.fromtimestamp(anchor, UTC).date()
    pricing = Pricing(PRESETS["heygen_current"], price_per_credit=0.99, monthly_budget_credits=5000)
    scopes = {
        "this_month": UsageFilter(today.replace(day=1), today),
        "all": UsageFilter(),
    }
    result: dict[str, object] = {}
    per_query: dict[str, dict[str, float]] = {}
    with UsageLog(args.path) as log:
        for scope, flt in scopes.items():
            page_queries(log, flt, pricing, today, anchor)  # warm the page cache like a second visit
            runs = [page_queries(log, flt, pricing, today, anchor) for _ in range(args.runs)]
            result[f"usage_queries_ms_{scope}"] = summarize([sum(r.values()) for r in runs])
            per_query[scope] = {name: round(statistics.median(r[name] for r in runs), 1) for name in runs[0]}
    output = {
        # Headline: the heavier scope (all 100k sessions).
        "usage_queries_ms": result["usage_queries_ms_all"],
        **result,
        "per_query_median_ms": per_query,
        "goal_ms": 1000,
        "dataset": {
            "sessions": SESSIONS,
            "events": EVENTS,
            "days": DAYS,
            "path": str(args.path),
            "size_mb": round(args.path.stat().st_size / 1e6, 1),
            "generate_s": generate_s,
        },
    }
    code = finish(output)
    print(json.dumps(output, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
