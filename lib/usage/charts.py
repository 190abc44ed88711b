"""Altair charts of the Usage page, built from the DataFrames in ``lib.usage.queries``.

Pure functions: a DataFrame in, an ``alt.Chart`` out; the page only places them.
"""

from __future__ import annotations

from datetime import date, timedelta

import altair as alt
import pandas as pd

HEIGHT = 260
DAY_AXIS = alt.Axis(format="%b %d")
COUNT_AXIS = alt.Axis(tickMinStep=1, format="d")  # sessions are whole: no 0.2, 0.4 … ticks for one or two


def day_axis(days: int) -> alt.Axis:
    """Over a few days Vega ticks every few hours, and every tick of a day gets the same label: tick once a
    day then. Over longer spans its own choice (weeks) reads better."""
    if days <= 14:
        return alt.Axis(format="%b %d", tickCount={"interval": "day", "step": 1})
    return DAY_AXIS


GROUP_TITLES: dict[str, str] = {"avatar": "Avatar", "quality": "Quality", "provider": "Provider"}
BUDGET_SERIES: dict[str, str] = {"cumulative": "Used", "projected": "Projected", "budget": "Budget"}
_SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#d62728")


DAY_BANDS_UP_TO = 31  # days: one labelled band per day; over more, a time axis with its own ticks
DAY_LABEL = "%b %d"


def minutes_per_day_chart(df: pd.DataFrame, by: str = "avatar", period: tuple[date, date] | None = None) -> alt.Chart:
    """Stacked bars: minutes per day, one colour per avatar / quality / provider.

    With ``period`` (inclusive local dates) the axis spans the whole period, so days without sessions show as
    gaps and a single day of data is one narrow bar rather than one bar across the chart. Up to a month each day
    is a band with its label under its bar: on a time axis the labels sit at midnight, between two days' bars,
    and a new user read today's bar as tomorrow's."""
    title = GROUP_TITLES.get(by, by.title())
    days = df["day"].nunique() if len(df) else 0
    x: alt.X
    if period is not None and (period[1] - period[0]).days + 1 <= DAY_BANDS_UP_TO:
        start, end = period
        domain = [(start + timedelta(days=k)).strftime(DAY_LABEL) for k in range((end - start).days + 1)]
        df = (
            df.assign(day_label=pd.to_datetime(df["day"]).dt.strftime(DAY_LABEL))
            if len(df)
            else df.assign(day_label="")
        )
        x = alt.X(
            "day_label:O",
            title="Day",
            sort=domain,
            scale=alt.Scale(domain=domain),
            axis=alt.Axis(labelAngle=0, labelOverlap="parity"),
        )
    else:
        scale: alt.Scale | alt.UndefinedType = alt.Undefined
        if period is not None:
            start, end = period
            days = (end - start).days + 1
            # Naive ISO times, like the day column Altair sends: both are read as the browser's local midnight.
            scale = alt.Scale(
                domain=[f"{start.isoformat()}T00:00:00", f"{(end + timedelta(days=1)).isoformat()}T00:00:00"]
            )
        x = alt.X("yearmonthdate(day):T", title="Day", axis=day_axis(days), scale=scale)
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("sum(minutes):Q", title="Minutes", stack="zero"),
            color=alt.Color(f"{by}:N", title=title),
            tooltip=[
                alt.Tooltip("yearmonthdate(day):T", title="Day"),
                alt.Tooltip(f"{by}:N", title=title),
                alt.Tooltip("sum(sessions):Q", title="Sessions"),
                alt.Tooltip("sum(minutes):Q", title="Minutes", format=".1f"),
                alt.Tooltip("sum(credits):Q", title="Credits", format=".2f"),
                alt.Tooltip("sum(cost):Q", title="Cost", format="$.2f"),
            ],
        )
        .properties(height=HEIGHT)
    )


def duration_chart(df: pd.DataFrame) -> alt.Chart:
    """Bars: how many sessions fall in each duration bucket, shortest bucket first."""
    order = list(df.sort_values("lower_s")["bin"])
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("bin:N", title="Session duration", sort=order, axis=alt.Axis(labelAngle=-40, labelOverlap=False)),
            y=alt.Y("sessions:Q", title="Sessions", axis=COUNT_AXIS),
            tooltip=[alt.Tooltip("bin:N", title="Duration"), alt.Tooltip("sessions:Q", title="Sessions")],
        )
        .properties(height=HEIGHT)
    )


def budget_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``cumulative_credits`` output in long form: ``day, series, credits`` (Used / Projected / Budget)."""
    long = df[["day", *BUDGET_SERIES]].melt(id_vars=["day"], var_name="series", value_name="value")
    long["series"] = long["series"].map(BUDGET_SERIES)
    long = long.rename(columns={"value": "credits"})
    return long.dropna(subset=["credits"]).reset_index(drop=True)


def budget_chart(df: pd.DataFrame) -> alt.Chart:
    """Cumulative credits through the month, the budget line, and the projection to month end."""
    names = list(BUDGET_SERIES.values())
    return (
        alt.Chart(budget_frame(df))
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("day:T", title="Day", axis=DAY_AXIS),
            y=alt.Y("credits:Q", title="Credits"),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(domain=names, range=list(_SERIES_COLORS)),
                legend=alt.Legend(orient="top"),
            ),
            strokeDash=alt.StrokeDash(
                "series:N", scale=alt.Scale(domain=names, range=[[1, 0], [6, 4], [2, 2]]), legend=None
            ),
            tooltip=[
                alt.Tooltip("day:T", title="Day", format="%b %d"),
                alt.Tooltip("series:N", title="Line"),
                alt.Tooltip("credits:Q", title="Credits", format=".2f"),
            ],
        )
        .properties(height=HEIGHT)
    )


def hour_chart(df: pd.DataFrame) -> alt.Chart:
    """Bars: sessions started in each hour of the day (local time)."""
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("hour:O", title="Hour of day", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("sessions:Q", title="Sessions", axis=COUNT_AXIS),
            tooltip=[
                alt.Tooltip("hour:O", title="Hour"),
                alt.Tooltip("sessions:Q", title="Sessions"),
                alt.Tooltip("minutes:Q", title="Minutes", format=".1f"),
            ],
        )
        .properties(height=HEIGHT)
    )
