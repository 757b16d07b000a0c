"""An event's typed payload is validated once per event object, whoever asks for it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import uuid4

import pytest
from pydantic import ValidationError

from shared.events.envelope import Event
from shared.events.payments import PaymentAllocated, PaymentReceived

DAY = date(2026, 3, 14)


def _allocated() -> Event:
    payload = PaymentAllocated(
        allocation_id=uuid4(),
        payment_id=uuid4(),
        payment_number="PAY-2026-000001",
        order_id=uuid4(),
        customer_id=uuid4(),
        amount=Decimal("12.50"),
        business_date=DAY,
    )
    return Event.of(payload, source="payments", key="k", business_date=DAY)


def _read_back(event: Event) -> Event:
    """The event as a consumer parses it from its outbox row."""
    return Event.model_validate_json(event.model_dump_json())


def test_the_typed_payload_is_validated_once_and_shared() -> None:
    event = _read_back(_allocated())
    first = event.payload()
    assert isinstance(first, PaymentAllocated)
    assert str(first.amount) == "12.50"
    assert event.payload() is first
    assert event.payload_as(PaymentAllocated) is first


def test_remembering_the_payload_changes_neither_equality_nor_the_wire_form() -> None:
    event = _read_back(_allocated())
    twin = Event.model_validate_json(event.model_dump_json())
    wire = event.model_dump_json()
    event.payload()
    assert event == twin
    assert event.model_dump_json() == wire
    assert "typed" not in event.model_dump()


def test_another_kind_is_validated_from_the_data() -> None:
    event = _read_back(_allocated())
    with pytest.raises(ValidationError):
        event.payload_as(PaymentReceived)  # an allocation is not a receipt


def test_a_bad_payload_fails_every_time_it_is_asked_for() -> None:
    good = _allocated()
    bad = Event.model_validate({**good.model_dump(mode="json"), "data": {"amount": "x"}})
    for _ in range(2):
        with pytest.raises(ValidationError):
            bad.payload()
    unknown = Event.model_validate({**good.model_dump(mode="json"), "type": "no.such"})
    with pytest.raises(KeyError):
        unknown.payload()


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "x", "", "1,50"])
def test_an_amount_that_is_not_a_finite_number_is_refused(amount: str) -> None:
    """Event amounts are read by pydantic itself (no Python per value), and what is not a
    finite number still fails the payload: the consumer reports it stuck."""
    good = _allocated().model_dump(mode="json")
    bad = Event.model_validate({**good, "data": {**good["data"], "amount": amount}})
    with pytest.raises(ValidationError):
        bad.payload()


def test_amounts_go_out_with_two_places_and_read_back_exactly() -> None:
    event = _read_back(_allocated())
    payload = event.payload()
    assert isinstance(payload, PaymentAllocated)
    assert payload.amount == Decimal("12.50") and isinstance(payload.amount, Decimal)
    data = _allocated().model_dump(mode="json")["data"]
    # Whatever places a producer's Decimal has, the event carries two, rounded half-up as
    # every amount is (SPEC §2), and reads back as that.
    for given, wire in (("7", "7.00"), ("0.125", "0.13"), ("-0.125", "-0.13"), ("1.5", "1.50")):
        sent = Event.of(
            PaymentAllocated.model_validate({**data, "amount": Decimal(given)}),
            source="payments",
            key="k",
        )
        assert sent.data["amount"] == wire
        assert _read_back(sent).payload_as(PaymentAllocated).amount == Decimal(wire)
