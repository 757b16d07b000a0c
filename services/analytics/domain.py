"""The rules of analytics as plain Python, free of I/O: the intervals a trend is read in and
the forecast by linear regression through its history."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from shared.periods import Period

INTERVALS = {"day": "day", "week": "week", "month": "month"}
METHOD = "linear regression (ordinary least squares over the history points)"
PLACES = {"revenue": Decimal("0.01"), "orders": Decimal("0.01"), "units": Decimal("0.001")}


def bucket_start(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def next_bucket(day: date, interval: str) -> date:
    if interval == "week":
        return day + timedelta(days=7)
    if interval == "month":
        return Period.of(day).next().first_day
    return day + timedelta(days=1)


def buckets(start: date, end: date, interval: str) -> list[date]:
    out, current = [], bucket_start(start, interval)
    while current <= end:
        out.append(current)
        current = next_bucket(current, interval)
    return out


def linear_forecast(values: list[Decimal], steps: int) -> list[Decimal]:
    """Least-squares line through (i, value_i), extended `steps` points ahead."""
    n = len(values)
    if n == 0:
        return [Decimal(0)] * steps
    if n == 1:
        return [values[0]] * steps
    mean_x = Decimal(n - 1) / 2
    mean_y = sum(values, Decimal(0)) / n
    sxx = sum(((Decimal(i) - mean_x) ** 2 for i in range(n)), Decimal(0))
    sxy = sum(((Decimal(i) - mean_x) * (v - mean_y) for i, v in enumerate(values)), Decimal(0))
    slope = sxy / sxx
    return [mean_y + slope * (Decimal(n + k) - mean_x) for k in range(steps)]
