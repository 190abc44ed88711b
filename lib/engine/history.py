"""Ended sessions, kept in a small SQLite file so ``/v2/streaming.list`` survives a restart."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from lib.private_files import private_file


@dataclass(frozen=True)
class HistoryRow:
    session_id: str
    created_at: float
    ended_at: float
    avatar_id: str
    voice_name: str
    quality: str
    end_reason: str

    @property
    def duration(self) -> float:
        return max(0.0, self.ended_at - self.created_at)

    def to_api(self) -> dict:
        row = asdict(self)
        row.update(
            status="closed",
            api_key_type="local",
            duration=round(self.duration, 3),
            created_at=int(self.created_at),
            # To the millisecond (HeyGen sends whole seconds): a dashboard settling a session its crash
            # left open takes this as the true end.
            ended_at=round(self.ended_at, 3),
        )
        return row


class SessionHistory:
    def __init__(self, path: Path) -> None:
        private_file(path)  # which sessions ran, when: owner only
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS history (session_id TEXT PRIMARY KEY, created_at REAL, ended_at REAL,"
            " avatar_id TEXT, voice_name TEXT, quality TEXT, end_reason TEXT)"
        )

    def add(self, row: HistoryRow) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO history VALUES (?,?,?,?,?,?,?)",
                (
                    row.session_id,
                    row.created_at,
                    row.ended_at,
                    row.avatar_id,
                    row.voice_name,
                    row.quality,
                    row.end_reason,
                ),
            )

    def page(
        self, page: int, page_size: int, date_from: float | None = None, date_to: float | None = None
    ) -> tuple[int, list[HistoryRow]]:
        where, args = "WHERE created_at >= ? AND created_at < ?", [date_from or 0.0, date_to or 1e12]
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM history {where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT * FROM history {where} ORDER BY created_at DESC, session_id LIMIT ? OFFSET ?",
                [*args, page_size, (page - 1) * page_size],
            ).fetchall()
        return total, [HistoryRow(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
