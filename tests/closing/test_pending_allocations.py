"""A pending allocation that stays pending too long is reported in the period reconciliation
until its order arrives or it is released."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import httpx

from services.registry import service_module
from shared.config import Settings
from shared.events.payments import (
    AllocationReleased,
    AllocationState,
    PaymentAllocated,
    PaymentReceived,
)
from shared.ids import new_id
from tests.conftest import AppClient, auth
from tests.support.feed import publish
from tests.support.waiting import eventually

FINANCE = auth("finance", "controller")
DAY = date(2022, 6, 14)


async def received_with_pending(db: str, customer: UUID, order: UUID) -> tuple[UUID, UUID]:
    payment, allocation = new_id(), new_id()
    await publish(
        db,
        [
            (
                PaymentReceived(
                    payment_id=payment,
                    number=f"PAY-P-{str(payment)[:8]}",
                    customer_id=customer,
                    amount=Decimal("30.00"),
                    method="cash",
                    received_at=datetime(DAY.year, DAY.month, DAY.day, 2, tzinfo=UTC),
                    business_date=DAY,
                    reference=None,
                    allocations=[
                        AllocationState(
                            allocation_id=allocation,
                            order_id=order,
                            amount=Decimal("30.00"),
                            status="pending",
                        )
                    ],
                ),
                "payments",
                str(customer),
                DAY,
            )
        ],
    )
    return payment, allocation


def pending_released(
    allocation: UUID, payment: UUID, customer: UUID, order: UUID, amount: str, reason: str
) -> tuple[AllocationReleased, str, str, date]:
    """A pending allocation given up, as the payments service publishes it."""
    released = AllocationReleased(
        allocation_id=allocation,
        payment_id=payment,
        customer_id=customer,
        order_id=order,
        amount=Decimal(amount),
        was_applied=False,
        reason=reason,
        business_date=DAY,
    )
    return released, "payments", str(customer), DAY


async def pending_in(client: httpx.AsyncClient, period: str) -> list[dict]:
    response = await client.get(f"/v1/closing/periods/{period}/reconciliation", headers=FINANCE)
    assert response.status_code == 200, response.text
    return response.json()["pending_allocations"]


def ids(rows: list[dict]) -> set[str]:
    return {r["allocation_id"] for r in rows}


async def test_pending_allocations_are_reported_after_the_setting_until_resolved(
    app_client: AppClient, migrated: str, settings: Settings
) -> None:
    customer, order, other_order = new_id(), new_id(), new_id()
    payment, allocation = await received_with_pending(migrated, customer, order)
    second_payment, second = await received_with_pending(migrated, customer, other_order)
    at_once = settings.model_copy(update={"pending_allocation_report_after_seconds": 0})
    async with app_client([service_module("closing")], settings_override=at_once) as client:
        listed = await eventually(
            lambda: pending_in(client, "2022-06"),
            lambda rows: {str(allocation), str(second)} <= ids(rows),
        )
        mine = next(r for r in listed if r["allocation_id"] == str(allocation))
        assert mine["order_id"] == str(order) and mine["amount"] == "30.00"
        assert mine["payment_id"] == str(payment)
        assert str(allocation) in ids(await pending_in(client, "2022-09"))  # still pending then
        assert str(allocation) not in ids(await pending_in(client, "2022-05"))  # not yet made
    # With the default of a day, an allocation pending for a moment is not an exception yet.
    async with app_client([service_module("closing")]) as client:
        assert not {str(allocation), str(second)} & ids(await pending_in(client, "2022-06"))
    await publish(
        migrated,
        [
            (
                PaymentAllocated(
                    allocation_id=allocation,
                    payment_id=payment,
                    payment_number="PAY-P",
                    customer_id=customer,
                    order_id=order,
                    amount=Decimal("30.00"),
                    business_date=DAY,
                ),
                "payments",
                str(customer),
                DAY,
            ),
            pending_released(
                second,
                second_payment,
                customer,
                other_order,
                "30.00",
                "the order belongs to another customer",
            ),
        ],
    )
    async with app_client([service_module("closing")], settings_override=at_once) as client:
        await eventually(
            lambda: pending_in(client, "2022-06"),
            lambda rows: not {str(allocation), str(second)} & ids(rows),
        )


async def test_a_pending_allocation_made_after_the_payment_is_reported(
    app_client: AppClient, migrated: str, settings: Settings
) -> None:
    """Through the payments service: credit allocated later to an order it does not know."""
    from tests.closing.test_close_protocol import customer as known_customer

    customer = await known_customer(migrated)
    never_arrives = new_id()
    at_once = settings.model_copy(update={"pending_allocation_report_after_seconds": 0})
    modules = [service_module("payments"), service_module("closing")]
    async with app_client(modules, settings_override=at_once) as client:
        paid = await client.post(
            "/v1/payments",
            json={"customer_id": str(customer), "amount": "40.00", "method": "cash"},
            headers=auth("pos"),
        )
        assert paid.status_code == 201, paid.text
        allocated = await client.post(
            f"/v1/payments/{paid.json()['id']}/allocations",
            json={"order_id": str(never_arrives), "amount": "15.00"},
            headers=auth("pos"),
        )
        assert allocated.status_code in (200, 201), allocated.text
        pending = next(a for a in allocated.json()["allocations"] if a["status"] == "pending")
        period = paid.json()["period"]
        listed = await eventually(
            lambda: pending_in(client, period),
            lambda rows: pending["id"] in ids(rows),
        )
        row = next(r for r in listed if r["allocation_id"] == pending["id"])
        assert (row["order_id"], row["amount"]) == (str(never_arrives), "15.00")
        assert row["payment_number"] == paid.json()["number"]


async def test_a_pending_allocation_whose_order_ended_is_a_failed_allocation(
    app_client: AppClient, migrated: str
) -> None:
    """An allocation waiting for an order that was then cancelled or rejected failed its check
    and is reported; one a refund took back was ordinary business and is not."""
    customer, payment = new_id(), new_id()
    releases = {reason: (new_id(), new_id()) for reason in ("order cancelled", "order rejected")}
    releases["refund"] = (new_id(), new_id())
    await publish(
        migrated,
        [
            pending_released(allocation, payment, customer, order, "12.30", reason)
            for reason, (allocation, order) in releases.items()
        ],
    )
    async with app_client([service_module("closing")]) as client:

        async def failed() -> list[dict]:
            answer = await client.get("/v1/closing/periods/2022-06/reconciliation", headers=FINANCE)
            assert answer.status_code == 200, answer.text
            return [
                f for f in answer.json()["failed_allocations"] if f["customer_id"] == str(customer)
            ]

        listed = await eventually(failed, lambda rows: len(rows) >= 2)
    assert sorted((f["document"], f["amount"]) for f in listed) == sorted(
        (str(order), "12.30") for reason, (_, order) in releases.items() if reason != "refund"
    )
