"""The usage log's database: a SQLite file (the embedded default) or a shared PostgreSQL database.

SQLAlchemy Core gives both one connection API and binds ``:name`` parameters for either driver; the few
SQL differences (scalar max, ceil, date parts) are the small :class:`Sql` helpers below, so the queries are
written once. Nothing here may let a database password out: :func:`safe_url` and :func:`scrub` hide it from
every text that reaches a page, a log line or an exception.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

POSTGRES = "postgresql"
SQLITE = "sqlite"
WRITE_LOCK_KEY = 0x7573616765  # "usage": the advisory lock that serialises writers on PostgreSQL


def is_url(target: str | Path) -> bool:
    """``postgresql://…`` or ``sqlite:///…`` (a plain path is a SQLite file, as it always was)."""
    return isinstance(target, str) and re.match(r"^(postgres(ql)?|sqlite)(\+\w+)?://", target) is not None


def parse_url(target: str) -> URL:
    """The SQLAlchemy URL of a ``DATABASE_URL``, with psycopg 3 as PostgreSQL's driver."""
    url = make_url(target)
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == SQLITE:
        return url
    raise ValueError(f"DATABASE_URL must start with postgresql:// or sqlite:///, not {url.drivername}://.")


def safe_url(url: URL) -> str:
    """The URL as it may be shown: password replaced by ``***``."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def scrub(text: str, url: URL | None) -> str:
    """``text`` without the URL's password (plain or percent-encoded) or any ``user:pass@`` in it."""
    if url is not None and url.password:
        password = str(url.password)
        for form in {password, quote(password, safe=""), unquote(password)}:
            if form:
                text = text.replace(form, "***")
    text = re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", text)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.I)


@dataclass(frozen=True)
class Sql:
    """Dialect fragments the shared queries need (arguments are trusted SQL written by us)."""

    dialect: str

    @property
    def postgres(self) -> bool:
        return self.dialect == POSTGRES

    def greatest(self, *exprs: str) -> str:
        return f"{'GREATEST' if self.postgres else 'MAX'}({', '.join(exprs)})"

    def ceil(self, expr: str) -> str:
        if self.postgres:
            return f"CEIL({expr})"
        # SQLite may lack CEIL (math functions are a compile option); CAST truncates toward zero.
        return f"(CAST({expr} AS INTEGER) + ({expr} > CAST({expr} AS INTEGER)))"

    def floor(self, expr: str) -> str:
        if self.postgres:
            return f"CAST(FLOOR({expr}) AS BIGINT)"
        return f"(CAST({expr} AS INTEGER) - ({expr} < CAST({expr} AS INTEGER)))"

    def indexed_by(self, index: str) -> str:
        """SQLite's planner may prefer the ``created_at`` range to the index a query was written for (and then
        sort a third of the log); PostgreSQL's costs pick the right one unaided."""
        return "" if self.postgres else f" INDEXED BY {index}"

    def count_if(self, condition: str) -> str:
        return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"

    def day_number(self, unix_sql: str) -> str:
        """Days since 1970-01-01 of a (local) unix-seconds expression."""
        if self.postgres:
            return f"CAST(FLOOR(({unix_sql}) / 86400.0) AS BIGINT)"
        return f"CAST(julianday({unix_sql}, 'unixepoch') - 2440587.5 AS INTEGER)"

    def hour(self, unix_sql: str) -> str:
        if self.postgres:
            return f"CAST(FLOOR((({unix_sql}) - FLOOR(({unix_sql}) / 86400.0) * 86400.0) / 3600.0) AS INTEGER)"
        return f"CAST(strftime('%H', {unix_sql}, 'unixepoch') AS INTEGER)"

    def iso_local(self, column: str, off: str) -> str:
        """ISO 8601 local time with offset (``2024-03-02T18:30:00-05:00``); ``off`` is the offset in seconds."""
        if self.postgres:
            stamp = f"to_char(to_timestamp({column} + {off}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24\\:MI\\:SS')"
            hours = f"lpad(CAST(abs({off}) / 3600 AS TEXT), 2, '0')"
            minutes = f"lpad(CAST((abs({off}) % 3600) / 60 AS TEXT), 2, '0')"
            return (
                f"{stamp} || CASE WHEN {column} IS NULL THEN NULL WHEN {off} < 0 THEN '-' ELSE '+' END || "
                f"{hours} || '\\:' || {minutes}"
            )
        return (
            f"strftime('%Y-%m-%dT%H:%M:%S', {column} + {off}, 'unixepoch') || "
            f"CASE WHEN {column} IS NULL THEN NULL WHEN {off} < 0 THEN '-' ELSE '+' END || "
            f"printf('%02d:%02d', abs({off}) / 3600, (abs({off}) % 3600) / 60)"
        )


_QMARK = re.compile(r"\?")


class Connection:
    """One connection inside one transaction. ``execute`` takes ``:name`` parameters with a mapping, or
    ``?`` placeholders with a sequence (the form the log's callers have always used)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.sa = conn
        self.dialect = conn.dialect.name
        self.sql = Sql(self.dialect)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        """A ``CursorResult`` (``fetchone``, ``fetchall``, ``scalar_one``, ``rowcount``, iteration); typed ``Any``
        because its rows have as many columns as the SQL asks for, which no annotation can say."""
        statement, bound = _bind(sql, params)
        return self.sa.execute(sa.text(statement), bound)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any] | Mapping[str, Any]]) -> Any:
        if not rows:
            return self.sa.execute(sa.text("SELECT 1"))
        bound = [_bind(sql, row)[1] for row in rows]
        return self.sa.execute(sa.text(_bind(sql, rows[0])[0]), bound)


def _bind(sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    if params is None:
        return sql, {}
    if isinstance(params, Mapping):
        return sql, dict(params)
    values = list(params)
    counter = iter(range(len(values)))
    statement = _QMARK.sub(lambda _m: f":p{next(counter)}", sql)
    return statement, {f"p{i}": v for i, v in enumerate(values)}


def create(url: URL, *, busy_timeout_s: float) -> sa.Engine:
    """An engine with a thread-safe pool. SQLite connections run in autocommit mode so the log issues its
    own ``BEGIN`` / ``BEGIN IMMEDIATE`` (as it always did) and sets WAL's pragmas on every connection."""
    if url.get_backend_name() == SQLITE:
        engine = sa.create_engine(
            url,
            connect_args={"timeout": busy_timeout_s, "isolation_level": None, "check_same_thread": False},
            poolclass=sa.QueuePool,
            pool_size=8,
            max_overflow=-1,
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()

        return engine
    return sa.create_engine(
        url,
        pool_size=5,
        max_overflow=20,
        pool_pre_ping=True,  # a restarted server leaves dead connections in the pool
        hide_parameters=True,
        connect_args={"connect_timeout": max(1, int(busy_timeout_s))},
    )


def enable_wal(engine: sa.Engine, *, busy_timeout_s: float) -> None:
    """Switch a SQLite file to WAL. Several logs opening a fresh file at once race for this: the switch needs the
    file to itself, and SQLite reports "database is locked" at once instead of waiting the busy timeout (1 in ~30
    openings of four logs at once here). So wait here, as long as the busy timeout."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            return
        except sa.exc.OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


@contextmanager
def transaction(engine: sa.Engine, *, write: bool) -> Iterator[Connection]:
    """A read snapshot (several queries that agree) or a write transaction, one writer at a time on both
    backends: ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL (so read-then-write
    steps such as reconciliation never interleave between dashboards)."""
    with engine.connect() as conn:
        if conn.dialect.name == SQLITE:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        elif write:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})
        else:
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        try:
            yield Connection(conn)
        except BaseException:
            conn.rollback()
            raise
        if write:
            conn.commit()
        else:
            conn.rollback()
