"""The conversion funnel counts a submission on the day its order counts on."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from services.analytics.handlers import Batch, _on_submitted
from shared.events.envelope import Event
from shared.events.orders import OrderFacts, OrderSubmitted
from shared.ids import new_id


def submitted(*, at: datetime, business_date: date | None) -> Event:
    facts = OrderFacts(
        order_id=new_id(),
        number="SO-1",
        customer_id=new_id(),
        customer_name="c",
        region=None,
        segment=None,
        channel="pos",
        salesperson=None,
        created_by="pos",
        lines=[],
        net=Decimal("0.00"),
        tax=Decimal("0.00"),
        gross=Decimal("0.00"),
    )
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
