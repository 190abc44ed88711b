"""Summary rows of the usage log, kept up to date on every write, so the Usage page reads thousands of rows
instead of every session.

``session_rollup`` holds, for each *grain* (which of avatar and quality it keeps apart: :data:`GRAINS`), one row
per UTC hour of creation and per (provider, avatar, quality, mode, sandbox, billed) of the *closed* sessions:
how many, their seconds, the credits the provider billed, the billable seconds of every (basis, minimum) a
preset uses, and a histogram over :data:`HISTOGRAM_EDGES`. Open sessions
stay out until they end (their duration grows with "now"); the queries add them from the raw table (a
partial index finds them). A session's contribution depends only on its own row, so every write that changes
a closed session subtracts its old contribution and adds the new one in the same transaction
(:func:`changing`); :func:`rebuild` recomputes the whole table (the migration's backfill, bulk loads).

A query reads the coarsest grain that still has the avatars or qualities it filters or groups by: the whole
page without such a filter reads a few thousand rows, not one per avatar and quality and hour.

NULL avatars and qualities are stored as ``''`` with a ``*_known`` flag beside them: a unique key must not
hold NULLs (they never conflict), and ``''`` alone would merge an unknown avatar with one named ``''``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from lib.usage.credits import CreditModel
from lib.usage.db import Connection, Sql

TABLE = "session_rollup"
BUCKET_S = 3600
"""Hourly buckets serve any zone whose offsets and DST changes fall on whole hours; others read raw rows."""
HISTOGRAM_EDGES: tuple[float, ...] = (30, 60, 120, 300, 600, 1200, 1800, 3600)
"""Inner edges of the stored duration histogram (the Usage page's bins): ``h0`` counts d < 30, ``h8`` d ≥ 3600."""
HISTOGRAM_COLUMNS = tuple(f"h{i}" for i in range(len(HISTOGRAM_EDGES) + 1))
BILLABLE: dict[tuple[str, float], str] = {
    ("session", 0.0): "bill_s0",
    ("session", 30.0): "bill_s30",
    ("session", 60.0): "bill_s60",
    ("speaking", 0.0): "bill_sp0",
}
"""Billable seconds kept for each (basis, minimum) a preset uses; a custom minimum reads raw rows."""

GRAINS = {(False, False): 0, (True, False): 1, (False, True): 2, (True, True): 3}
"""(keeps avatars, keeps qualities) → grain; a grain that does not keep one stores it as ``''``, not known."""
_AVATAR_GRAINS, _QUALITY_GRAINS = "(1, 3)", "(2, 3)"

KEY = (
    "grain",
    "bucket",
    "provider",
    "avatar_id",
    "avatar_known",
    "quality",
    "quality_known",
    "mode",
    "sandbox",
    "billed",
)
VALUES = ("sessions", "duration_s", "billed_credits", *BILLABLE.values(), *HISTOGRAM_COLUMNS)

DDL = f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        grain          INTEGER NOT NULL,
        bucket         BIGINT NOT NULL,
        provider       TEXT NOT NULL,
        avatar_id      TEXT NOT NULL,
        avatar_known   INTEGER NOT NULL,
        quality        TEXT NOT NULL,
        quality_known  INTEGER NOT NULL,
        mode           TEXT NOT NULL,
        sandbox        INTEGER NOT NULL,
        billed         INTEGER NOT NULL,
        sessions       INTEGER NOT NULL,
        duration_s     REAL NOT NULL,
        billed_credits REAL NOT NULL,
        {", ".join(f"{c} REAL NOT NULL" for c in BILLABLE.values())},
        {", ".join(f"{c} INTEGER NOT NULL" for c in HISTOGRAM_COLUMNS)},
        PRIMARY KEY ({", ".join(KEY)})
    );
    CREATE INDEX IF NOT EXISTS sessions_open_created ON sessions (created_at) WHERE ended_at IS NULL;
    CREATE INDEX IF NOT EXISTS sessions_closed_duration
        ON sessions ((ended_at - created_at), created_at, provider, avatar_id, quality) WHERE ended_at IS NOT NULL;
"""
"""Migration 5's statements; :func:`rebuild` then backfills the table."""


def bucket_sql(sql: Sql, column: str = "created_at") -> str:
    return f"({sql.floor(f'{column} / {float(BUCKET_S)!r}')} * {BUCKET_S})"


def histogram_bin_sql(duration_sql: str) -> str:
    whens = " ".join(f"WHEN {duration_sql} < {float(edge)!r} THEN {i}" for i, edge in enumerate(HISTOGRAM_EDGES))
    return f"(CASE {whens} ELSE {len(HISTOGRAM_EDGES)} END)"


def contribution_sql(sql: Sql, sign: str = "1") -> list[str]:
    """One session's values (``VALUES`` order) over a row source with ``d`` (its duration) and the session
    columns, multiplied by ``sign``."""
    bills = [
        CreditModel("", "", "", 60.0, minimum_s=minimum, basis=basis).seconds_sql("d", "speaking_s", sql.dialect)  # type: ignore[arg-type]
        for basis, minimum in BILLABLE
    ]
    b = histogram_bin_sql("d")
    return [
        sign,
        f"{sign} * d",
        f"{sign} * COALESCE(billed_credits, 0.0)",
        *(f"{sign} * {bill}" for bill in bills),
        *(f"{sign} * (CASE WHEN {b} = {i} THEN 1 ELSE 0 END)" for i in range(len(HISTOGRAM_COLUMNS))),
    ]


def key_sql(sql: Sql, grain: str = "3") -> list[str]:
    """The rollup key (``KEY`` order) of one session row at ``grain`` (a column or a number)."""
    return [
        grain,
        bucket_sql(sql),
        "provider",
        f"(CASE WHEN {grain} IN {_AVATAR_GRAINS} THEN COALESCE(avatar_id, '') ELSE '' END)",
        f"(CASE WHEN {grain} IN {_AVATAR_GRAINS} AND avatar_id IS NOT NULL THEN 1 ELSE 0 END)",
        f"(CASE WHEN {grain} IN {_QUALITY_GRAINS} THEN COALESCE(quality, '') ELSE '' END)",
        f"(CASE WHEN {grain} IN {_QUALITY_GRAINS} AND quality IS NOT NULL THEN 1 ELSE 0 END)",
        "UPPER(COALESCE(mode, ''))",
        "(CASE WHEN COALESCE(is_sandbox, 0) <> 0 THEN 1 ELSE 0 END)",
        "(CASE WHEN billed_credits IS NULL THEN 0 ELSE 1 END)",
    ]


def closed_duration_sql(sql: Sql) -> str:
    return sql.greatest("ended_at - created_at", "0.0")


def _grains_sql(grains: Iterable[int]) -> str:
    return " UNION ALL ".join(f"SELECT {n} AS n" for n in sorted(grains))


def _fold(
    conn: Connection, where: str, params: dict[str, object], sign: int, grains: Iterable[int] = GRAINS.values()
) -> None:
    """Add (``sign`` 1) or subtract (-1) the contributions of the closed sessions matching ``where``."""
    sql = conn.sql
    keys = ", ".join(f"{expr} AS {name}" for expr, name in zip(key_sql(sql, "g.n"), KEY, strict=True))
    values = ", ".join(
        f"SUM({expr}) AS {name}" for expr, name in zip(contribution_sql(sql, str(sign)), VALUES, strict=True)
    )
    updates = ", ".join(f"{name} = {TABLE}.{name} + excluded.{name}" for name in VALUES)
    conn.execute(
        f"INSERT INTO {TABLE} ({', '.join(KEY)}, {', '.join(VALUES)}) "
        f"SELECT {keys}, {values} FROM (SELECT *, {closed_duration_sql(sql)} AS d FROM sessions "
        f"WHERE ended_at IS NOT NULL AND {where}) c "
        f"CROSS JOIN ({_grains_sql(grains)}) g WHERE 1 = 1 GROUP BY {', '.join(str(i + 1) for i in range(len(KEY)))} "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates}",
        params,
    )
    if sign < 0:
        conn.execute(
            f"DELETE FROM {TABLE} WHERE grain IN {tuple(sorted(GRAINS.values()))} AND bucket IN "
            f"(SELECT {bucket_sql(sql)} FROM sessions WHERE {where}) AND sessions = 0",
            params,
        )


def _chunks(ids: Sequence[str], size: int = 500) -> Iterator[tuple[str, dict[str, object]]]:
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        params: dict[str, object] = {f"r{i}": sid for i, sid in enumerate(chunk)}
        yield f"session_id IN ({', '.join(':' + name for name in params)})", params


def add(conn: Connection, session_ids: Iterable[str]) -> None:
    """Count these sessions in (those that are closed): after a close or an insert of a closed session."""
    for where, params in _chunks(sorted(set(session_ids))):
        _fold(conn, where, params, 1)


def remove(conn: Connection, session_ids: Iterable[str]) -> None:
    """Count these sessions out: before an update that may change a closed session or reopen it."""
    for where, params in _chunks(sorted(set(session_ids))):
        _fold(conn, where, params, -1)


@contextmanager
def changing(conn: Connection, session_ids: Iterable[str]) -> Iterator[None]:
    """Around writes to these sessions' rows: their old contributions out before, the new ones in after."""
    ids = sorted(set(session_ids))
    remove(conn, ids)
    yield
    add(conn, ids)


def rebuild(conn: Connection) -> None:
    """Recompute every summary row from the sessions (the migration's backfill; after bulk loads)."""
    conn.execute(f"DELETE FROM {TABLE}")
    finest = GRAINS[(True, True)]
    _fold(conn, "1 = 1", {}, 1, [finest])
    # The coarser grains are sums of the finest one: far fewer rows to read than the sessions.
    coarser = [n for n in GRAINS.values() if n != finest]
    keys = [
        "g.n",
        "bucket",
        "provider",
        f"CASE WHEN g.n IN {_AVATAR_GRAINS} THEN avatar_id ELSE '' END",
        f"CASE WHEN g.n IN {_AVATAR_GRAINS} THEN avatar_known ELSE 0 END",
        f"CASE WHEN g.n IN {_QUALITY_GRAINS} THEN quality ELSE '' END",
        f"CASE WHEN g.n IN {_QUALITY_GRAINS} THEN quality_known ELSE 0 END",
        "mode",
        "sandbox",
        "billed",
    ]
    conn.execute(
        f"INSERT INTO {TABLE} ({', '.join(KEY)}, {', '.join(VALUES)}) "
        f"SELECT {', '.join(keys)}, {', '.join(f'SUM({v})' for v in VALUES)} FROM {TABLE} "
        f"CROSS JOIN ({_grains_sql(coarser)}) g WHERE grain = {finest} "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(KEY)))}"
    )


def grain(avatars: bool, qualities: bool) -> int:
    """The coarsest grain that keeps avatars and/or qualities apart."""
    return GRAINS[(avatars, qualities)]


def supports(model: CreditModel) -> bool:
    """Can credits under ``model`` be priced from the summary rows (a stored basis and minimum)?"""
    return (model.basis, float(model.minimum_s)) in BILLABLE


def billable_column(model: CreditModel) -> str:
    return BILLABLE[(model.basis, float(model.minimum_s))]


def histogram_groups(inner_edges: Sequence[float]) -> list[list[int]] | None:
    """Which stored histogram columns make up each requested bin, or None when an edge is not a stored one."""
    stored = [float(e) for e in HISTOGRAM_EDGES]
    if any(float(e) not in stored for e in inner_edges if not math.isinf(e)):
        return None
    cuts = [stored.index(float(e)) + 1 for e in inner_edges]
    bounds = [0, *cuts, len(HISTOGRAM_COLUMNS)]
    return [list(range(lo, hi)) for lo, hi in itertools.pairwise(bounds)]
