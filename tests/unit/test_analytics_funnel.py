"""The conversion funnel counts a submission on the day its order counts on."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.analytics.handlers import Batch, _on_submitted
from shared.events.envelope import Event
from shared.events.orders import OrderSubmitted
from tests.support.documents import order_facts


def submitted(*, at: datetime, business_date: date | None) -> Event:
    facts = order_facts()
    payload = OrderSubmitted(
        order=facts, submitted_at=at, approvals_required=0, business_date=business_date
    )
    return Event.of(payload, source="orders", key=str(facts.customer_id))


def test_a_backdated_submission_counts_in_its_business_month() -> None:
    batch = Batch()
    _on_submitted(
        batch, submitted(at=datetime(2026, 6, 1, 4, tzinfo=UTC), business_date=date(2026, 3, 10))
    )
    assert dict(batch.funnel) == {date(2026, 3, 10): {"submitted": 1, "confirmed": 0}}


def test_an_older_event_counts_on_its_day_in_the_business_zone() -> None:
    batch = Batch()
    # 20:00 UTC on 31 May is 1 June in Shanghai.
    _on_submitted(batch, submitted(at=datetime(2026, 5, 31, 20, tzinfo=UTC), business_date=None))
    assert list(batch.funnel) == [date(2026, 6, 1)]
