"""KPI delta labels: a change that rounds to nothing is not drawn as a rise."""

from __future__ import annotations

from ui.widgets import budget_change, fmt_change


def test_changes_that_round_to_zero_are_hidden():
    assert fmt_change(0.004) is None
    assert fmt_change(0.12) == "+12%"
    assert fmt_change(-0.5) == "-50%"
    assert budget_change(0.2500, 0.2504) is None
    assert budget_change(0.30, 0.25) == "+5.0 pts"
    assert budget_change(None, 0.25) is None
