"""Rules of the close that need no database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from services.closing.service import check_begun
from shared.errors import InvalidInput
from shared.periods import business_date_of

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_month_has_begun_on_its_first_business_day() -> None:
    # 05:55 on 1 December in Shanghai is still 30 November in UTC.
    moment = datetime(2026, 11, 30, 21, 55, tzinfo=UTC)
    check_begun("2026-12", business_date_of(moment, SHANGHAI))
    with pytest.raises(InvalidInput, match="not begun"):
        check_begun("2026-12", moment.date())


def test_a_future_month_has_not_begun() -> None:
    check_begun("2026-11", date(2026, 11, 1))
    with pytest.raises(InvalidInput) as refused:
        check_begun("2027-01", date(2026, 12, 31))
    assert refused.value.field == "period"
