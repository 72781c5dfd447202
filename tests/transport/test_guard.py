from __future__ import annotations

import logging

import pytest

from medfed.transport.guard import ThrottledLog


def test_a_repeated_warning_is_logged_once_a_period_with_the_count_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    throttled = ThrottledLog(
        logging.getLogger("test.throttled"), period_s=60.0, clock=lambda: now[0]
    )

    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        logged = [throttled.warning("mallory Heartbeat", "junk") for _ in range(1000)]
        throttled.warning("cleveland Heartbeat", "junk")
        now[0] = 61.0
        throttled.warning("mallory Heartbeat", "junk")

    assert logged.count(True) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "junk",
        "junk",
        "junk (999 more like it since the last report)",
    ]


def test_the_log_keeps_a_bounded_number_of_keys() -> None:
    throttled = ThrottledLog(logging.getLogger("test.throttled"), max_keys=10)
    for i in range(1000):
        throttled.warning(f"node-{i}", "junk")

    assert len(throttled._last) <= 10
