"""Benchmarks fail on figures outside their physical range (a negative CPU share once passed its goal)."""

from __future__ import annotations

from benchmarks.checks import CORES, finish, invalid_figures


def test_a_negative_cpu_share_fails_the_bench_even_when_its_goal_says_met() -> None:
    result = {
        "cpu_per_speaking_session_pct": {"value": -14.7, "unit": "% of one core", "meets_goal": True},
        "meets_all_goals": True,
    }
    assert finish(result) == 1
    assert result["invalid_figures"] == ["cpu_per_speaking_session_pct.value = -14.7"]
    assert result["meets_all_goals"] is False


def test_cpu_above_every_core_and_negative_durations_are_invalid() -> None:
    result = {
        "machine_cpu_pct": 100.0 * CORES * 2,
        "typed_to_lips": {"value": 410.0, "unit": "ms", "p95": -5.0},
        "start_s": -0.1,
    }
    assert invalid_figures(result) == [
        f"machine_cpu_pct = {100.0 * CORES * 2}",
        "typed_to_lips.p95 = -5.0",
        "start_s = -0.1",
    ]


def test_figures_in_range_pass_and_other_numbers_are_not_judged() -> None:
    result = {
        "cpu_per_session_pct": {"value": 23.5, "unit": "% of one core", "p95": 40.0},
        "typed_to_lips": {"value": 410.0, "unit": "ms", "runs": 8},
        "load_average": [5.2, 3.1, 2.0],
        "level_db": -30.0,
    }
    assert finish(result) == 0
    assert result["invalid_figures"] == []


def test_a_signed_offset_may_be_negative() -> None:
    result = {"av_offset_at_sender_ms": {"value": -33.7, "unit": "ms", "p95": -7.4, "min": -43.4, "max": -7.4}}
    assert finish(result) == 0 and result["invalid_figures"] == []
