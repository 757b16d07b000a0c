"""History of one metric per interval, and a forecast by linear regression."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.queries import sales_rows
from shared.periods import Period

METRICS = {
    "revenue": lambda rows: func.sum(rows.net - rows.returns_net),
    "orders": lambda rows: func.sum(rows.order_count),
    "units": lambda rows: func.sum(rows.units),
}
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


async def trend(
    session: AsyncSession,
    *,
    metric: str,
    interval: str,
    start: date,
    end: date,
    forecast: int,
    today: date,
) -> list[dict[str, Any]]:
    """Every bucket from start to end that has begun by `today` (empty ones as zero), then
    `forecast` predicted ones. Intervals still to come are not history: counting them as
    zeros would drag the line fitted through the history down."""
    end = min(end, today)
    rows = sales_rows(group_by=interval, filters={}, start=start, end=end).c
    bucket = cast(func.date_trunc(INTERVALS[interval], rows.day), Date).label("bucket")
    query = select(bucket, METRICS[metric](rows).label("value")).group_by(bucket)
    found = {row.bucket: Decimal(row.value or 0) for row in await session.execute(query)}
    history = buckets(start, end, interval)
    values = [found.get(b, Decimal(0)) for b in history]
    places = PLACES[metric]
    points = [
        {"bucket": b, "value": v.quantize(places, ROUND_HALF_UP), "forecast": False}
        for b, v in zip(history, values, strict=True)
    ]
    ahead = next_bucket(history[-1], interval) if history else bucket_start(start, interval)
    for predicted in linear_forecast(values, forecast):
        points.append(
            {"bucket": ahead, "value": predicted.quantize(places, ROUND_HALF_UP), "forecast": True}
        )
        ahead = next_bucket(ahead, interval)
    return points
