"""Copy one usage log into another: a dashboard's SQLite file into the team's shared PostgreSQL log.

Safe to repeat and to run against a log that is already in use: a session already in the target keeps its
own record (and events), only sessions the target lacks are added with their events in their original order,
and settings the target already has (its pricing, its saved scripts) are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.usage import rollups
from lib.usage.store import UsageLog

_COLUMNS = (
    "session_id, provider, avatar_id, voice_id, quality, video_encoding, started_by_dashboard, created_at, "
    "connected_at, ended_at, end_reason, last_seen, speaking_s, endpoint, mode, source, is_sandbox, billed_credits, "
    "provider_ended_at, provider_duration_s, provider_end_reason"
)
_BATCH = 2000


@dataclass(frozen=True)
class CopyReport:
    sessions_added: int
    sessions_kept: int
    events_added: int
    settings_added: int


def copy_log(source: UsageLog, target: UsageLog, *, batch: int = _BATCH) -> CopyReport:
    """Copy ``source`` into ``target`` in batches (each one transaction on the target)."""
    names = [c.strip() for c in _COLUMNS.split(",")]
    marks = ", ".join(f":{n}" for n in names)
    added = kept = events = 0
    with source.read() as src:
        rows = src.execute(f"SELECT {_COLUMNS} FROM sessions ORDER BY created_at, session_id").fetchall()
        settings = src.execute("SELECT key, value FROM settings ORDER BY key").fetchall()
    for start in range(0, len(rows), batch):
        chunk = [dict(zip(names, row, strict=True)) for row in rows[start : start + batch]]
        with target.write() as dst:
            new_ids: list[str] = []
            for values in chunk:
                cur = dst.execute(
                    f"INSERT INTO sessions ({_COLUMNS}) VALUES ({marks}) ON CONFLICT (session_id) DO NOTHING", values
                )
                if cur.rowcount:
                    new_ids.append(values["session_id"])
            rollups.add(dst, new_ids)
            kept += len(chunk) - len(new_ids)
            added += len(new_ids)
            events += _copy_events(source, dst, new_ids)
    settings_added = 0
    with target.write() as dst:
        for key, value in settings:
            cur = dst.execute(
                "INSERT INTO settings (key, value) VALUES (:k, :v) ON CONFLICT (key) DO NOTHING", {"k": key, "v": value}
            )
            settings_added += cur.rowcount
    return CopyReport(added, kept, events, settings_added)


def _copy_events(source: UsageLog, dst: Any, session_ids: list[str]) -> int:
    if not session_ids:
        return 0
    copied = 0
    with source.read() as src:
        for start in range(0, len(session_ids), 500):
            ids = session_ids[start : start + 500]
            params = {f"i{n}": sid for n, sid in enumerate(ids)}
            found = src.execute(
                f"SELECT session_id, at, kind, details FROM events WHERE session_id IN "
                f"({', '.join(':' + k for k in params)}) ORDER BY id",
                params,
            ).fetchall()
            if found:
                dst.executemany(
                    "INSERT INTO events (session_id, at, kind, details) VALUES (?, ?, ?, ?)",
                    [tuple(row) for row in found],
                )
                copied += len(found)
    return copied
