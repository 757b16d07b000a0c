"""Business dates and accounting periods: the one `Period` type (a calendar month `YYYY-MM`),
today's date in the business time zone, and whether a caller may date a document into a
period."""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

from shared.errors import InvalidInput, PeriodLocked

__all__ = [
    "Period",
    "business_date_of",
    "check_not_future",
    "ensure_open",
    "period_closed",
    "today",
]

# [0-9], not \d: \d also matches other scripts' digits, which int() would then read.
_PERIOD = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True, order=True, slots=True)
class Period:
    """An accounting period: one calendar month. Ordered; `str()` is `YYYY-MM`."""

    year: int
    month: int

    FIRST_YEAR: ClassVar[int] = 2000
    LAST_YEAR: ClassVar[int] = 2999

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"month {self.month} is not 1 to 12")

    @classmethod
    def parse(cls, text: str, *, field: str = "period") -> Period:
        """The period `text` names (`YYYY-MM`, ASCII digits, years 2000–2999), else 422."""
        found = _PERIOD.fullmatch(text)
        if found is None:
            raise InvalidInput(field, f"{text!r} is not a period like 2026-10")
        period = cls(int(found[1]), int(found[2]))
        if not cls.FIRST_YEAR <= period.year <= cls.LAST_YEAR:
            raise InvalidInput(
                field, f"{text} is outside the years {cls.FIRST_YEAR}–{cls.LAST_YEAR}"
            )
        return period

    @classmethod
    def of(cls, day: date) -> Period:
        """The period a business date falls in."""
        return cls(day.year, day.month)

    @classmethod
    def at(cls, moment: datetime, zone: ZoneInfo) -> Period:
        """The period of a moment's calendar date in the business time zone."""
        return cls.of(business_date_of(moment, zone))

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, monthrange(self.year, self.month)[1])

    def bounds(self) -> tuple[date, date]:
        """The half-open date range [first day, first day of the next period)."""
        return self.first_day, self.next().first_day

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Period:
        return Period(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def __contains__(self, day: date) -> bool:
        return (day.year, day.month) == (self.year, self.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def today(zone: ZoneInfo) -> date:
    """The calendar date now in the business time zone."""
    return datetime.now(UTC).astimezone(zone).date()


def business_date_of(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar date of a moment in the business time zone (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).date()


def check_not_future(day: date, *, zone: ZoneInfo, field: str) -> None:
    if day > today(zone):
        raise InvalidInput(field, f"{day.isoformat()} is in the future")


def ensure_open(
    period: str, closed_by: str | None, *, field: str | None = None, day: date | None = None
) -> None:
    """Refuse a document dated into a period the month-end close has closed to documents:
    `closed_by` is the locked period that closes it (itself, or a later one), if any."""
    if closed_by is not None:
        raise period_closed(period, closed_by, field=field, day=day)


def period_closed(
    period: str, closed_by: str, *, field: str | None = None, day: date | None = None
) -> PeriodLocked:
    """The 409 of a document dated into `period`, closed to documents by the lock of
    `closed_by`: its own month-end close, or a later period's (periods close in order, so
    the months before a closed one are closed with it)."""
    if closed_by == period:
        why, into = "its month-end close has begun", "a later period"
    else:
        why = f"periods close in order, and the month-end close of {closed_by} has begun"
        into = f"a period after {closed_by}"
    used = f"{field} {day.isoformat()} cannot be used, " if field and day else ""
    extra = {"field": field} if field else {}
    return PeriodLocked(
        f"period {period} is closed to new documents ({why}); {used}date the document into {into}",
        period=period,
        closed_by=closed_by,
        **extra,
    )
