"""The engine's LiveAvatar twin for the ops and cost tests: start one, start sessions on it, seed its history.

A twin is a real engine (``python -m lib.engine``) whose history DB is seeded *before* it starts, so its
``type=historic`` list holds sessions with billed credits and transcripts the tests chose.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from lib.engine.launcher import EngineProcess, start_engine
from lib.engine.liveavatar_state import LiveAvatarStore, SessionRecord
from lib.liveavatar import (
    FullSessionConfig,
    LiteSessionConfig,
    LiveAvatarClient,
    LiveAvatarError,
    SessionEndReason,
    SessionListType,
    SessionMode,
    SessionSource,
)

DAY = datetime(2026, 11, 2, tzinfo=UTC)
"""The UTC day seeded history sessions started on."""


def start_twin(history: Path, *args: str) -> EngineProcess:
    """An engine with its own history DB: 1,000 credits, any number of sessions (its capacity budget: 6)."""
    base = ["--history-db", str(history), "--no-voices", "--session-budget", "6", "--liveavatar-credits", "1000"]
    return start_engine(extra_args=[*base, *args])


def ended(
    session_id: str,
    minute: int,
    seconds: float,
    billed: float,
    *,
    mode: SessionMode = SessionMode.FULL,
    source: SessionSource = SessionSource.API,
    sandbox: bool = False,
    reason: SessionEndReason = SessionEndReason.USER_CLOSED,
    words: Iterable[tuple[str, str]] = (),
) -> SessionRecord:
    """A historic session that started ``minute`` minutes into ``DAY``, with its bill and transcript."""
    created = DAY.timestamp() + minute * 60
    lines = tuple(
        {"role": role, "transcript": text, "absolute_timestamp": int(created) + 5 * n, "relative_timestamp": 5 * n}
        for n, (role, text) in enumerate(words)
    )
    return SessionRecord(
        id=session_id,
        created_at=created,
        updated_at=created + seconds,
        duration=seconds,
        source=source,
        mode=mode,
        is_sandbox=sandbox,
        credits_consumed=billed,
        end_at=created + seconds,
        end_reason=reason,
        transcript=lines,
    )


def seed_history(history: Path, records: Iterable[SessionRecord]) -> None:
    store = LiveAvatarStore(history)
    try:
        for record in records:
            store.put_session(record)
    finally:
        store.close()


def la_client(engine: EngineProcess, key: str | None = None) -> LiveAvatarClient:
    return LiveAvatarClient(engine.url, key if key is not None else engine.api_key, backoff=0)


def start_session(client: LiveAvatarClient, mode: SessionMode = SessionMode.FULL) -> str:
    """A running session at the lowest quality (one capacity unit); returns its id."""
    avatar = client.avatars()[0].id
    config: FullSessionConfig | LiteSessionConfig
    if mode is SessionMode.LITE:
        config = LiteSessionConfig(avatar_id=avatar, video_quality="low")  # type: ignore[arg-type]
    else:
        config = FullSessionConfig(avatar_id=avatar, video_quality="low")  # type: ignore[arg-type]
    return client.start_session(client.create_session_token(config)).session_id


def stop_all(engine: EngineProcess) -> None:
    """Leave the twin as we found it: later tests count sessions."""
    with la_client(engine) as client:
        for entry in client.list_sessions(SessionListType.ACTIVE):
            with contextlib.suppress(LiveAvatarError):
                client.stop_session(entry.id)
