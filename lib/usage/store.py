"""The usage log: records every session and event as it happens, in a SQLite file (WAL, the default) or in a
PostgreSQL database shared by several dashboards (``DATABASE_URL``).

Streamlit runs each script run on its own thread, so connections come from a small pool (a thread
borrows one per call and gives it back) instead of one per thread, which would leak one per rerun.
Writes in this process are serialised by a lock; across processes SQLite's ``BEGIN IMMEDIATE`` (waiting on
``busy_timeout``) or PostgreSQL's transaction-scoped advisory lock lets one writer in at a time, so read-then-write
steps (reconciliation, imports) never interleave.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from lib.private_files import private_file
from lib.usage import db, rollups
from lib.usage.credits import PRESETS, Pricing
from lib.usage.schema import BACKFILLS, SCHEMA_VERSION, statements

Timestamp = float | int | datetime | None


class EventKind(StrEnum):
    """Documented event kinds; ``record_event`` also accepts any other short string."""

    CREATED = "created"
    CONNECTED = "connected"
    FIRST_FRAME = "first_frame"  # the avatar's first picture arrived (ms since the session was asked for)
    TASK = "task"
    INTERRUPT = "interrupt"
    KEEP_ALIVE = "keep_alive"
    VOICE_TURN = "voice_turn"
    SCRIPT = "script"  # a script runner's step (segment sent, paused, skipped, …)
    BUDGET_OVERRIDE = "budget_override"  # started despite the monthly budget, with the usage at the time
    RECONNECT = "reconnect"
    ERROR = "error"
    CLOSED = "closed"
    FORCE_STOP = "force_stop"  # from the Sessions page or the command line, with its outcome
    REOPENED = "reopened"  # closed as lost, then listed active again by the provider: the close was wrong


class EndReason(StrEnum):
    """Why a session ended, as written to the log."""

    STOPPED = "stopped"  # the user pressed Stop (the page's button or the video's STOP)
    FORCE_STOPPED = "force_stopped"  # from the Sessions page or the command line
    RELEASED = "released"  # the browser tab's Streamlit session ended (tab closed)
    REPLACED = "replaced"  # a new session replaced it in the same tab (Reconnect, budget override)
    LEFT_PAGE = "left_page"  # the user went to another page
    FALLBACK = "fallback"  # the user switched to the local engine
    FALLBACK_ENDED = "fallback_ended"  # the user switched back from the local engine
    WATCHER_GONE = "watcher_gone"  # no page showed it for the watcher timeout
    DURATION_CAP = "duration_cap"  # the dashboard's cap on one session's length
    ERROR = "error"  # it could not be set up
    DISCONNECTED = "disconnected"  # media lost and not reconnected (the session of that attempt)
    LOST = "lost"  # closed by reconciliation: the provider no longer had it
    IMPORTED = "imported"  # from the provider's history
    PROVIDER_ENDED = "provider_ended"  # the provider ended it itself (its own reason is in the event log)


class UsageLogError(RuntimeError):
    """The log file cannot be used (not a database, not writable, written by a newer version of the
    dashboard); the message names the file and what to do."""


_WHERE = "Set AVATAR_OPS_DATA_DIR (or USAGE_DB_PATH) to a writable place"


def storage_problem(path: Path, exc: OSError | sqlite3.Error) -> str:
    """What went wrong with the log file ``path`` and what to do about it, in one or two sentences."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "")
        if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            return (
                f"The usage log {path} is not a SQLite database (it was left untouched). Move it away, or point "
                "USAGE_DB_PATH at another file."
            )
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR")):
            return f"The usage log {path} cannot be written ({exc}). Make {path.parent} writable. {_WHERE}."
        return f"The usage log {path} cannot be used: {exc}. {_WHERE}."
    if isinstance(exc, FileExistsError | NotADirectoryError):
        blocker = next((p for p in path.parents if p.is_file()), path)
        return f"The usage log {path} cannot be created: {blocker} is a file, not a folder. {_WHERE}."
    reason = exc.strerror or str(exc)
    where = exc.filename or path.parent
    return f"The usage log {path} cannot be created or written: {reason} ({where}). {_WHERE}."


_SESSION_COLUMNS = (
    "session_id, provider, avatar_id, voice_id, quality, video_encoding, started_by_dashboard, "
    "created_at, connected_at, ended_at, end_reason, last_seen, speaking_s, endpoint, "
    "mode, source, is_sandbox, billed_credits, provider_end_reason"
)


@dataclass(frozen=True)
class SessionRow:
    session_id: str
    provider: str
    avatar_id: str | None
    voice_id: str | None
    quality: str | None
    video_encoding: str | None
    started_by_dashboard: bool
    created_at: float
    connected_at: float | None
    ended_at: float | None
    end_reason: str | None
    last_seen: float | None
    speaking_s: float | None
    endpoint: str | None = None
    mode: str | None = None
    source: str | None = None
    is_sandbox: bool | None = None
    billed_credits: float | None = None
    """Credits the provider billed (imported history); wins over the estimate."""
    provider_end_reason: str | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> SessionRow:
        values = list(row)
        values[6] = bool(values[6])
        if len(values) > 16 and values[16] is not None:
            values[16] = bool(values[16])
        return cls(*values)

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    def duration_s(self, now: float | None = None) -> float:
        """Billable seconds: from creation until closed (or last seen, or now while still open)."""
        end = self.ended_at if self.ended_at is not None else self.last_seen
        if end is None:
            end = time.time() if now is None else now
        return max(0.0, end - self.created_at)

    @property
    def created_at_utc(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, UTC)


@dataclass(frozen=True)
class Reconciliation:
    """Outcome of comparing the log's open sessions with the provider's active list."""

    lost: list[SessionRow] = field(default_factory=list)
    """Open in the log but gone on the provider: now closed at last_seen with reason ``lost``."""
    orphans: list[str] = field(default_factory=list)
    """Active on the provider but unknown to the log (opened elsewhere); not inserted."""
    still_open: list[str] = field(default_factory=list)
    """Open in the log and still active on the provider."""
    closed_but_active: list[str] = field(default_factory=list)
    """Closed in the log yet still active on the provider (a stop that did not take): still billing."""
    elsewhere: list[SessionRow] = field(default_factory=list)
    """Open in the log on another engine or account that is still reachable (or cannot be checked): left
    open for whoever uses that endpoint to reconcile."""
    too_new: list[str] = field(default_factory=list)
    """Open in the log, not listed, but logged after the listing began (or within the grace period): the
    listing cannot say anything about them, so they are left open for the next look."""
    reopened: list[str] = field(default_factory=list)
    """Closed as ``lost`` before this listing began, yet listed active: reopened (and in ``still_open``)."""


@dataclass(frozen=True)
class HistoryRow:
    """One entry of the provider's session history (HeyGen ``GET /v2/streaming.list``, LiveAvatar
    ``GET /v1/sessions?type=historic``). The fields after ``voice`` are LiveAvatar's; None where not reported."""

    session_id: str
    created_at: Timestamp
    duration_s: float | None = None
    avatar_id: str | None = None
    voice: str | None = None
    ended_at: Timestamp = None
    mode: str | None = None
    source: str | None = None
    is_sandbox: bool | None = None
    billed_credits: float | None = None
    end_reason: str | None = None


@dataclass(frozen=True)
class HistoryImport:
    """What an import changed: sessions added, logged sessions given the provider's figures, rows read."""

    added: int
    updated: int
    read: int

    @property
    def unchanged(self) -> int:
        return self.read - self.added - self.updated


RECONCILE_GRACE_S = 2.0
"""A session logged less than this before a listing began is not judged by it. The log's ``created_at`` is
taken after the provider answered ``streaming.new``, so on one clock no grace is needed; this covers clock
skew between machines sharing one log."""

_SENSITIVE_KEY = re.compile(r"api[_-]?key|token|secret|password|authori[sz]ation|credential", re.I)


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit trail: ``at`` in UTC unix seconds; ``actor`` an email or ``local``."""

    at: float
    actor: str
    action: str
    target: str | None
    detail: str | None


def _scrub(value: Any) -> Any:
    """Credentials never reach the log, even if a caller passes a whole request body as details."""
    if isinstance(value, Mapping):
        return {str(k): "***" if _SENSITIVE_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if type(value).__name__ == "Secret":
        return "***"
    return value


def to_unix(at: Timestamp) -> float:
    """UTC unix seconds from a number, an aware datetime, or None (now)."""
    if at is None:
        return time.time()
    if isinstance(at, datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("Naive datetime given to the usage log; pass an aware datetime or unix seconds.")
        return at.timestamp()
    return float(at)


class UsageLog:
    """The usage log on a SQLite file or a PostgreSQL database; safe to share between threads (one instance per
    process is enough) and, on PostgreSQL, between dashboards and command lines on several machines.

    ``target`` is a file path (SQLite, as always), ``sqlite:///path`` or ``postgresql://user:pass@host:port/db``.
    """

    def __init__(self, target: Path | str, *, busy_timeout_s: float = 10.0) -> None:
        self._busy_timeout_s = busy_timeout_s
        self._write_lock = threading.RLock()
        self._closed = False
        self._engine: sa.Engine | None = None
        self.url: URL | None = None
        self.path: Path | None = None
        if db.is_url(str(target)) and isinstance(target, str):
            try:
                url = db.parse_url(target)
            except (ValueError, sa.exc.ArgumentError) as exc:
                raise UsageLogError(f"DATABASE_URL cannot be used: {db.scrub(str(exc), None)}") from None
            if url.get_backend_name() == db.SQLITE:
                self.path = Path(url.database or "").expanduser()
            else:
                self.url = url
        else:
            self.path = Path(target).expanduser()
        try:
            if self.path is not None:
                private_file(self.path)  # the log says who ran what: owner only (an existing file keeps its mode)
                sqlite_url = sa.URL.create("sqlite", database=str(self.path))
                self._engine = db.create(sqlite_url, busy_timeout_s=busy_timeout_s)
                db.enable_wal(self._engine, busy_timeout_s=busy_timeout_s)
            else:
                assert self.url is not None
                self._engine = db.create(self.url, busy_timeout_s=busy_timeout_s)
            self._migrate()
        except UsageLogError:
            self.close()
            raise
        except (OSError, sqlite3.Error, sa.exc.SQLAlchemyError) as exc:
            self.close()
            raise UsageLogError(self._problem(exc)) from None

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return db.SQLITE if self.url is None else db.POSTGRES

    @property
    def location(self) -> str:
        """Where the log is, fit to show: the file, or the database URL without its password."""
        return str(self.path) if self.url is None else db.safe_url(self.url)

    def _problem(self, exc: BaseException) -> str:
        """The message of a failure, never with the database password in it."""
        if self.path is not None:
            orig = getattr(exc, "orig", None)
            cause = orig if isinstance(orig, sqlite3.Error) else exc
            if isinstance(cause, OSError | sqlite3.Error):
                return storage_problem(self.path, cause)
            return f"The usage log {self.path} cannot be used: {exc}. {_WHERE}."
        orig = getattr(exc, "orig", None)
        detail = " ".join(str(orig if orig is not None else exc).split())
        return db.scrub(
            f"The usage log {self.location} cannot be used: {detail}. Check DATABASE_URL and that the server "
            "is reachable.",
            self.url,
        )

    def __repr__(self) -> str:
        return f"UsageLog({self.location!r})"

    def __enter__(self) -> UsageLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[db.Connection]:
        if self._closed or self._engine is None:
            raise UsageLogError(f"The usage log {self.location} is closed.")
        try:
            with db.transaction(self._engine, write=write) as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            # Lost server, wrong password, locked or full disk: say so without leaking the URL's password.
            raise UsageLogError(self._problem(exc)) from None

    @contextmanager
    def read(self) -> Iterator[db.Connection]:
        """A connection holding one read snapshot, for several queries that must agree."""
        with self._transaction(write=False) as conn:
            yield conn

    def _connection(self) -> AbstractContextManager[db.Connection]:
        return self.read()

    @contextmanager
    def _write(self) -> Iterator[db.Connection]:
        """One writer at a time: a lock in this process, ``BEGIN IMMEDIATE`` or an advisory lock across them."""
        with self._write_lock, self._transaction(write=True) as conn:
            yield conn

    def write(self) -> AbstractContextManager[db.Connection]:
        """A write transaction (one writer at a time, as every method's), for bulk tools such as the copy."""
        return self._write()

    def close(self) -> None:
        self._closed = True
        if self._engine is not None:
            self._engine.dispose()

    # -- schema ------------------------------------------------------------------------------

    def _version(self, conn: db.Connection) -> int:
        if conn.dialect == db.SQLITE:
            return int(conn.execute("PRAGMA user_version").scalar_one())
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        value = conn.execute("SELECT MAX(version) FROM schema_version").scalar_one()
        return 0 if value is None else int(value)

    def _set_version(self, conn: db.Connection, number: int) -> None:
        if conn.dialect == db.SQLITE:
            conn.execute(f"PRAGMA user_version = {int(number)}")
        else:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (:v)", {"v": number})

    def _newer(self, version: int) -> UsageLogError:
        where = "point USAGE_DB_PATH elsewhere" if self.url is None else "point DATABASE_URL elsewhere"
        return UsageLogError(
            f"The usage log {self.location} has schema version {version}, newer than this dashboard "
            f"understands ({SCHEMA_VERSION}). Upgrade the dashboard or {where}."
        )

    def _migrate(self) -> None:
        if self.url is None:
            with self.read() as conn:  # a read first: an up-to-date file is never locked for writing
                version = self._version(conn)
            if version > SCHEMA_VERSION:
                raise self._newer(version)
            if version == SCHEMA_VERSION:
                return
        with self._write() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = self._version(conn)
            if version > SCHEMA_VERSION:
                raise self._newer(version)
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in statements(number, conn.dialect):
                    conn.execute(statement)
                if number in BACKFILLS:
                    BACKFILLS[number](conn)
                self._set_version(conn, number)

    @property
    def schema_version(self) -> int:
        with self.read() as conn:
            return self._version(conn) if conn.dialect == db.SQLITE else self._read_pg_version(conn)

    @staticmethod
    def _read_pg_version(conn: db.Connection) -> int:
        value = conn.execute("SELECT MAX(version) FROM schema_version").scalar_one()
        return 0 if value is None else int(value)

    # -- sessions ----------------------------------------------------------------------------

    def open_session(
        self,
        session_id: str,
        provider: str,
        avatar_id: str | None = None,
        voice_id: str | None = None,
        quality: str | None = None,
        video_encoding: str | None = None,
        started_by_dashboard: bool = True,
        created_at: Timestamp = None,
        endpoint: str | None = None,
    ) -> bool:
        """Record a session right after ``streaming.new``; False if the id is already in the log.

        ``endpoint`` is the client's :attr:`StreamingClient.endpoint`: which engine or account it is on.
        """
        at = to_unix(created_at)
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO sessions (session_id, provider, avatar_id, voice_id, quality, video_encoding, "
                "started_by_dashboard, created_at, endpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id) DO NOTHING",
                (
                    session_id,
                    provider,
                    avatar_id,
                    voice_id,
                    quality,
                    video_encoding,
                    int(started_by_dashboard),
                    at,
                    endpoint,
                ),
            )
            if cur.rowcount == 0:
                return False
            self._insert_event(conn, session_id, EventKind.CREATED, None, at)
        return True

    def mark_connected(self, session_id: str, at: Timestamp = None) -> bool:
        """Media is flowing; keeps the first connect time (later ones are ``reconnect`` events)."""
        ts = to_unix(at)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE sessions SET connected_at = COALESCE(connected_at, ?), "
                f"last_seen = {conn.sql.greatest('COALESCE(last_seen, ?)', '?')} "
                "WHERE session_id = ? AND ended_at IS NULL",
                (ts, ts, ts, session_id),
            )
            if cur.rowcount == 0:
                return False
            self._insert_event(conn, session_id, EventKind.CONNECTED, None, ts)
        return True

    def heartbeat(self, session_id: str, at: Timestamp = None) -> bool:
        """The session is still alive and watched; this is where a crash leaves its end time."""
        ts = to_unix(at)
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE sessions SET last_seen = {conn.sql.greatest('COALESCE(last_seen, ?)', '?')} "
                "WHERE session_id = ? AND ended_at IS NULL",
                (ts, ts, session_id),
            )
        return cur.rowcount > 0

    def record_event(
        self,
        session_id: str,
        kind: str,
        details: Mapping[str, Any] | None = None,
        at: Timestamp = None,
        *,
        speaking_s: float | None = None,
    ) -> None:
        """Append an event (also a heartbeat). ``speaking_s`` adds avatar speaking time to the session
        (from ``avatar_stop_talking.duration_ms``, or a task's ``duration_ms``) for speaking-based credits."""
        ts = to_unix(at)
        with self._write() as conn:
            self._insert_event(conn, session_id, str(kind), details, ts)
            seen = f"last_seen = {conn.sql.greatest('COALESCE(last_seen, ?)', '?')}"
            if speaking_s is None:
                conn.execute(
                    f"UPDATE sessions SET {seen} WHERE session_id = ? AND ended_at IS NULL", (ts, ts, session_id)
                )
            else:
                conn.execute(
                    f"UPDATE sessions SET {seen}, speaking_s = COALESCE(speaking_s, 0) + ? "
                    "WHERE session_id = ? AND ended_at IS NULL",
                    (ts, ts, float(speaking_s), session_id),
                )

    def close_session(self, session_id: str, reason: str, at: Timestamp = None) -> bool:
        """Record the end of a session. Idempotent: a second close keeps the first end and reason."""
        ts = to_unix(at)
        with self._write() as conn:
            closed = self._close(conn, session_id, str(reason), ts)
        return closed

    def _close(self, conn: db.Connection, session_id: str, reason: str, at: float) -> bool:
        cur = conn.execute(
            f"UPDATE sessions SET ended_at = {conn.sql.greatest('?', 'created_at')}, end_reason = ? "
            "WHERE session_id = ? AND ended_at IS NULL",
            (at, reason, session_id),
        )
        if cur.rowcount == 0:
            return False
        rollups.add(conn, [session_id])
        details: dict[str, Any] = {"reason": reason}
        if reason == EndReason.LOST:
            # A lost session is closed at its last heartbeat, long before the decision; reconciliation
            # needs the decision time to tell a later listing (which may reopen it) from a stale one.
            details["decided_at"] = time.time()
        self._insert_event(conn, session_id, EventKind.CLOSED, details, at)
        return True

    def _reopen_if_wrongly_lost(self, conn: db.Connection, session_id: str, listed_at: float) -> bool:
        """Undo a ``lost`` close when a listing that began after the decision still shows the session."""
        row = conn.execute("SELECT end_reason FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is None or row[0] != EndReason.LOST:
            return False
        closed = conn.execute(
            "SELECT at, details FROM events WHERE session_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
            (session_id, EventKind.CLOSED),
        ).fetchone()
        decided = json.loads(closed[1] or "{}").get("decided_at", closed[0]) if closed else None
        if decided is not None and float(decided) >= listed_at:
            return False  # the listing is older than the decision: it proves nothing
        rollups.remove(conn, [session_id])
        conn.execute("UPDATE sessions SET ended_at = NULL, end_reason = NULL WHERE session_id = ?", (session_id,))
        self._insert_event(conn, session_id, EventKind.REOPENED, {"was": "lost", "listed_at": listed_at}, listed_at)
        return True

    @staticmethod
    def _insert_event(
        conn: db.Connection, session_id: str, kind: str, details: Mapping[str, Any] | None, at: float
    ) -> None:
        payload = None if details is None else json.dumps(_scrub(details), default=str, separators=(",", ":"))
        conn.execute(
            "INSERT INTO events (session_id, at, kind, details) VALUES (?, ?, ?, ?)",
            (session_id, at, kind, payload),
        )

    def get_session(self, session_id: str) -> SessionRow | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        return SessionRow.from_row(row) if row else None

    def open_sessions(self, provider: str | None = None) -> list[SessionRow]:
        sql = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE ended_at IS NULL"
        params: tuple[Any, ...] = ()
        if provider is not None:
            sql += " AND provider = ?"
            params = (provider,)
        with self._connection() as conn:
            rows = conn.execute(sql + " ORDER BY created_at", params).fetchall()
        return [SessionRow.from_row(r) for r in rows]

    def was_force_stopped(self, session_id: str) -> bool:
        """Did the Sessions page or the command line stop this session (whatever closed it in the log first)?"""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT details FROM events WHERE session_id = ? AND kind = ?", (session_id, EventKind.FORCE_STOP)
            ).fetchall()
        return any(json.loads(details or "{}").get("outcome") == "stopped" for (details,) in rows)

    def events(self, session_id: str) -> list[tuple[float, str, dict[str, Any] | None]]:
        """``(at, kind, details)`` of one session, oldest first."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT at, kind, details FROM events WHERE session_id = ? ORDER BY at, id", (session_id,)
            ).fetchall()
        return [(at, kind, json.loads(details) if details else None) for at, kind, details in rows]

    def reconcile(
        self,
        active_session_ids: Iterable[str],
        provider: str,
        endpoint: str | None = None,
        *,
        reachable: Callable[[str], bool] | None = None,
        listed_at: float | None = None,
    ) -> Reconciliation:
        """Align the log with the provider's ``streaming.list`` (after a crash or on every refresh).

        ``active_session_ids`` is what ``endpoint`` listed. Open sessions logged on another endpoint are not
        in that list: they are closed as lost only if ``reachable(their_endpoint)`` says that endpoint is
        gone, else kept open and returned as ``elsewhere``. Without an ``endpoint`` (or for sessions logged
        without one) every open session of ``provider`` is compared with the list.

        ``listed_at`` is when the listing *began* (taken before the request). A session logged after that
        (less :data:`RECONCILE_GRACE_S`) may have started after the provider answered, so its absence means
        nothing: it is left open (``too_new``). A session closed as lost before ``listed_at`` that the
        listing still shows was closed wrongly and is reopened. Without ``listed_at`` the listing counts as
        taken now (callers that list first should always pass it).
        """
        active = set(active_session_ids)
        listed = time.time() if listed_at is None else listed_at
        verdicts: dict[str, bool] = {}

        def compared(row: SessionRow) -> bool:
            return endpoint is None or row.endpoint is None or row.endpoint == endpoint

        def gone_elsewhere(row: SessionRow) -> bool:
            assert row.endpoint is not None
            if reachable is None:
                return False
            if row.endpoint not in verdicts:
                verdicts[row.endpoint] = reachable(row.endpoint)
            return not verdicts[row.endpoint]

        with self._write() as conn:
            open_rows = [
                SessionRow.from_row(r)
                for r in conn.execute(
                    f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE ended_at IS NULL AND provider = ? "
                    "ORDER BY created_at",
                    (provider,),
                )
            ]
            lost: list[SessionRow] = []
            elsewhere: list[SessionRow] = []
            too_new: list[str] = []
            for row in open_rows:
                if row.session_id in active:
                    continue
                if row.created_at >= listed - RECONCILE_GRACE_S:
                    too_new.append(row.session_id)
                    continue
                if not compared(row) and not gone_elsewhere(row):
                    elsewhere.append(row)
                    continue
                end = row.last_seen if row.last_seen is not None else row.created_at
                self._close(conn, row.session_id, EndReason.LOST, end)
                lost.append(
                    SessionRow.from_row(
                        conn.execute(
                            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = ?", (row.session_id,)
                        ).fetchone()
                    )
                )
            known: dict[str, bool] = {}
            ids = sorted(active)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT session_id, ended_at IS NOT NULL FROM sessions WHERE session_id IN ({marks})"
                for sid, ended in conn.execute(sql, chunk):
                    known[sid] = bool(ended)
            reopened = [
                sid for sid in ids if known.get(sid) is True and self._reopen_if_wrongly_lost(conn, sid, listed)
            ]
            for sid in reopened:
                known[sid] = False
        return Reconciliation(
            lost=lost,
            orphans=[sid for sid in ids if sid not in known],
            still_open=[sid for sid in ids if known.get(sid) is False],
            closed_but_active=[sid for sid in ids if known.get(sid) is True],
            elsewhere=elsewhere,
            too_new=too_new,
            reopened=reopened,
        )

    def settle_end_times(self, end_times: Mapping[str, float]) -> int:
        """Replace the last-heartbeat end of sessions closed as ``lost`` with the provider's own end time
        (its history knows when it really stopped them). Returns how many rows changed."""
        changed = 0
        with self._write() as conn:
            for session_id, ended in end_times.items():
                lost = conn.execute(
                    "SELECT 1 FROM sessions WHERE session_id = ? AND end_reason = ?", (session_id, EndReason.LOST)
                ).fetchone()
                if lost is None:
                    continue
                with rollups.changing(conn, [session_id]):
                    cur = conn.execute(
                        f"UPDATE sessions SET ended_at = {conn.sql.greatest('?', 'created_at')} "
                        "WHERE session_id = ? AND end_reason = ?",
                        (float(ended), session_id, EndReason.LOST),
                    )
                if cur.rowcount:
                    changed += 1
                    conn.execute(
                        "UPDATE events SET at = ? WHERE id = (SELECT MAX(id) FROM events WHERE session_id = ? "
                        "AND kind = ?)",
                        (float(ended), session_id, EventKind.CLOSED),
                    )
        return changed

    def import_history(self, rows: Iterable[HistoryRow | Mapping[str, Any]], provider: str = "heygen") -> int:
        """Add the provider's past sessions; ids already in the log are kept as logged. Returns rows added."""
        return self.import_provider_history(rows, provider).added

    def import_provider_history(self, rows: Iterable[HistoryRow | Mapping[str, Any]], provider: str) -> HistoryImport:
        """Add the provider's past sessions and give logged ones (matched by session id) the provider's own
        figures: mode, source, sandbox, billed credits, end reason. Idempotent: a second import of the same
        history adds and updates nothing. Sessions this dashboard logged keep their own times and reasons."""
        parsed = [raw if isinstance(raw, HistoryRow) else _history_row(raw) for raw in rows]
        added = updated = 0
        with self._write() as conn, rollups.changing(conn, [row.session_id for row in parsed]):
            for row in parsed:
                created = to_unix(row.created_at)
                duration = None if row.duration_s is None else max(0.0, float(row.duration_s))
                provider_end = None if row.ended_at is None else to_unix(row.ended_at)
                ended = provider_end if provider_end is not None else created + (duration or 0.0)
                sandbox = None if row.is_sandbox is None else int(row.is_sandbox)
                figures = (row.mode, row.source, sandbox, row.billed_credits, provider_end, duration, row.end_reason)
                cur = conn.execute(
                    "INSERT INTO sessions (session_id, provider, avatar_id, voice_id, started_by_dashboard, "
                    "created_at, ended_at, end_reason, mode, source, is_sandbox, billed_credits, provider_ended_at, "
                    "provider_duration_s, provider_end_reason) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (session_id) DO NOTHING",
                    (row.session_id, provider, row.avatar_id, row.voice, created, ended, EndReason.IMPORTED, *figures),
                )
                if cur.rowcount:
                    added += 1
                    continue
                if all(value is None for value in figures):
                    continue  # HeyGen's history says nothing the log lacks
                cur = conn.execute(
                    "UPDATE sessions SET mode = COALESCE(?, mode), source = COALESCE(?, source), "
                    "is_sandbox = COALESCE(?, is_sandbox), billed_credits = COALESCE(?, billed_credits), "
                    "provider_ended_at = COALESCE(?, provider_ended_at), "
                    "provider_duration_s = COALESCE(?, provider_duration_s), "
                    "provider_end_reason = COALESCE(?, provider_end_reason) "
                    "WHERE session_id = ? AND NOT (mode IS NOT DISTINCT FROM COALESCE(?, mode) "
                    "AND source IS NOT DISTINCT FROM COALESCE(?, source) "
                    "AND is_sandbox IS NOT DISTINCT FROM COALESCE(?, is_sandbox) "
                    "AND billed_credits IS NOT DISTINCT FROM COALESCE(?, billed_credits) "
                    "AND provider_ended_at IS NOT DISTINCT FROM COALESCE(?, provider_ended_at) "
                    "AND provider_duration_s IS NOT DISTINCT FROM COALESCE(?, provider_duration_s) "
                    "AND provider_end_reason IS NOT DISTINCT FROM COALESCE(?, provider_end_reason))",
                    (*figures, row.session_id, *figures),
                )
                updated += cur.rowcount
        return HistoryImport(added, updated, len(parsed))

    # -- audit trail -------------------------------------------------------------------------

    def record_audit(
        self, actor: str, action: str, target: str | None = None, detail: str | None = None, at: Timestamp = None
    ) -> None:
        """Who (a signed-in email, or ``local``) did which operator action, on what. ``detail`` is a short
        human line (an outcome, a figure), never a credential."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (to_unix(at), actor, str(action), target, detail),
            )

    def audit_entries(
        self,
        *,
        actions: Iterable[str] = (),
        target: str | None = None,
        since: Timestamp | float | None = None,
        limit: int = 200,
    ) -> list[AuditEntry]:
        """Audit lines, newest first, optionally only some actions, one target, or since a time."""
        sql = "SELECT at, actor, action, target, detail FROM audit WHERE 1 = 1"
        params: list[Any] = []
        wanted = [str(a) for a in actions]
        if wanted:
            sql += f" AND action IN ({', '.join('?' * len(wanted))})"
            params += wanted
        if target is not None:
            sql += " AND target = ?"
            params.append(target)
        if since is not None:
            sql += " AND at >= ?"
            params.append(to_unix(since))
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        params.append(int(limit))
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [AuditEntry(*row) for row in rows]

    # -- settings ----------------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        with self._connection() as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value (a usage-page choice); never a credential."""
        self.set_settings({key: value})

    def set_settings(self, values: Mapping[str, Any]) -> None:
        """Store several settings in one transaction."""
        for key in values:
            if _SENSITIVE_KEY.search(key):
                raise ValueError("Credentials are not stored in the usage log; use secrets.toml or the environment.")
        payload = [(key, json.dumps(value)) for key, value in values.items()]
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                payload,
            )

    def load_pricing(self, default: Pricing) -> Pricing:
        """The usage page's saved credit preset, price and budget, falling back to ``default``."""
        preset = self.get_setting("credit_preset")
        model = PRESETS.get(preset, default.model) if isinstance(preset, str) else default.model
        price = self.get_setting("price_per_credit", default.price_per_credit)
        budget = self.get_setting("monthly_budget_credits", default.monthly_budget_credits)
        return Pricing(model=model, price_per_credit=float(price), monthly_budget_credits=float(budget))

    def save_pricing(self, pricing: Pricing) -> None:
        self.set_settings(
            {
                "credit_preset": pricing.model.key,
                "price_per_credit": pricing.price_per_credit,
                "monthly_budget_credits": pricing.monthly_budget_credits,
            }
        )


def _history_row(raw: Mapping[str, Any]) -> HistoryRow:
    """Accepts HeyGen's field names (``duration``, ``voice_name``) as well as ours."""
    duration = raw.get("duration_s", raw.get("duration"))
    return HistoryRow(
        session_id=str(raw["session_id"]),
        created_at=raw["created_at"],
        duration_s=None if duration is None else float(duration),
        avatar_id=raw.get("avatar_id"),
        voice=raw.get("voice") or raw.get("voice_name") or raw.get("voice_id"),
        ended_at=raw.get("ended_at", raw.get("end_at")),
        mode=raw.get("mode"),
        source=raw.get("source"),
        is_sandbox=raw.get("is_sandbox"),
        billed_credits=raw.get("billed_credits", raw.get("credits_consumed")),
        end_reason=raw.get("end_reason"),
    )
