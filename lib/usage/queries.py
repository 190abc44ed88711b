"""Queries behind the Usage page. Every aggregate is computed in SQL; only result rows reach pandas.

Conventions:
* A session belongs to the local day (in ``UsageFilter.tz``) on which it was created, even when it
  runs past midnight.
* Duration = (ended_at, else last_seen, else now) − created_at: billable from ``streaming.new`` until
  closed (DESIGN.md, lifecycle).
* Local-engine sessions cost no real credits; ``include_local_estimate=True`` prices them as if they
  had run on a billed provider with the chosen preset.
* Credits are what the provider billed (``billed_credits``, from an imported LiveAvatar history) wherever it is
  known, else the estimate of the chosen preset: billed figures win in totals, charts and the budget.

Aggregates read the hourly summary rows (:mod:`lib.usage.rollups`) plus the open sessions from the raw table
whenever the filter lines up with them: date bounds and every UTC offset of ``tz`` on whole hours, and a preset
whose (basis, minimum) is stored. Otherwise (a half-hour zone such as Asia/Kolkata, a custom minimum) they
read the raw rows, with the same results. p95 reads the longest sessions off an index, from the top. The
sessions table is always raw (it is paged).
"""

from __future__ import annotations

import calendar
import csv
import io
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from lib.capabilities import FREE_PROVIDERS
from lib.usage import rollups
from lib.usage.credits import Pricing
from lib.usage.db import Connection, Sql
from lib.usage.store import UsageLog

LOCAL_PROVIDERS: tuple[str, ...] = FREE_PROVIDERS
"""Providers whose sessions cost no real credits (declared by their capabilities)."""
ESTIMATE_TOLERANCE = 0.10
"""An estimate further than this from the billed credits is flagged on the Usage page."""

GroupBy = Literal["avatar", "quality", "provider"]
_GROUP_COLUMNS: dict[str, str] = {"avatar": "avatar_id", "quality": "quality", "provider": "provider"}
UNKNOWN = "(unknown)"

DEFAULT_BINS: tuple[float, ...] = (0, 30, 60, 120, 300, 600, 1200, 1800, 3600, math.inf)


@dataclass(frozen=True)
class UsageFilter:
    """What the Usage page's filter bar selected. Dates are inclusive local dates in ``tz``;
    ``None`` or an empty tuple means no restriction on that field."""

    date_from: date | None = None
    date_to: date | None = None
    providers: tuple[str, ...] | None = None
    avatars: tuple[str, ...] | None = None
    qualities: tuple[str, ...] | None = None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        # Streamlit's multiselect hands over lists; tuples keep the filter hashable for caching.
        for name in ("providers", "avatars", "qualities"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        ZoneInfo(self.tz)  # an unknown zone fails here, not deep inside a query

    @classmethod
    def month(cls, year: int, month: int, **kwargs: Any) -> UsageFilter:
        last = calendar.monthrange(year, month)[1]
        return cls(date(year, month, 1), date(year, month, last), **kwargs)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def bounds(self) -> tuple[float | None, float | None]:
        """UTC unix seconds ``[start, end)`` covering the local dates."""
        start = _local_midnight(self.date_from, self.zone) if self.date_from else None
        end = _local_midnight(self.date_to + timedelta(days=1), self.zone) if self.date_to else None
        return start, end

    def previous(self) -> UsageFilter | None:
        """The period of equal length just before this one (None when the range is open-ended)."""
        if self.date_from is None or self.date_to is None:
            return None
        length = (self.date_to - self.date_from).days + 1
        return replace(
            self,
            date_from=self.date_from - timedelta(days=length),
            date_to=self.date_from - timedelta(days=1),
        )


def _local_midnight(day: date, zone: ZoneInfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


@dataclass(frozen=True)
class Kpis:
    sessions: int
    open_sessions: int
    total_minutes: float
    credits: float
    cost: float
    avg_duration_s: float | None
    p95_duration_s: float | None
    billed_credits: float = 0.0
    """Sum of the credits the provider reported billed (sessions with an imported history)."""
    billed_sessions: int = 0
    estimated_credits: float = 0.0
    """The credit model's estimate for every session, billed ones included (to compare with the bill)."""


@dataclass(frozen=True)
class KpiReport:
    current: Kpis
    previous: Kpis | None

    def change(self, name: str) -> float | None:
        """Relative change of one figure against the previous period (0.25 = +25 %)."""
        if self.previous is None:
            return None
        now, before = getattr(self.current, name), getattr(self.previous, name)
        if now is None or not before:
            return None
        return (now - before) / before


# -- SQL building ---------------------------------------------------------------------------------


def _where(flt: UsageFilter, params: dict[str, Any]) -> str:
    clauses: list[str] = []
    start, end = flt.bounds()
    if start is not None:
        clauses.append("created_at >= :start")
        params["start"] = start
    if end is not None:
        clauses.append("created_at < :end")
        params["end"] = end
    restrictions = (("provider", flt.providers), ("avatar_id", flt.avatars), ("quality", flt.qualities))
    for column, values in restrictions:
        if values:
            names = []
            for i, value in enumerate(values):
                names.append(f":{column}_{i}")
                params[f"{column}_{i}"] = value
            clauses.append(f"{column} IN ({', '.join(names)})")
    return " AND ".join(clauses) if clauses else "1 = 1"


def _credits_sql(pricing: Pricing, include_local_estimate: bool, dialect: str) -> str:
    return _priced(pricing.model.sql_expr("d", "sp", "mode", "is_sandbox", dialect), include_local_estimate)


def _priced(expr: str, include_local_estimate: bool) -> str:
    if include_local_estimate:
        return expr
    local = ", ".join(f"'{p}'" for p in LOCAL_PROVIDERS)
    return f"(CASE WHEN provider IN ({local}) THEN 0.0 ELSE {expr} END)"


def _base(
    sql: Sql,
    flt: UsageFilter,
    params: dict[str, Any],
    now: float | None,
    pricing: Pricing | None = None,
    include_local_estimate: bool = False,
) -> str:
    """``WITH s AS (...)``: the filtered sessions with duration ``d``, the estimate ``est_credits`` and
    ``credits`` (billed where known, else the estimate) per session."""
    params["now"] = float(time.time() if now is None else now)
    estimate = _credits_sql(pricing, include_local_estimate, sql.dialect) if pricing else "0.0"
    duration = sql.greatest("COALESCE(ended_at, last_seen, :now) - created_at", "0.0")
    return (
        f"WITH f AS (SELECT *, {duration} AS d, "
        f"speaking_s AS sp FROM sessions WHERE {_where(flt, params)}), "
        f"est AS (SELECT *, {estimate} AS est_credits FROM f), "
        "s AS (SELECT *, COALESCE(billed_credits, est_credits) AS credits FROM est) "
    )


def _tz_offset_sql(zone: ZoneInfo, lo: float, hi: float, column: str = "created_at") -> str:
    """SQL for the zone's UTC offset (seconds) at ``column``, exact across DST changes in [lo, hi]."""
    pieces, current = _tz_pieces(zone, lo, hi)
    if not pieces:
        return str(current)
    whens = " ".join(f"WHEN {column} < {at} THEN {off}" for at, off in pieces)
    return f"(CASE {whens} ELSE {current} END)"


def _tz_pieces(zone: ZoneInfo, lo: float, hi: float) -> tuple[list[tuple[int, int]], int]:
    """The zone's offsets over [lo, hi]: ``(change_at, offset_before)`` per change, and the last offset."""

    def offset(t: float) -> int:
        utcoffset = datetime.fromtimestamp(t, zone).utcoffset()
        return int(utcoffset.total_seconds()) if utcoffset else 0

    step = 6 * 3600
    current = offset(lo)
    pieces: list[tuple[int, int]] = []
    t = lo
    while t < hi:
        nxt = min(t + step, hi)
        if offset(nxt) != current:
            left, right = int(t), math.ceil(nxt)
            while right - left > 1:
                mid = (left + right) // 2
                if offset(mid) == current:
                    left = mid
                else:
                    right = mid
            pieces.append((right, current))
            current = offset(right)
        t = nxt
    return pieces, current


_FIRST_LAST = "SELECT (SELECT MIN(created_at) FROM sessions), (SELECT MAX(created_at) FROM sessions)"
"""Two subqueries: each one is a single step down the ``created_at`` index, where ``MIN(…), MAX(…)`` side by side
scans the whole table on SQLite."""


def _span(conn: Any, flt: UsageFilter) -> tuple[float, float]:
    start, end = flt.bounds()
    if start is None or end is None:
        lo, hi = conn.execute(_FIRST_LAST).fetchone()
        start = start if start is not None else (lo if lo is not None else 0.0)
        end = end if end is not None else (hi + 1 if hi is not None else 0.0)
    return start, end


def _local_time_sql(conn: Any, flt: UsageFilter, column: str = "created_at") -> str:
    lo, hi = _span(conn, flt)
    off = _tz_offset_sql(flt.zone, lo, hi, column)
    return column if off == "0" else f"({column} + {off})"


# -- summary rows ---------------------------------------------------------------------------------


def _summarised(conn: Connection, flt: UsageFilter, pricing: Pricing | None = None) -> bool:
    """Do the hourly summary rows answer this filter exactly (see the module docstring)?"""
    if pricing is not None and not rollups.supports(pricing.model):
        return False
    if any(b is not None and b % rollups.BUCKET_S for b in flt.bounds()):
        return False
    pieces, last = _tz_pieces(flt.zone, *_span(conn, flt))
    return last % rollups.BUCKET_S == 0 and all(
        at % rollups.BUCKET_S == 0 and off % rollups.BUCKET_S == 0 for at, off in pieces
    )


def _summed(
    sql: Sql,
    flt: UsageFilter,
    params: dict[str, Any],
    now: float | None,
    groups: Sequence[str],
    sums: Sequence[str],
    *,
    grain: int,
    pricing: Pricing | None = None,
    include_local_estimate: bool = False,
) -> str:
    """``SELECT groups..., sums...`` over the summary rows of ``grain`` and the open sessions matching the filter,
    grouped by ``groups``. Both are expressions over the columns ``bucket, provider, avatar_id, quality, mode,
    sandbox, billed, sessions, open_sessions, duration_s, billed_credits, est_credits, credits, h0…``; each side
    is aggregated on its own first, so the summary rows stream through one tight pass."""
    params["now"] = float(time.time() if now is None else now)
    params["grain"] = grain
    raw_where = _where(flt, params)  # binds the parameters both sides share
    clauses = ["grain = :grain"]
    start, end = flt.bounds()
    if start is not None:
        clauses.append("bucket >= :start")
    if end is not None:
        clauses.append("bucket < :end")
    for column, values in (("provider", flt.providers), ("avatar_id", flt.avatars), ("quality", flt.qualities)):
        if values:
            known = {"avatar_id": "avatar_known = 1 AND ", "quality": "quality_known = 1 AND "}.get(column, "")
            names = ", ".join(f":{column}_{i}" for i in range(len(values)))
            clauses.append(f"{known}{column} IN ({names})")
    histogram = ", ".join(rollups.HISTOGRAM_COLUMNS)
    bill = rollups.billable_column(pricing.model) if pricing is not None else "0.0"
    closed = (
        "SELECT bucket, provider, CASE WHEN avatar_known = 1 THEN avatar_id END AS avatar_id, "
        "CASE WHEN quality_known = 1 THEN quality END AS quality, mode, sandbox, billed, sessions, "
        f"0 AS open_sessions, duration_s, billed_credits, {bill} AS bill, {histogram} "
        f"FROM {rollups.TABLE} WHERE {' AND '.join(clauses)}"
    )
    key = rollups.key_sql(sql)
    contribution = dict(zip(rollups.VALUES, rollups.contribution_sql(sql), strict=True))
    open_bill = contribution[bill] if pricing is not None else "0.0"
    open_histogram = ", ".join(f"{contribution[c]} AS {c}" for c in rollups.HISTOGRAM_COLUMNS)
    still_open = (
        f"SELECT {key[1]} AS bucket, provider, avatar_id, quality, {key[7]} AS mode, {key[8]} AS sandbox, "
        f"{key[9]} AS billed, 1 AS sessions, 1 AS open_sessions, d AS duration_s, "
        f"COALESCE(billed_credits, 0.0) AS billed_credits, {open_bill} AS bill, {open_histogram} "
        f"FROM (SELECT *, {sql.greatest('COALESCE(last_seen, :now) - created_at', '0.0')} AS d "
        f"FROM sessions{sql.indexed_by('sessions_open_created')} WHERE ended_at IS NULL AND {raw_where}) o"
    )
    estimate = "0.0"
    if pricing is not None:
        estimate = _priced(f"(bill * {pricing.model.rate_sql('mode', 'sandbox')})", include_local_estimate)
    labels = [f"c{i}" for i in range(len(groups))]
    sides = []
    for side in (closed, still_open):
        priced = (
            f"(SELECT *, CASE WHEN billed = 1 THEN billed_credits ELSE est_credits END AS credits "
            f"FROM (SELECT *, {estimate} AS est_credits FROM ({side}) a) b) x"
        )
        select = [f"{g} AS {n}" for g, n in zip(groups, labels, strict=True)]
        select += [f"SUM({e}) AS s{i}" for i, e in enumerate(sums)]
        group_by = f" GROUP BY {', '.join(str(i + 1) for i in range(len(groups)))}" if groups else ""
        sides.append(f"SELECT {', '.join(select)} FROM {priced}{group_by}")
    outer = [*labels, *(f"COALESCE(SUM(s{i}), 0)" for i in range(len(sums)))]
    tail = f" GROUP BY {', '.join(labels)} ORDER BY {', '.join(labels)}" if groups else ""
    return f"SELECT {', '.join(outer)} FROM ({sides[0]} UNION ALL {sides[1]}) u{tail}"


def _grain(flt: UsageFilter, by: str | None = None) -> int:
    return rollups.grain(bool(flt.avatars) or by == "avatar_id", bool(flt.qualities) or by == "quality")


def _bucket_day(conn: Connection, flt: UsageFilter) -> str:
    """Local day number of a summary row: whole-hour buckets and offsets keep it in integer arithmetic."""
    return f"({_local_time_sql(conn, flt, 'bucket')}) / 86400"


def _bucket_hour(conn: Connection, flt: UsageFilter) -> str:
    return f"(({_local_time_sql(conn, flt, 'bucket')}) % 86400) / 3600"


def _p95(conn: Connection, flt: UsageFilter, n: int, now: float) -> float | None:
    """Nearest rank: the ceil(0.95·n)-th shortest session is the m-th longest, m = n − ceil(0.95·n) + 1, so only
    the longest m closed sessions are read (an index in duration order, from the top) beside the open ones."""
    if not n:
        return None
    params: dict[str, Any] = {"now": now}
    where = _where(flt, params)
    params["m"] = n - math.ceil(0.95 * n) + 1
    params["skip"] = params["m"] - 1
    sql = conn.sql
    closed = (
        f"SELECT ended_at - created_at AS x FROM sessions{sql.indexed_by('sessions_closed_duration')} "
        f"WHERE ended_at IS NOT NULL AND {where} ORDER BY ended_at - created_at DESC LIMIT :m"
    )
    still_open = (
        f"SELECT COALESCE(last_seen, :now) - created_at AS x FROM sessions{sql.indexed_by('sessions_open_created')} "
        f"WHERE ended_at IS NULL AND {where}"
    )
    row = conn.execute(
        f"SELECT x FROM (SELECT x FROM ({closed}) c UNION ALL SELECT x FROM ({still_open}) o) u "
        "ORDER BY x DESC LIMIT 1 OFFSET :skip",
        params,
    ).fetchone()
    return None if row is None else max(0.0, float(row[0]))


# -- queries -------------------------------------------------------------------------------------


def _kpis(
    conn: Connection, flt: UsageFilter, pricing: Pricing, include_local_estimate: bool, now: float | None
) -> Kpis:
    params: dict[str, Any] = {}
    if _summarised(conn, flt, pricing):
        sums = (
            "sessions",
            "open_sessions",
            "duration_s",
            "credits",
            "billed_credits",
            "CASE WHEN billed = 1 THEN sessions ELSE 0 END",
            "est_credits",
        )
        query = _summed(
            conn.sql,
            flt,
            params,
            now,
            (),
            sums,
            grain=_grain(flt),
            pricing=pricing,
            include_local_estimate=include_local_estimate,
        )
        n, open_n, total_s, credits, billed, billed_n, estimated = conn.execute(query, params).fetchone()
        avg = float(total_s) / int(n) if n else None
    else:
        base = _base(conn.sql, flt, params, now, pricing, include_local_estimate)
        n, open_n, total_s, credits, avg, billed, billed_n, estimated = conn.execute(
            base + f"SELECT COUNT(*), COALESCE({conn.sql.count_if('ended_at IS NULL')}, 0), COALESCE(SUM(d), 0.0), "
            "COALESCE(SUM(credits), 0.0), AVG(d), COALESCE(SUM(billed_credits), 0.0), COUNT(billed_credits), "
            "COALESCE(SUM(est_credits), 0.0) FROM s",
            params,
        ).fetchone()
    p95 = _p95(conn, flt, int(n), params["now"])
    credits = float(credits)
    return Kpis(
        sessions=int(n),
        open_sessions=int(open_n),
        total_minutes=float(total_s) / 60.0,
        credits=credits,
        cost=pricing.cost(credits),
        avg_duration_s=None if avg is None else float(avg),
        p95_duration_s=None if p95 is None else float(p95),
        billed_credits=float(billed),
        billed_sessions=int(billed_n),
        estimated_credits=float(estimated),
    )


def kpis(
    log: UsageLog,
    flt: UsageFilter,
    pricing: Pricing,
    *,
    include_local_estimate: bool = False,
    now: float | None = None,
) -> KpiReport:
    """Headline figures for the filter and for the previous period of equal length."""
    with log.read() as conn:
        current = _kpis(conn, flt, pricing, include_local_estimate, now)
        prev_flt = flt.previous()
        previous = _kpis(conn, prev_flt, pricing, include_local_estimate, now) if prev_flt else None
    return KpiReport(current, previous)


def minutes_per_day(
    log: UsageLog,
    flt: UsageFilter,
    pricing: Pricing,
    by: GroupBy = "avatar",
    *,
    include_local_estimate: bool = False,
    now: float | None = None,
) -> pd.DataFrame:
    """Long format: ``day, <by>, sessions, minutes, credits, cost`` — one row per local day and group."""
    if by not in _GROUP_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(_GROUP_COLUMNS)}, got {by!r}.")
    column = _GROUP_COLUMNS[by]
    params: dict[str, Any] = {"unknown": UNKNOWN}
    with log.read() as conn:
        if _summarised(conn, flt, pricing):
            groups = (_bucket_day(conn, flt), f"COALESCE({column}, :unknown)")
            sql = _summed(
                conn.sql,
                flt,
                params,
                now,
                groups,
                ("sessions", "duration_s / 60.0", "credits"),
                grain=_grain(flt, column),
                pricing=pricing,
                include_local_estimate=include_local_estimate,
            )
        else:
            local = _local_time_sql(conn, flt)
            sql = _base(conn.sql, flt, params, now, pricing, include_local_estimate) + (
                f"SELECT {conn.sql.day_number(local)} AS day, COALESCE({column}, :unknown) AS {by}, "
                "COUNT(*) AS sessions, SUM(d) / 60.0 AS minutes, SUM(credits) AS credits "
                f"FROM s GROUP BY 1, 2 ORDER BY 1, 2"
            )
        rows = conn.execute(sql, params).fetchall()
    df = pd.DataFrame(
        [(int(d), g, int(n), float(m), float(c)) for d, g, n, m, c in rows],
        columns=["day", by, "sessions", "minutes", "credits"],
    )
    df["day"] = pd.to_datetime(df["day"].astype("int64"), unit="D")
    df["cost"] = df["credits"] * pricing.price_per_credit
    return df


def duration_distribution(
    log: UsageLog,
    flt: UsageFilter,
    bins: Sequence[float] = DEFAULT_BINS,
    *,
    now: float | None = None,
) -> pd.DataFrame:
    """Histogram of session durations: ``bin, lower_s, upper_s, sessions`` with every bin present.

    ``bins`` are increasing edges in seconds; buckets are ``[edge_i, edge_i+1)`` and the last edge
    is open-ended when it is not ``inf``."""
    edges = [float(b) for b in bins]
    if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError("bins must be at least two increasing edges in seconds.")
    if not math.isinf(edges[-1]):
        edges.append(math.inf)
    finite = edges[1:-1]
    case = " ".join(f"WHEN d < {edge!r} THEN {i}" for i, edge in enumerate(finite))
    bucket = f"CASE {case} ELSE {len(finite)} END" if finite else "0"
    params: dict[str, Any] = {}
    groups = rollups.histogram_groups(finite)
    with log.read() as conn:
        if groups is not None and _summarised(conn, flt):
            sums = [" + ".join(rollups.HISTOGRAM_COLUMNS[c] for c in group) for group in groups]
            query = _summed(conn.sql, flt, params, now, (), sums, grain=_grain(flt))
            found = conn.execute(query, params).fetchone()
            counts = {i: int(n) for i, n in enumerate(found)}
        else:
            sql = _base(conn.sql, flt, params, now) + f"SELECT {bucket} AS b, COUNT(*) AS n FROM s GROUP BY 1"
            counts = {int(b): int(n) for b, n in conn.execute(sql, params).fetchall()}
    rows = [
        {
            "bin": _bin_label(lower, upper),
            "lower_s": lower,
            "upper_s": upper,
            "sessions": int(counts.get(i, 0)),
        }
        for i, (lower, upper) in enumerate(itertools.pairwise(edges))
    ]
    return pd.DataFrame(rows, columns=["bin", "lower_s", "upper_s", "sessions"])


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:g} s"
    return f"{s / 60:g} min"


def _bin_label(lower: float, upper: float) -> str:
    if math.isinf(upper):
        return f"≥ {_fmt_seconds(lower)}"
    return f"{_fmt_seconds(lower)} – {_fmt_seconds(upper)}"


def project_month(daily: pd.Series, month_days: int, today: int) -> pd.Series:
    """Cumulative credits projected to month end at the average daily rate so far.

    ``daily`` holds credits per day of month (index 1..month_days, missing days count as 0);
    ``today`` is the current day of month, counted as a whole day. Returns a Series over
    1..month_days: NaN before today, the actual cumulative at today, then a straight line.
    All NaN when ``today`` lies outside the month (nothing left to project)."""
    days = pd.RangeIndex(1, month_days + 1, name=daily.index.name or "day")
    projected = pd.Series(np.nan, index=days, dtype="float64")
    if not 1 <= today <= month_days:
        return projected
    so_far = float(daily[(daily.index >= 1) & (daily.index <= today)].sum())
    rate = so_far / today
    ahead = days[days >= today]
    projected.loc[ahead] = so_far + rate * (ahead - today)
    return projected


def cumulative_credits(
    log: UsageLog,
    month: date,
    pricing: Pricing,
    *,
    flt: UsageFilter | None = None,
    today: date | None = None,
    include_local_estimate: bool = False,
    now: float | None = None,
) -> pd.DataFrame:
    """The budget chart for ``month`` (any date in it): ``day, credits, cumulative, budget, projected``,
    one row per day of the month. ``flt`` supplies provider/avatar/quality/tz; its dates are ignored."""
    base_flt = flt or UsageFilter()
    month_flt = replace(UsageFilter.month(month.year, month.month), **_non_date_fields(base_flt))
    month_days = calendar.monthrange(month.year, month.month)[1]
    if today is None:
        ts = time.time() if now is None else now
        today = datetime.fromtimestamp(ts, month_flt.zone).date()
    params: dict[str, Any] = {}
    first_day = (date(month.year, month.month, 1) - date(1970, 1, 1)).days
    with log.read() as conn:
        if _summarised(conn, month_flt, pricing):
            sql = _summed(
                conn.sql,
                month_flt,
                params,
                now,
                (_bucket_day(conn, month_flt),),
                ("credits",),
                grain=_grain(month_flt),
                pricing=pricing,
                include_local_estimate=include_local_estimate,
            )
        else:
            local = _local_time_sql(conn, month_flt)
            sql = _base(conn.sql, month_flt, params, now, pricing, include_local_estimate) + (
                f"SELECT {conn.sql.day_number(local)} AS day, SUM(credits) FROM s GROUP BY 1"
            )
        per_day = {int(day) - first_day + 1: float(c) for day, c in conn.execute(sql, params).fetchall()}
    dom = pd.RangeIndex(1, month_days + 1, name="day")
    daily = pd.Series([float(per_day.get(d, 0.0)) for d in dom], index=dom, dtype="float64")
    if (today.year, today.month) == (month.year, month.month):
        today_dom = today.day
    elif today < date(month.year, month.month, 1):
        today_dom = 0
    else:
        today_dom = month_days + 1
    cumulative = daily.cumsum()
    if 1 <= today_dom <= month_days:
        cumulative[cumulative.index > today_dom] = np.nan
    elif today_dom == 0:
        cumulative[:] = np.nan
    return pd.DataFrame(
        {
            "day": pd.to_datetime([date(month.year, month.month, d) for d in dom]),
            "credits": daily.to_numpy(),
            "cumulative": cumulative.to_numpy(),
            "budget": float(pricing.monthly_budget_credits),
            "projected": project_month(daily, month_days, today_dom).to_numpy(),
        }
    )


def _non_date_fields(flt: UsageFilter) -> dict[str, Any]:
    return {"providers": flt.providers, "avatars": flt.avatars, "qualities": flt.qualities, "tz": flt.tz}


def sessions_by_hour(log: UsageLog, flt: UsageFilter, *, now: float | None = None) -> pd.DataFrame:
    """``hour`` (0–23, local to ``flt.tz``), ``sessions``, ``minutes``; all 24 hours present."""
    params: dict[str, Any] = {}
    with log.read() as conn:
        if _summarised(conn, flt):
            groups = (_bucket_hour(conn, flt),)
            sql = _summed(conn.sql, flt, params, now, groups, ("sessions", "duration_s / 60.0"), grain=_grain(flt))
        else:
            local = _local_time_sql(conn, flt)
            sql = _base(conn.sql, flt, params, now) + (
                f"SELECT {conn.sql.hour(local)} AS hour, COUNT(*), SUM(d) / 60.0 FROM s GROUP BY 1"
            )
        found = {int(h): (int(n), float(m)) for h, n, m in conn.execute(sql, params).fetchall()}
    return pd.DataFrame(
        {
            "hour": range(24),
            "sessions": [found.get(h, (0, 0.0))[0] for h in range(24)],
            "minutes": [float(found.get(h, (0, 0.0))[1]) for h in range(24)],
        }
    )


SESSION_TABLE_COLUMNS = (
    "session_id",
    "created",
    "ended",
    "status",
    "end_reason",
    "provider",
    "avatar_id",
    "voice_id",
    "quality",
    "video_encoding",
    "started_by_dashboard",
    "duration_s",
    "credits",
    "cost",
    "tasks",
    "events",
    "mode",
    "source",
    "is_sandbox",
    "billed_credits",
    "est_credits",
    "estimate_off",
    "provider_end_reason",
)


def _sessions_sql(
    sql: Sql,
    flt: UsageFilter,
    pricing: Pricing,
    params: dict[str, Any],
    now: float | None,
    include_local_estimate: bool,
    limit: int | None,
    created_sql: str = "p.created_at",
    ended_sql: str = "p.ended_at",
) -> str:
    limit_sql = ""
    if limit is not None:
        params["limit"] = int(limit)
        limit_sql = " ORDER BY created_at DESC LIMIT :limit"
    params["price"] = float(pricing.price_per_credit)
    # Correlated counts walk events_session_at once per listed session (and need no GROUP BY over the page's
    # columns, which PostgreSQL would ask for).
    return _base(sql, flt, params, now, pricing, include_local_estimate) + (
        f", page AS (SELECT * FROM s{limit_sql}) "
        f"SELECT p.session_id, {created_sql} AS created, {ended_sql} AS ended, "
        "CASE WHEN p.ended_at IS NULL THEN 'open' ELSE 'closed' END AS status, p.end_reason, p.provider, "
        "p.avatar_id, p.voice_id, p.quality, p.video_encoding, p.started_by_dashboard, "
        "p.d AS duration_s, p.credits, p.credits * :price AS cost, "
        "(SELECT COUNT(*) FROM events e WHERE e.session_id = p.session_id AND e.kind = 'task') AS tasks, "
        "(SELECT COUNT(*) FROM events e WHERE e.session_id = p.session_id) AS events, "
        "p.mode, p.source, p.is_sandbox, p.billed_credits, p.est_credits, "
        f"(p.billed_credits IS NOT NULL AND ABS(p.est_credits - p.billed_credits) > "
        f"{ESTIMATE_TOLERANCE!r} * p.billed_credits + 1e-9) AS estimate_off, p.provider_end_reason "
        "FROM page p ORDER BY p.created_at DESC"
    )


def sessions_table(
    log: UsageLog,
    flt: UsageFilter,
    pricing: Pricing,
    limit: int | None = None,
    *,
    include_local_estimate: bool = False,
    now: float | None = None,
) -> pd.DataFrame:
    """Newest first, one row per session (``SESSION_TABLE_COLUMNS``), times as aware datetimes in ``flt.tz``."""
    params: dict[str, Any] = {}
    with log.read() as conn:
        sql = _sessions_sql(conn.sql, flt, pricing, params, now, include_local_estimate, limit)
        rows = conn.execute(sql, params).fetchall()
    df = pd.DataFrame([tuple(r) for r in rows], columns=list(SESSION_TABLE_COLUMNS))
    for column in ("duration_s", "credits", "cost"):
        df[column] = df[column].astype("float64")
    for column in ("tasks", "events"):
        df[column] = df[column].astype("int64")
    for column in ("created", "ended"):
        df[column] = pd.to_datetime(df[column], unit="s", utc=True).dt.tz_convert(flt.tz)
    df["started_by_dashboard"] = df["started_by_dashboard"].astype(bool)
    df["estimate_off"] = df["estimate_off"].fillna(0).astype(bool)
    df["is_sandbox"] = df["is_sandbox"].map(lambda v: None if v is None or v != v else bool(v)).astype("object")
    for column in ("billed_credits", "est_credits"):
        df[column] = df[column].astype("float64")
    return df


def _iso_sql(conn: Connection, flt: UsageFilter, column: str) -> str:
    """ISO 8601 local time with offset (``2024-03-02T18:30:00-05:00``) of a unix-seconds column."""
    lo, hi = _span(conn, flt)
    off = _tz_offset_sql(flt.zone, lo, hi + 2 * 86400, column)
    return conn.sql.iso_local(column, off)


def sessions_csv(
    log: UsageLog,
    flt: UsageFilter,
    pricing: Pricing,
    *,
    include_local_estimate: bool = False,
    now: float | None = None,
) -> bytes:
    """Every session matching the filter as UTF-8 CSV, columns as ``sessions_table``; times are
    ISO 8601 with the offset of ``flt.tz``. Rows stream from SQL to text without a DataFrame."""
    params: dict[str, Any] = {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SESSION_TABLE_COLUMNS)
    with log.read() as conn:
        sql = _sessions_sql(
            conn.sql,
            flt,
            pricing,
            params,
            now,
            include_local_estimate,
            None,
            created_sql=_iso_sql(conn, flt, "p.created_at"),
            ended_sql=_iso_sql(conn, flt, "p.ended_at"),
        )
        for row in conn.execute(sql, params):
            values = list(row)
            values[10] = "true" if values[10] else "false"
            values[11:14] = (round(v, 6) for v in values[11:14])
            sandbox, billed, estimate, off = values[18:22]
            values[18] = None if sandbox is None else ("true" if sandbox else "false")
            values[19] = None if billed is None else round(billed, 6)
            values[20] = round(estimate, 6)
            values[21] = "true" if off else "false"
            writer.writerow([spreadsheet_safe(v) for v in values])
    return out.getvalue().encode("utf-8")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula (OWASP "CSV Injection")."""


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (``=HYPERLINK(...)`` in an imported history row)
    gets a leading ``'``, as OWASP advises, so it shows as typed. Numbers are left alone: -3.5 is a number."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def filter_options(log: UsageLog) -> dict[str, list[str]]:
    """Distinct providers, avatars and qualities in the log, for the filter widgets."""
    out: dict[str, list[str]] = {}
    choices = (
        ("providers", "provider", "1 = 1", rollups.grain(False, False)),
        ("avatars", "avatar_id", "avatar_known = 1", rollups.grain(True, False)),
        ("qualities", "quality", "quality_known = 1", rollups.grain(False, True)),
    )
    with log.read() as conn:
        for key, column, known, grain in choices:
            # Closed sessions from the coarsest summary rows that keep the column, open ones from the raw table.
            rows = conn.execute(
                f"SELECT {column} FROM {rollups.TABLE} WHERE grain = {grain} AND {known} UNION "
                f"SELECT {column} FROM sessions{conn.sql.indexed_by('sessions_open_created')} "
                f"WHERE ended_at IS NULL AND {column} IS NOT NULL ORDER BY 1"
            )
            out[key] = [r[0] for r in rows]
    return out


def date_span(log: UsageLog, tz: str = "UTC") -> tuple[date, date] | None:
    """First and last local creation dates in the log (None when it is empty)."""
    with log.read() as conn:
        lo, hi = conn.execute(_FIRST_LAST).fetchone()
    if lo is None:
        return None
    zone = ZoneInfo(tz)
    return datetime.fromtimestamp(lo, zone).date(), datetime.fromtimestamp(hi, zone).date()
