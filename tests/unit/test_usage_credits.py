from __future__ import annotations

import random
import sqlite3

import pytest

from lib.settings import load_settings
from lib.usage.credits import PLANS, PRESETS, Pricing, get_model

CURRENT = PRESETS["heygen_current"]


@pytest.mark.parametrize(
    ("duration_s", "credits"),
    [
        (0, 0.0),
        (-5, 0.0),
        (0.2, 0.1),  # any running session pays the 30 s minimum
        (29, 0.1),
        (30, 0.1),
        (30.5, 31 * 0.2 / 60),  # whole started seconds
        (31, 31 * 0.2 / 60),
        (90, 0.3),
        (600, 2.0),
    ],
)
def test_heygen_current_minimum_then_per_second(duration_s: float, credits: float) -> None:
    assert CURRENT.credits_for(duration_s) == pytest.approx(credits, abs=1e-12)


def test_sub_microsecond_excess_does_not_bill_an_extra_second() -> None:
    assert CURRENT.credits_for(90 + 2.4e-7) == pytest.approx(0.3, abs=1e-12)
    assert CURRENT.credits_for(90.001) == pytest.approx(91 * 0.2 / 60, abs=1e-12)


def test_older_preset_is_one_credit_per_ten_minutes_prorated() -> None:
    older = PRESETS["heygen_older"]
    assert older.credits_for(600) == pytest.approx(1.0)
    assert older.credits_for(60) == pytest.approx(0.1)
    assert older.credits_for(1) == pytest.approx(0.1 / 60)
    assert older.credits_for(0) == 0.0


def test_oldest_preset_bills_speaking_time_falling_back_to_duration() -> None:
    oldest = PRESETS["heygen_oldest"]
    assert oldest.credits_for(600, speaking_s=120) == pytest.approx(2.0)
    assert oldest.credits_for(600, speaking_s=0) == 0.0
    assert oldest.credits_for(90) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("key", "duration_s", "credits"),
    [
        ("liveavatar_full", 10, 2.0),
        ("liveavatar_full", 90, 3.0),
        ("liveavatar_lite", 10, 1.0),
        ("liveavatar_lite", 90, 1.5),
        ("liveavatar_lite", 0, 0.0),
    ],
)
def test_liveavatar_holds_one_minute_at_start(key: str, duration_s: float, credits: float) -> None:
    assert PRESETS[key].credits_for(duration_s) == pytest.approx(credits)


def test_sql_expression_agrees_with_python_for_every_preset() -> None:
    rng = random.Random(7)
    durations = [0, -1, 1e-7, 0.5, 1, 29, 29.999999, 30, 30.0000001, 30.5, 59.5, 60, 60.2, 90, 599.9, 3600]
    durations += [rng.uniform(0, 4000) for _ in range(300)]
    durations += [
        (1_700_000_000.0 + x + d) - (1_700_000_000.0 + x)
        for x, d in ((rng.random(), rng.randint(0, 900)) for _ in range(200))
    ]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (d REAL, sp REAL)")
    rows = [(d, None if i % 3 else rng.uniform(0, 300)) for i, d in enumerate(durations)]
    conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    for model in [*PRESETS.values(), CURRENT.with_rate(0.5, minimum_s=10)]:
        sql_values = [r[0] for r in conn.execute(f"SELECT {model.sql_expr('d', 'sp')} FROM t ORDER BY rowid")]
        py_values = [model.credits_for(d, sp) for d, sp in rows]
        assert sql_values == pytest.approx(py_values, abs=1e-12), model.key
        total = conn.execute(f"SELECT SUM({model.sql_expr('d', 'sp')}) FROM t").fetchone()[0]
        assert total == pytest.approx(sum(py_values), rel=1e-12)


def test_pricing_turns_credits_into_money_and_budget_share() -> None:
    pricing = Pricing(model=CURRENT, price_per_credit=0.99, monthly_budget_credits=100)
    assert pricing.cost(50) == pytest.approx(49.5)
    assert pricing.budget_fraction(25) == pytest.approx(0.25)
    assert Pricing(monthly_budget_credits=0).budget_fraction(5) is None
    assert pricing.credits_for(90) == pytest.approx(0.3)


def test_presets_are_documented_and_unknown_ones_name_the_choices() -> None:
    expected = {"liveavatar", "heygen_current", "heygen_older", "heygen_oldest", "liveavatar_full", "liveavatar_lite"}
    assert set(PRESETS) == expected
    assert all(m.label and m.description for m in PRESETS.values())
    with pytest.raises(ValueError, match="heygen_current"):
        get_model("heygen_2019")


def test_pricing_from_settings_uses_the_configured_preset() -> None:
    settings = load_settings(secrets={}, env={"CREDIT_PRESET": "liveavatar_full", "PRICE_PER_CREDIT": "0.1"})
    pricing = Pricing.from_settings(settings)
    assert (pricing.model.key, pricing.price_per_credit, pricing.monthly_budget_credits) == (
        "liveavatar_full",
        0.1,
        100.0,
    )
    with pytest.raises(ValueError, match="CREDIT_PRESET"):
        Pricing.from_settings(load_settings(secrets={}, env={"CREDIT_PRESET": "free"}))


def test_liveavatar_preset_bills_by_mode_and_sandbox_is_free() -> None:
    model = PRESETS["liveavatar"]
    assert model.credits_for(90, mode="FULL") == pytest.approx(3.0)
    assert model.credits_for(90, mode="LITE") == pytest.approx(1.5)
    assert model.credits_for(10, mode="LITE") == pytest.approx(1.0)  # one minute held at start
    assert model.credits_for(90, mode="FULL", is_sandbox=True) == 0.0
    assert model.credits_for(90) == pytest.approx(3.0)  # mode unknown: priced as FULL


def test_liveavatar_sql_expression_agrees_with_python_by_mode_and_sandbox() -> None:
    model = PRESETS["liveavatar"]
    rows = [
        (d, m, s) for d in (0, 10, 59.5, 60, 90.2, 600) for m in ("FULL", "LITE", "lite", None) for s in (0, 1, None)
    ]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (d REAL, mode TEXT, sb INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    sql = [r[0] for r in conn.execute(f"SELECT {model.sql_expr('d', None, 'mode', 'sb')} FROM t ORDER BY rowid")]
    python = [model.credits_for(d, None, m, None if s is None else bool(s)) for d, m, s in rows]
    assert sql == pytest.approx(python, abs=1e-12)


def test_a_liveavatar_plan_sets_price_per_credit_and_budget() -> None:
    pro = Pricing.for_plan(PRESETS["liveavatar"], PLANS["pro"])
    assert (pro.price_per_credit, pro.monthly_budget_credits) == (0.099, 1000.0)
    assert PLANS["scale"].price_per_credit == pytest.approx(0.095)
    assert PLANS["free"].monthly_credits == 10 and PLANS["free"].overage_per_credit is None
    assert {p.monthly_price for p in PLANS.values()} == {0.0, 19.0, 99.0, 475.0}
