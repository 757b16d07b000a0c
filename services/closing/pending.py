"""Allocations left pending: a payment allocated to an order the payments service had not
seen. Closing follows each from `payment.allocation_pending` (or, for payments recorded
before that event existed, the `pending` state in `payment.received`'s allocations) until
`payment.allocated` applies it or `payment.allocation_released` gives it up, so the period
reconciliation can report the ones still pending after
`pending_allocation_report_after_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.closing.models import PendingAllocation
from shared.bulk import insert_rows
from shared.events.envelope import Event, EventPayload
from shared.events.payments import (
    AllocationPending,
    AllocationReleased,
    PaymentAllocated,
    PaymentReceived,
)
from shared.money import money_str
from shared.tables import table_of


@dataclass
class PendingChanges:
    """A batch's new pending allocations and what resolved pending ones, in event order."""

    added: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    resolved: dict[UUID, tuple[datetime, str]] = field(default_factory=dict)


def released_allocation(release: AllocationReleased) -> UUID | None:
    """The pending allocation a release gives up, if it gave up a pending one entirely (a
    release names the allocation it reduces; part of one may stay pending)."""
    if release.was_applied or (release.remaining is not None and release.remaining > 0):
        return None
    return release.allocation_id


def track(changes: PendingChanges, event: Event, payload: EventPayload) -> None:
    match payload:
        case PaymentReceived() as pay:
            for state in pay.allocations:
                if state.status == "pending":
                    changes.added[state.allocation_id] = {
                        "allocation_id": state.allocation_id,
                        "payment_id": pay.payment_id,
                        "payment_number": pay.number,
                        "customer_id": pay.customer_id,
                        "order_id": state.order_id,
                        "amount": state.amount,
                        "business_date": pay.business_date,
                        "pending_since": event.occurred_at,
                    }
        case AllocationPending() as pending:
            changes.added[pending.allocation_id] = {
                "allocation_id": pending.allocation_id,
                "payment_id": pending.payment_id,
                "payment_number": pending.payment_number,
                "customer_id": pending.customer_id,
                "order_id": pending.order_id,
                "amount": pending.amount,
                "business_date": pending.business_date,
                "pending_since": pending.created_at,
            }
        case PaymentAllocated() as alloc:
            changes.resolved[alloc.allocation_id] = (event.occurred_at, "applied")
        case AllocationReleased() as rel:
            allocation = released_allocation(rel)
            if allocation is not None:
                changes.resolved[allocation] = (event.occurred_at, f"released: {rel.reason}")


async def flush_pending(session: AsyncSession, changes: PendingChanges) -> None:
    await insert_rows(
        session,
        table_of(PendingAllocation),
        list(changes.added.values()),
        suffix="ON CONFLICT DO NOTHING",
    )
    if not changes.resolved:
        return
    resolved = sorted(changes.resolved.items())
    await session.execute(
        _RESOLVE,
        {
            "ids": [allocation_id for allocation_id, _ in resolved],
            "ats": [at for _, (at, _) in resolved],
            "whys": [why[:200] for _, (_, why) in resolved],
        },
    )


_RESOLVE = text(
    """
    UPDATE closing.pending_allocations AS p SET resolved_at = r.at, resolution = r.why
      FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[]), CAST(:whys AS text[]))
           AS r(id, at, why)
     WHERE p.allocation_id = r.id AND p.resolved_at IS NULL
    """
)


async def overdue_pending(
    session: AsyncSession, *, end: date, now: datetime, report_after: timedelta
) -> list[dict[str, Any]]:
    """Allocations dated up to `end` still pending, and pending for longer than `report_after`."""
    rows = await session.execute(
        text(
            """
            SELECT allocation_id, payment_id, payment_number, customer_id, order_id, amount,
                   business_date, pending_since
              FROM closing.pending_allocations
             WHERE resolved_at IS NULL AND business_date <= :end AND pending_since < :before
             ORDER BY pending_since, allocation_id
            """
        ),
        {"end": end, "before": now - report_after},
    )
    return [
        {
            "allocation_id": r.allocation_id,
            "payment_id": r.payment_id,
            "payment_number": r.payment_number,
            "customer_id": r.customer_id,
            "order_id": r.order_id,
            "amount": money_str(Decimal(r.amount)),
            "business_date": r.business_date,
            "pending_since": r.pending_since,
            "pending_seconds": int((now - r.pending_since).total_seconds()),
        }
        for r in rows
    ]
