"""Schema of the usage log, as an ordered list of migrations tracked by ``PRAGMA user_version``.

Migration *n* (1-based) takes a file from version n-1 to n. Never edit a shipped migration; append one.
Timestamps are UTC unix seconds (REAL) so SQL can aggregate them without parsing.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions, events, settings and the indexes the usage queries need.
    """
    CREATE TABLE IF NOT EXISTS sessions (
        session_id           TEXT PRIMARY KEY,
        provider             TEXT NOT NULL,
        avatar_id            TEXT,
        voice_id             TEXT,
        quality              TEXT,
        video_encoding       TEXT,
        started_by_dashboard INTEGER NOT NULL DEFAULT 1,
        created_at           REAL NOT NULL,
        connected_at         REAL,
        ended_at             REAL,
        end_reason           TEXT,
        last_seen            REAL,
        speaking_s           REAL
    );
    CREATE INDEX IF NOT EXISTS sessions_created_at ON sessions (created_at);
    CREATE INDEX IF NOT EXISTS sessions_provider_created ON sessions (provider, created_at);
    CREATE INDEX IF NOT EXISTS sessions_avatar_created ON sessions (avatar_id, created_at);
    CREATE INDEX IF NOT EXISTS sessions_open ON sessions (provider) WHERE ended_at IS NULL;

    CREATE TABLE IF NOT EXISTS events (
        id         INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        at         REAL NOT NULL,
        kind       TEXT NOT NULL,
        details    TEXT
    );
    CREATE INDEX IF NOT EXISTS events_session_at ON events (session_id, at);

    CREATE TABLE IF NOT EXISTS settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: which provider account or engine each session lives on (see StreamingClient.endpoint); NULL for
    # sessions logged before, which reconcile against whichever endpoint is current, as they always did.
    """
    ALTER TABLE sessions ADD COLUMN endpoint TEXT;
    """,
    # 3: what the provider itself reports about a session (LiveAvatar's history): mode (FULL/LITE), source
    # (API/APP/EMBED/DEMO), sandbox, the credits it billed, its end time, duration and end reason. NULL where
    # the provider says nothing; billed_credits wins over the estimate wherever it is set.
    """
    ALTER TABLE sessions ADD COLUMN mode TEXT;
    ALTER TABLE sessions ADD COLUMN source TEXT;
    ALTER TABLE sessions ADD COLUMN is_sandbox INTEGER;
    ALTER TABLE sessions ADD COLUMN billed_credits REAL;
    ALTER TABLE sessions ADD COLUMN provider_ended_at REAL;
    ALTER TABLE sessions ADD COLUMN provider_duration_s REAL;
    ALTER TABLE sessions ADD COLUMN provider_end_reason TEXT;
    """,
    # 4: the audit trail: who (a signed-in email, or "local") did which operator action, on what, and when.
    """
    CREATE TABLE IF NOT EXISTS audit (
        id     INTEGER PRIMARY KEY,
        at     REAL NOT NULL,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT
    );
    CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
    CREATE INDEX IF NOT EXISTS audit_target ON audit (target);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
