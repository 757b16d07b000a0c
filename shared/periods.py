"""Business dates and accounting periods: which month a document belongs to, and whether a
caller may date a document into it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from shared.errors import InvalidInput, PeriodLocked
from shared.events.envelope import period_of

__all__ = ["business_date_of", "check_not_future", "ensure_open", "period_of", "today"]


def today(zone: ZoneInfo) -> date:
    return datetime.now(UTC).astimezone(zone).date()


def business_date_of(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar date of a moment in the business time zone (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).date()


def check_not_future(day: date, *, zone: ZoneInfo, field: str) -> None:
    if day > today(zone):
        raise InvalidInput(field, f"{day.isoformat()} is in the future")


def ensure_open(period: str, locked: bool) -> None:
    """Refuse a document dated into a period the month-end close has locked."""
    if locked:
        raise PeriodLocked(
            f"period {period} is closed to new documents (its month-end close has begun); "
            "date the document into a later period",
            period=period,
        )


def period_lock_key(schema: str, period: str) -> str:
    """Advisory lock name guarding documents of one period in one service.

    Writers of documents hold it shared until commit; the close's cutoff takes it exclusively,
    so a cutoff never counts control totals while a document for that period is in flight.
    """
    return f"salesbook.period.{schema}.{period}"
