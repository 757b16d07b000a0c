"""Rules of the close and the ledger that need no database: when a period may close, its
statuses, matching control totals, the posting of each document, late documents."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from services.closing.domain import (
    TRANSITIONS,
    PeriodBook,
    PeriodStatus,
    check_begun,
    compare,
    may,
    posting_of,
)
from shared.errors import InvalidInput
from shared.events.envelope import Event, EventPayload
from shared.events.orders import OrderCancelled, OrderConfirmed, OrderReturned
from shared.events.payments import PaymentReceived, PaymentRefunded
from shared.ids import new_id
from shared.periods import business_date_of
from tests.support.documents import order_facts

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


def test_period_moves() -> None:
    assert set(TRANSITIONS) == set(PeriodStatus)
    assert may("close", "open") and may("close", "stale")
    assert not may("close", "closing") and not may("close", "closed")
    assert may("reopen", "closed") and may("reopen", "stale") and not may("reopen", "open")
    assert may("complete", "closing") and not may("complete", "open")
    assert TRANSITIONS[PeriodStatus.CLOSING] == {PeriodStatus.CLOSED, PeriodStatus.OPEN}


def test_control_totals_complete_only_when_every_source_matches() -> None:
    one = {"count": 1, "amount": "10.00"}
    control = {"orders": {"invoice": one}}
    waiting = compare(control, {"invoice": one})
    assert waiting["waiting_for_cutoff"] == ["payments"] and not waiting["complete"]
    control["payments"] = {"payment": {"count": 0, "amount": "0.00"}}
    assert compare(control, {"invoice": one})["complete"]
    short = compare(control, {})
    assert not short["complete"] and short["mismatches"][0]["kind"] == "invoice"
    assert not short["impossible"]
    over = compare(control, {"invoice": {"count": 2, "amount": "20.00"}})
    assert over["impossible"] == ["the ledger holds more invoice documents than orders reported"]


CUSTOMER = new_id()
DAY = date(2026, 10, 5)
D = Decimal
DOCUMENTS: list[EventPayload] = [
    OrderConfirmed(
        order=order_facts(customer_id=CUSTOMER, net="100.00", tax="13.00"),
        invoice_number="INV-2026-000001",
        business_date=DAY,
        due_date=DAY,
        instalments=[],
        confirmed_at=datetime(2026, 10, 5, tzinfo=UTC),
    ),
    OrderReturned(
        credit_note_id=new_id(),
        credit_note_number="CRN-2026-000001",
        order_id=new_id(),
        customer_id=CUSTOMER,
        business_date=DAY,
        lines=[],
        net=D("10.00"),
        tax=D("1.30"),
        gross=D("11.30"),
        reason=None,
    ),
    OrderCancelled(
        order_id=new_id(),
        number="SO-2026-000002",
        customer_id=CUSTOMER,
        was_confirmed=True,
        invoice_number="INV-2026-000002",
        business_date=DAY,
        reversed_net=D("50.00"),
        reversed_tax=D("6.50"),
        reversed_gross=D("56.50"),
        reason=None,
    ),
    PaymentReceived(
        payment_id=new_id(),
        number="PAY-2026-000001",
        customer_id=CUSTOMER,
        amount=D("40.00"),
        method="cash",
        received_at=datetime(2026, 10, 5, tzinfo=UTC),
        business_date=DAY,
        reference=None,
        allocations=[],
    ),
    PaymentRefunded(
        refund_id=new_id(),
        payment_id=new_id(),
        payment_number="PAY-2026-000001",
        customer_id=CUSTOMER,
        amount=D("5.00"),
        method="cash",
        business_date=DAY,
        reason=None,
        released_allocations=[],
    ),
]


@pytest.mark.parametrize("payload", DOCUMENTS, ids=lambda p: p.TYPE)
def test_every_document_posts_balanced_and_moves_the_receivable_by_its_amount(
    payload: EventPayload,
) -> None:
    posting = posting_of(Event.of(payload, source="test", key="k", business_date=DAY), payload)
    assert posting is not None and posting.balanced()
    receivable = sum(
        (d - c for account, d, c in posting.lines if account == f"ar:{CUSTOMER}"), D(0)
    )
    assert receivable == posting.amount
    assert posting.business_date == DAY and posting.control_amount == abs(posting.amount)


def test_a_cancellation_of_a_draft_posts_nothing() -> None:
    draft = DOCUMENTS[2].model_copy(update={"was_confirmed": False})
    assert posting_of(Event.of(draft, source="test", key="k"), draft) is None


def test_a_document_dated_into_a_closed_period_posts_into_the_next_open_one() -> None:
    book = PeriodBook({"2026-09": "closed", "2026-10": "closed", "2026-11": "closing"})
    assert book.posting_period("2026-09") == "2026-11"
    assert book.posting_period("2026-11") == "2026-11"
    assert book.posting_period("2026-12") == "2026-12"


def test_a_month_before_a_closed_one_is_closed_with_it_unless_reopened() -> None:
    # 2026-07 was empty when 2026-08 closed: a document dated into it now is late too.
    book = PeriodBook({"2026-06": "closed", "2026-08": "closed", "2026-09": "open"})
    assert book.posting_period("2026-07") == "2026-09"
    assert book.posting_period("2026-01") == "2026-09"
    # Reopened, a month takes documents: the months after it are stale, none closed.
    reopened = PeriodBook({"2026-06": "open", "2026-08": "stale"})
    assert reopened.posting_period("2026-06") == "2026-06"
    assert reopened.posting_period("2026-07") == "2026-07"
