"""The engine's LiveAvatar twin: accounts state behind ``lib/engine/liveavatar_api.py``.

What it keeps, and where:

* **Sessions.** A LiveAvatar session is minted by ``/v1/sessions/token`` (kept in memory as a
  :class:`PendingSession` with its one-use Bearer token) and becomes a real engine session on ``/start``
  (same :class:`SessionManager` as the HeyGen-shaped API, so it renders and streams when a viewer connects).
  Its row lives in the ``liveavatar_sessions`` table of the engine's history DB (``--history-db``) from the
  start, is refreshed every few seconds while it runs, and gets ``end_at``/``end_reason``/``credits_consumed``
  when it ends — so history survives a restart. Rows still open when the engine starts again belonged to a
  process that died: they are closed as ``SERVER_ERROR`` at their last refresh.
* **Credits.** The balance is ``--liveavatar-credits`` (the grant) minus every credit consumed by the
  sessions in this DB, ended or running: raising the flag is a top-up; a fresh DB is a fresh account.
  Sessions are charged from ``/start`` continuously by elapsed time (``rate × seconds / 60``, fractional,
  no minimum), FULL 2 and LITE 1 credits a minute, sandbox 0. A start the balance cannot cover for one
  minute is refused ("insufficient credits"); when the balance reaches zero, every running non-sandbox
  session is ended with ``NO_CREDITS`` (checked every second). Tests may shorten the billing minute with
  the hidden ``--liveavatar-minute-seconds``: it changes no rule, only how fast credits burn.
* **Limits.** ``--liveavatar-concurrency`` running sessions at most (0 = unlimited; the engine's capacity
  budget still applies); one sandbox session at a time; sandbox sessions run only avatar Wayne and end
  after at most 60 s with ``MAX_DURATION_REACHED``; a session idle for ``--liveavatar-idle-timeout``
  seconds (default 300, LiveAvatar's 5 minutes) without keep-alive or speech ends with ``IDLE_TIMEOUT``.
* **Contexts** in the ``liveavatar_contexts`` table. **Transcripts** are collected from the engine
  session's events (user text of talk/chat tasks, the avatar's spoken text) and stored with the row.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.engine import avatars
from lib.engine import errors as E
from lib.engine.config import EngineConfig
from lib.engine.sessions import EngineSession, SessionManager, SessionOptions
from lib.engine.tts import UnknownVoice, VoiceBank, VoiceInfo
from lib.liveavatar.models import (
    SANDBOX_AVATAR_ID,
    SessionEndReason,
    SessionEntry,
    SessionMode,
    SessionSource,
    credits_per_minute,
    required_variables,
)

log = logging.getLogger("avatar_ops.engine.liveavatar")

TOKEN_TTL = 3600.0
TICK_SECONDS = 1.0
PERSIST_EVERY = 5.0
_ID_NAMESPACE = uuid.UUID("6f1d3c1e-5a0b-4c7e-9a57-3b1f2d0c4e88")
SANDBOX_ENGINE_AVATAR = "ben_studio"  # Wayne is played by Ben
# LiveAvatar quality → the engine's three sizes (very_high 1080p, high 720p, medium/low 480p).
ENGINE_QUALITY = {"very_high": "high", "high": "medium", "medium": "low", "low": "low"}
# Why an engine session closed (sessions.py) → LiveAvatar's end reason.
ENGINE_END_REASONS = {
    "stopped": SessionEndReason.USER_CLOSED,
    "idle_timeout": SessionEndReason.IDLE_TIMEOUT,
    "duration_limit": SessionEndReason.MAX_DURATION_REACHED,
    "connection_failed": SessionEndReason.USER_DISCONNECTED,
    "connection_closed": SessionEndReason.USER_DISCONNECTED,
    "engine_shutdown": SessionEndReason.SERVER_ERROR,
}
LANGUAGES: tuple[tuple[str, str], ...] = (
    ("en", "English"),
    ("de", "German"),
    ("es", "Spanish"),
    ("fr", "French"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("nl", "Dutch"),
    ("pt", "Portuguese"),
    ("zh", "Chinese"),
)


class LaError(Exception):
    """A LiveAvatar-shaped failure: ``{"code": status, "data": null, "message": ...}`` with that HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def engine_uuid(kind: str, engine_id: str) -> str:
    """The stable LiveAvatar id of an engine avatar or voice (same on every engine and every run)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{kind}:{engine_id}"))


def end_reason_of(engine: EngineSession) -> SessionEndReason:
    """LiveAvatar's end reason for a closed engine session (it was closed with one, or for an engine reason)."""
    reason = engine.end_reason or ""
    try:
        return SessionEndReason(reason)
    except ValueError:
        return ENGINE_END_REASONS.get(reason, SessionEndReason.UNKNOWN)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


# --- storage ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRecord:
    """One row of ``liveavatar_sessions``: a running or ended LiveAvatar session."""

    id: str
    created_at: float
    updated_at: float
    duration: float
    source: SessionSource
    mode: SessionMode
    is_sandbox: bool
    credits_consumed: float
    end_at: float | None = None
    end_reason: SessionEndReason | None = None
    avatar_id: str = ""
    context_id: str | None = None
    engine_session_id: str | None = None
    transcript: tuple[dict[str, Any], ...] = ()

    def to_entry(self) -> SessionEntry:
        created = datetime.fromtimestamp(self.created_at, UTC)
        return SessionEntry(
            id=self.id,
            created_at=created,
            updated_at=datetime.fromtimestamp(self.updated_at, UTC),
            duration_s=int(self.duration),
            source=self.source,
            mode=self.mode,
            is_sandbox=self.is_sandbox,
            credits_consumed=round(self.credits_consumed, 4),
            end_at=datetime.fromtimestamp(self.end_at, UTC) if self.end_at is not None else None,
            end_reason=self.end_reason,
        )


_SESSION_COLUMNS = (
    "id, created_at, updated_at, duration, source, mode, is_sandbox, credits_consumed, end_at, end_reason,"
    " avatar_id, context_id, engine_session_id, transcript"
)


def _record(row: tuple[Any, ...]) -> SessionRecord:
    return SessionRecord(
        id=row[0],
        created_at=row[1],
        updated_at=row[2],
        duration=row[3],
        source=SessionSource(row[4]),
        mode=SessionMode(row[5]),
        is_sandbox=bool(row[6]),
        credits_consumed=row[7],
        end_at=row[8],
        end_reason=SessionEndReason(row[9]) if row[9] else None,
        avatar_id=row[10] or "",
        context_id=row[11],
        engine_session_id=row[12],
        transcript=tuple(json.loads(row[13] or "[]")),
    )


@dataclass(frozen=True)
class ContextRecord:
    id: str
    name: str
    prompt: str
    opening_text: str
    links: tuple[dict[str, Any], ...]
    created_at: float
    updated_at: float

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "prompt": self.prompt,
            "opening_text": self.opening_text,
            "links": list(self.links),
            "required_dynamic_variables": list(required_variables(self.prompt, self.opening_text)),
        }


class LiveAvatarStore:
    """The twin's tables in the engine's history DB (its own connection; WAL lets both share the file).

    Tests seed history through :meth:`put_session` before starting an engine on the same file.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS liveavatar_sessions (id TEXT PRIMARY KEY, created_at REAL, updated_at REAL,"
            " duration REAL, source TEXT, mode TEXT, is_sandbox INTEGER, credits_consumed REAL, end_at REAL,"
            " end_reason TEXT, avatar_id TEXT, context_id TEXT, engine_session_id TEXT, transcript TEXT)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS liveavatar_contexts (id TEXT PRIMARY KEY, name TEXT, prompt TEXT,"
            " opening_text TEXT, links TEXT, created_at REAL, updated_at REAL)"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # sessions
    def put_session(self, record: SessionRecord) -> None:
        values = (
            record.id,
            record.created_at,
            record.updated_at,
            record.duration,
            record.source.value,
            record.mode.value,
            int(record.is_sandbox),
            record.credits_consumed,
            record.end_at,
            record.end_reason.value if record.end_reason else None,
            record.avatar_id,
            record.context_id,
            record.engine_session_id,
            json.dumps(list(record.transcript)),
        )
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO liveavatar_sessions ({_SESSION_COLUMNS}) VALUES ({','.join('?' * 14)})", values
            )

    def put_sessions(self, records: Iterable[SessionRecord]) -> None:
        for record in records:
            self.put_session(record)

    def get_session(self, session_id: str) -> SessionRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_SESSION_COLUMNS} FROM liveavatar_sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return _record(row) if row else None

    def historic_page(
        self, page: int, page_size: int, avatar_id: str | None = None, context_id: str | None = None
    ) -> tuple[int, list[SessionRecord]]:
        where, args = "WHERE end_at IS NOT NULL", []
        if avatar_id:
            where += " AND avatar_id = ?"
            args.append(avatar_id)
        if context_id:
            where += " AND context_id = ?"
            args.append(context_id)
        with self._lock:
            count = self._db.execute(f"SELECT COUNT(*) FROM liveavatar_sessions {where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT {_SESSION_COLUMNS} FROM liveavatar_sessions {where} ORDER BY created_at DESC, id"
                " LIMIT ? OFFSET ?",
                [*args, page_size, (page - 1) * page_size],
            ).fetchall()
        return count, [_record(r) for r in rows]

    def ended_credits(self) -> float:
        with self._lock:
            total = self._db.execute(
                "SELECT COALESCE(SUM(credits_consumed), 0) FROM liveavatar_sessions WHERE end_at IS NOT NULL"
            ).fetchone()[0]
        return float(total)

    def close_orphans(self) -> int:
        """Rows left open by an engine that died: ended at their last refresh, as a server error."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE liveavatar_sessions SET end_at = updated_at, end_reason = ? WHERE end_at IS NULL",
                (SessionEndReason.SERVER_ERROR.value,),
            )
        return cursor.rowcount

    # contexts
    def put_context(self, record: ContextRecord) -> None:
        values = (
            record.id,
            record.name,
            record.prompt,
            record.opening_text,
            json.dumps(list(record.links)),
            record.created_at,
            record.updated_at,
        )
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO liveavatar_contexts VALUES (?,?,?,?,?,?,?)", values)

    def get_context(self, context_id: str) -> ContextRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM liveavatar_contexts WHERE id = ?", (context_id,)).fetchone()
        return self._context(row) if row else None

    def contexts_page(self, page: int, page_size: int) -> tuple[int, list[ContextRecord]]:
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM liveavatar_contexts").fetchone()[0]
            rows = self._db.execute(
                "SELECT * FROM liveavatar_contexts ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                (page_size, (page - 1) * page_size),
            ).fetchall()
        return count, [self._context(r) for r in rows]

    def delete_context(self, context_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM liveavatar_contexts WHERE id = ?", (context_id,)).rowcount > 0

    @staticmethod
    def _context(row: tuple[Any, ...]) -> ContextRecord:
        return ContextRecord(row[0], row[1], row[2], row[3], tuple(json.loads(row[4] or "[]")), row[5], row[6])


# --- live state ---------------------------------------------------------------------------------


@dataclass
class PendingSession:
    """A minted session token whose session has not been started yet (not billed, not listed)."""

    session_id: str
    token: str
    minted_at: float
    mode: SessionMode
    is_sandbox: bool
    avatar_uuid: str
    engine_avatar: str
    voice_id: str
    quality: str
    encoding: str
    max_duration: int
    language: str
    context_id: str | None
    knowledge_base: str | None


@dataclass
class LiveSession:
    """A started LiveAvatar session and the engine session that renders it."""

    record: SessionRecord
    engine: EngineSession
    token: str
    started_mono: float
    rate: int
    transcript: list[dict[str, Any]] = field(default_factory=list)
    speaking: dict[str, dict[str, Any]] = field(default_factory=dict)  # task_id → line being spoken
    last_seq: int = 0
    persisted_mono: float = 0.0
    ended: bool = False
    waiter: asyncio.Task | None = None
    minute_seconds: float = 60.0  # a billing minute; tests shorten it (--liveavatar-minute-seconds)
    ws_token: str | None = None  # LITE only: the credential in the session's ws_url (liveavatar_lite.py)
    socket_open: bool = False  # LITE only: one socket at a time

    def elapsed(self) -> float:
        return max(0.0, time.monotonic() - self.started_mono)

    def consumed(self) -> float:
        return self.rate * self.elapsed() / self.minute_seconds

    def snapshot(self) -> SessionRecord:
        now = time.time()
        return replace(
            self.record,
            updated_at=now,
            duration=self.elapsed(),
            credits_consumed=self.consumed(),
            transcript=tuple(self.transcript),
        )

    def harvest(self) -> None:
        """Turn the engine session's new events into transcript lines (its event log is bounded)."""
        for event in self.engine.events.after(self.last_seq):
            self.last_seq = event["seq"]
            kind, at = event.get("type"), float(event.get("at", time.time()))
            if kind == "user_talking_message":
                self._line("user", str(event.get("message", "")), at)
            elif kind == "avatar_talking_message":
                task = str(event.get("task_id"))
                line = self.speaking.get(task)
                if line is None:
                    self.speaking[task] = self._line("avatar", str(event.get("message", "")), at)
                else:
                    line["transcript"] = f"{line['transcript']} {event.get('message', '')}".strip()
            elif kind == "avatar_end_message":
                self.speaking.pop(str(event.get("task_id")), None)

    def _line(self, role: str, text: str, at: float) -> dict[str, Any]:
        line = {
            "role": role,
            "transcript": text,
            "absolute_timestamp": int(at),
            "relative_timestamp": max(0, int(at - self.record.created_at)),
        }
        self.transcript.append(line)
        return line


def transcript_page(lines: Iterable[dict[str, Any]], start: int | None, end: int | None) -> tuple[list, int | None]:
    """Lines with ``start <= absolute_timestamp < end`` and the ``start_timestamp`` of the next poll."""
    chosen = [
        line
        for line in lines
        if (start is None or line["absolute_timestamp"] >= start) and (end is None or line["absolute_timestamp"] < end)
    ]
    following = chosen[-1]["absolute_timestamp"] + 1 if chosen else start
    return chosen, following


class LiveAvatarState:
    """Tokens, running sessions, credits and limits of the twin; called from the API's handlers (event loop)."""

    def __init__(
        self,
        config: EngineConfig,
        manager: SessionManager,
        voices: VoiceBank,
        store: LiveAvatarStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.manager = manager
        self.voices = voices
        self.store = store or LiveAvatarStore(config.history_path)
        self.pending: dict[str, PendingSession] = {}  # by session id
        self.live: dict[str, LiveSession] = {}  # by session id
        self._tokens: dict[str, str] = {}  # session token → session id (pending or live)
        self._used_tokens: set[str] = set()
        self._signing_key = secrets.token_bytes(32)
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task | None = None
        self._clock = clock
        orphans = self.store.close_orphans()
        if orphans:
            log.info("closed %d LiveAvatar session(s) left open by a previous engine run", orphans)
        self._ended_credits = self.store.ended_credits()

    def now(self) -> float:
        return self._clock()

    # --- catalogue ----------------------------------------------------------------------------
    def avatar_for(self, avatar_uuid: str) -> tuple[str, bool] | None:
        """The engine avatar playing this LiveAvatar avatar id, and whether it is a public one."""
        if avatar_uuid == SANDBOX_AVATAR_ID:
            return SANDBOX_ENGINE_AVATAR, True
        for spec in avatars.AVATARS:
            if engine_uuid("avatar", spec.avatar_id) == avatar_uuid:
                return spec.avatar_id, False
        return None

    def voice_for(self, voice_uuid: str) -> VoiceInfo | None:
        for voice in self.voices.voices():
            if engine_uuid("voice", voice.voice_id) == voice_uuid:
                return voice
        return None

    def default_voice(self, engine_avatar: str) -> VoiceInfo:
        try:
            return self.voices.get(avatars.get_spec(engine_avatar).default_voice)
        except (UnknownVoice, KeyError):
            return self.voices.get(self.voices.default_voice_id)

    # --- credits and limits -------------------------------------------------------------------
    def balance(self) -> float:
        running = sum(s.consumed() for s in self.live.values() if not s.ended)
        return self.config.liveavatar_credits - self._ended_credits - running

    def _check_can_start(self, mode: SessionMode, is_sandbox: bool) -> None:
        rate = credits_per_minute(mode, is_sandbox)
        if rate and self.balance() < rate:
            raise LaError(
                403,
                f"Insufficient credits: a {mode.value} session needs {rate} credits for its first minute and "
                f"{max(0.0, self.balance()):.2f} are left.",
            )
        running = [s for s in self.live.values() if not s.ended]
        limit = self.config.liveavatar_concurrency
        if limit and len(running) >= limit:
            raise LaError(
                403, f"Session concurrency limit reached: {len(running)} of {limit} sessions running. Stop one first."
            )
        if is_sandbox and any(s.record.is_sandbox for s in running):
            raise LaError(403, "Sandbox concurrency limit reached: one sandbox session at a time. Stop it first.")

    # --- tokens -------------------------------------------------------------------------------
    def mint(self, pending: PendingSession) -> None:
        self._check_can_start(pending.mode, pending.is_sandbox)
        self.pending[pending.session_id] = pending
        self._tokens[pending.token] = pending.session_id
        now = self._clock()
        for session_id, old in list(self.pending.items()):
            if now - old.minted_at > TOKEN_TTL:
                self.pending.pop(session_id, None)
                self._tokens.pop(old.token, None)

    def new_token(self, session_id: str, ttl: float = TOKEN_TTL) -> str:
        """A JWT-shaped, HMAC-signed session token; the twin only ever looks it up, never trusts its claims."""

        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()

        now = int(self._clock())
        claims = {
            "sub": session_id,
            "iat": now,
            "exp": now + int(ttl),
            "jti": secrets.token_hex(8),
            "iss": "avatar-ops",
        }
        body = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
        signature = hmac.new(self._signing_key, body.encode(), hashlib.sha256).digest()
        return f"{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    def session_of_token(self, token: str) -> str | None:
        return self._tokens.get(token)

    # --- start / stop -------------------------------------------------------------------------
    async def start(self, token: str) -> tuple[LiveSession, dict[str, str]]:
        async with self._lock:
            session_id = self._tokens.get(token)
            if session_id is None:
                raise LaError(401, "Invalid or expired session token.")
            if token in self._used_tokens or session_id in self.live:
                raise LaError(401, "This session token was already used to start its session.")
            pending = self.pending.get(session_id)
            if pending is None:
                raise LaError(401, "Invalid or expired session token.")
            if self._clock() - pending.minted_at > TOKEN_TTL:
                raise LaError(401, "The session token has expired; ask for a new one.")
            self._check_can_start(pending.mode, pending.is_sandbox)
            options = SessionOptions(
                avatar_id=pending.engine_avatar,
                voice_id=pending.voice_id,
                quality=pending.quality,
                video_encoding=pending.encoding,
                knowledge_base=pending.knowledge_base,
                idle_timeout=self.config.liveavatar_idle_timeout,
                language=pending.language,
            )
            try:
                engine_session, offer = await self.manager.create(options)
            except E.ApiError as exc:
                # The engine's own capacity (CPU budget) is full: say "concurrency" like LiveAvatar does.
                raise LaError(403, f"Session concurrency limit reached on the local engine: {exc.message}") from None
            engine_session.max_duration = pending.max_duration
            self._used_tokens.add(token)
            self.pending.pop(session_id, None)
            now = self._clock()
            record = SessionRecord(
                id=session_id,
                created_at=now,
                updated_at=now,
                duration=0.0,
                source=SessionSource.API,
                mode=pending.mode,
                is_sandbox=pending.is_sandbox,
                credits_consumed=0.0,
                avatar_id=pending.avatar_uuid,
                context_id=pending.context_id,
                engine_session_id=engine_session.session_id,
            )
            live = LiveSession(
                record,
                engine_session,
                token,
                time.monotonic(),
                credits_per_minute(pending.mode, pending.is_sandbox),
                persisted_mono=time.monotonic(),
                minute_seconds=self.config.liveavatar_minute_seconds,
                ws_token=secrets.token_urlsafe(32) if pending.mode is SessionMode.LITE else None,
            )
            self.live[session_id] = live
            self.store.put_session(record)
            live.waiter = asyncio.get_running_loop().create_task(self._await_end(live), name=f"la-{session_id}")
            self._ensure_ticker()
            log.info("LiveAvatar session %s started (engine session %s)", session_id, engine_session.session_id)
            return live, offer

    async def stop(self, session_id: str, reason: SessionEndReason) -> None:
        """Stop a running session; a pending one is discarded. Unknown → 404; already ended → 404 saying so."""
        live = self.live.get(session_id)
        if live is not None and not live.ended:
            await self.manager.close(live.engine, reason.value)
            self._finish(live, reason)
            return
        pending = self.pending.pop(session_id, None)
        if pending is not None:
            self._tokens.pop(pending.token, None)
            return
        self.require_known(session_id)

    def require_known(self, session_id: str) -> SessionRecord:
        """The session's stored row; 404 when unknown, 404 "has already ended" when it is historic."""
        record = self.store.get_session(session_id)
        if record is None:
            raise LaError(404, f"Session {session_id} not found.")
        if record.end_at is not None:
            reason = record.end_reason.value if record.end_reason else SessionEndReason.UNKNOWN.value
            raise LaError(404, f"Session {session_id} has already ended ({reason}).")
        raise LaError(404, f"Session {session_id} is not running on this engine.")

    def keep_alive(self, session_id: str) -> None:
        live = self.live.get(session_id)
        if live is None or live.ended:
            if session_id in self.pending:
                return  # not started yet: nothing idles
            self.require_known(session_id)
            return
        live.engine.touch()

    # --- reads --------------------------------------------------------------------------------
    def entry(self, session_id: str) -> SessionRecord | None:
        live = self.live.get(session_id)
        if live is not None and not live.ended:
            return live.snapshot()
        return self.store.get_session(session_id)

    def active(self, avatar_id: str | None = None, context_id: str | None = None) -> list[SessionRecord]:
        rows = [s.snapshot() for s in self.live.values() if not s.ended]
        rows = [
            r
            for r in rows
            if (not avatar_id or r.avatar_id == avatar_id) and (not context_id or r.context_id == context_id)
        ]
        return sorted(rows, key=lambda r: (-r.created_at, r.id))

    def transcript(self, session_id: str) -> tuple[bool, list[dict[str, Any]]]:
        live = self.live.get(session_id)
        if live is not None and not live.ended:
            live.harvest()
            return True, list(live.transcript)
        record = self.store.get_session(session_id)
        if record is None:
            raise LaError(404, f"Session {session_id} not found.")
        return False, list(record.transcript)

    # --- lifecycle ----------------------------------------------------------------------------
    async def _await_end(self, live: LiveSession) -> None:
        await live.engine.closed.wait()
        self._finish(live, end_reason_of(live.engine))

    def _finish(self, live: LiveSession, reason: SessionEndReason) -> None:
        if live.ended:
            return
        live.harvest()
        final = live.snapshot()
        live.ended = True
        record = replace(final, end_at=final.updated_at, end_reason=reason)
        self.store.put_session(record)
        self._ended_credits += record.credits_consumed
        self.live.pop(live.record.id, None)
        self._tokens.pop(live.token, None)
        log.info("LiveAvatar session %s ended (%s, %.3f credits)", record.id, reason.value, record.credits_consumed)

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="liveavatar-billing")

    async def _tick(self) -> None:
        """Every second: end sessions when credits run out; every few seconds: save running rows."""
        while self.live:
            await asyncio.sleep(TICK_SECONDS)
            out_of_credits = self.balance() <= 0
            for live in list(self.live.values()):
                if live.ended:
                    continue
                if out_of_credits and live.rate:
                    await self.manager.close(live.engine, SessionEndReason.NO_CREDITS.value)
                    self._finish(live, SessionEndReason.NO_CREDITS)
                    continue
                if time.monotonic() - live.persisted_mono >= PERSIST_EVERY:
                    live.harvest()
                    live.persisted_mono = time.monotonic()
                    self.store.put_session(live.snapshot())

    async def shutdown(self) -> None:
        """Before the engine's sessions close: end every running LiveAvatar session as a server error."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for live in list(self.live.values()):
            await self.manager.close(live.engine, SessionEndReason.SERVER_ERROR.value)
            self._finish(live, SessionEndReason.SERVER_ERROR)
            if live.waiter is not None:
                live.waiter.cancel()
        self.store.close()
