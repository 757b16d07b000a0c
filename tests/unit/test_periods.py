"""The one Period type: parsing, bounds, neighbours and the period of a moment."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidInput
from shared.periods import Period, business_date_of

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_parse_reads_a_month_and_prints_it_back() -> None:
    period = Period.parse("2026-10")
    assert (period.year, period.month) == (2026, 10)
    assert str(period) == "2026-10"


@pytest.mark.parametrize(
    "text",
    [
        "2026-13",
        "2026-00",
        "2026-1",
        "26-10",
        "2026-10-01",
        " 2026-10",
        "2026/10",
        "２０２６-10",  # fullwidth digits
        "٢٠٢٦-10",  # Arabic-Indic digits: \d and int() would take them
        "1999-12",
        "3000-01",
        "0000-01",
        "",
    ],
)
def test_parse_refuses_anything_but_ascii_months_of_2000_to_2999(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Period.parse(text, field="month")
    assert refused.value.extra["field"] == "month"


def test_the_year_bounds_are_inclusive() -> None:
    assert str(Period.parse("2000-01")) == "2000-01"
    assert str(Period.parse("2999-12")) == "2999-12"


@pytest.mark.parametrize(
    ("text", "first", "last", "after"),
    [
        ("2026-01", date(2026, 1, 1), date(2026, 1, 31), date(2026, 2, 1)),
        ("2024-02", date(2024, 2, 1), date(2024, 2, 29), date(2024, 3, 1)),
        ("2026-02", date(2026, 2, 1), date(2026, 2, 28), date(2026, 3, 1)),
        ("2026-12", date(2026, 12, 1), date(2026, 12, 31), date(2027, 1, 1)),
    ],
)
def test_first_and_last_day_and_half_open_bounds(
    text: str, first: date, last: date, after: date
) -> None:
    period = Period.parse(text)
    assert (period.first_day, period.last_day) == (first, last)
    assert period.bounds() == (first, after)
    assert first in period and last in period and after not in period


def test_next_and_previous_cross_the_year() -> None:
    assert str(Period.parse("2026-12").next()) == "2027-01"
    assert str(Period.parse("2027-01").previous()) == "2026-12"
    assert str(Period.parse("2026-06").next()) == "2026-07"


@given(st.dates(min_value=date(2000, 2, 1), max_value=date(2999, 11, 30)))
def test_a_date_lies_in_its_period_and_neighbours_are_adjacent(day: date) -> None:
    period = Period.of(day)
    assert period.first_day <= day <= period.last_day
    assert period.next().previous() == period == period.previous().next()
    assert period.previous() < period < period.next()
    assert period.next().first_day == period.bounds()[1]
    assert Period.parse(str(period)) == period


def test_the_period_of_a_moment_is_read_in_the_business_time_zone() -> None:
    # 31 October 17:00 UTC is already 1 November in Shanghai.
    moment = datetime(2026, 10, 31, 17, 0, tzinfo=UTC)
    assert str(Period.at(moment, SHANGHAI)) == "2026-11"
    assert str(Period.at(moment, ZoneInfo("UTC"))) == "2026-10"
    # A naive moment is UTC.
    assert business_date_of(moment.replace(tzinfo=None), SHANGHAI) == date(2026, 11, 1)
