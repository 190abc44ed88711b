from __future__ import annotations

import logging

import pytest

from lib.log_limits import OncePerInterval, limit_logger


def test_a_repeating_warning_is_let_through_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.log_limits.repeat")
    limit = limit_logger(logger.name, interval_s=0.2)
    assert limit_logger(logger.name) is limit  # installing twice keeps one filter
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for _ in range(50):
            logger.warning("callback is too slow (%.1f ms)", 25.0)
        logger.warning("something else")
        limit._last = {key: at - 1.0 for key, at in limit._last.items()}  # the interval has passed
        logger.warning("callback is too slow (%.1f ms)", 30.0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "callback is too slow (25.0 ms)",
        "something else",
        "callback is too slow (30.0 ms) (49 more like this in the last 0.2 s)",
    ]


def test_filter_is_per_template_not_per_logger() -> None:
    limit = OncePerInterval(60)
    first = logging.LogRecord("x", logging.WARNING, __file__, 1, "a %s", ("1",), None)
    other = logging.LogRecord("x", logging.WARNING, __file__, 1, "b %s", ("1",), None)
    again = logging.LogRecord("x", logging.WARNING, __file__, 1, "a %s", ("2",), None)
    assert limit.filter(first) and limit.filter(other) and not limit.filter(again)
