"""Analytics' rules without a database: trend intervals and the linear forecast."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.analytics.domain import bucket_start, buckets, linear_forecast, next_bucket

D = Decimal


@pytest.mark.parametrize(
    ("interval", "day", "start", "after"),
    [
        ("day", date(2026, 12, 31), date(2026, 12, 31), date(2027, 1, 1)),
        ("week", date(2026, 10, 8), date(2026, 10, 5), date(2026, 10, 12)),  # Monday-based
        ("month", date(2026, 12, 15), date(2026, 12, 1), date(2027, 1, 1)),
    ],
)
def test_buckets_start_and_follow(interval: str, day: date, start: date, after: date) -> None:
    assert bucket_start(day, interval) == start
    assert next_bucket(start, interval) == after


def test_every_bucket_that_touches_the_range() -> None:
    assert buckets(date(2026, 1, 20), date(2026, 3, 1), "month") == [
        date(2026, 1, 1),
        date(2026, 2, 1),
        date(2026, 3, 1),
    ]
    assert buckets(date(2026, 3, 2), date(2026, 3, 1), "day") == []


def test_the_forecast_extends_the_least_squares_line() -> None:
    assert linear_forecast([D(1), D(3), D(5)], 2) == [D(7), D(9)]
    assert linear_forecast([D(4)], 2) == [D(4), D(4)]
    assert linear_forecast([], 1) == [D(0)]
    # Slope 2/5 through the mean (1.5, 3): at x = 4, 3 + 0.4 × 2.5.
    assert linear_forecast([D(2), D(4), D(2), D(4)], 1) == [D(4)]
