"""How a payment waits for its customer to reach this service's replica of customers.

The replica is fed by the `payments.orders` subscription. A POS may create a customer and take
a payment from them a moment later, before the replica has applied the customer's event, so
an unknown customer is refused (422) only once the replica has applied everything the orders
source had committed when the payment arrived. Until then the payment waits, not polling but
woken by the subscription after each batch it commits, for at most a short bound.

On the postgres transport "caught up" is read from the replica's position in the orders
outbox; on kafka the position is the broker's, so there the wait always runs to the bound or
to the customer's arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.domain import ORDER_PROGRESS, later_status
from services.payments.models import SCHEMA, KnownCustomer, KnownOrder
from shared.bulk import insert_rows
from shared.events.envelope import Event
from shared.tables import common_tables, table_of

SUBSCRIPTION = "payments.orders"
SOURCE = "orders"
# Long enough for a replica that is merely behind, short enough for a till to wait on.
WAIT_SECONDS = 5.0
# How long a payment with allocations waits for the replica to reach the customer's orders.
ORDERS_WAIT_SECONDS = 2.0
# How often a waiting payment looks again without being woken.
LOOK_AGAIN_SECONDS = 0.25


class ReplicaProgress:
    """Wakes every payment waiting on the replica when the subscription commits a batch.

    One per process: apps of several databases in one process share it, and a waiter woken by
    another database's batch only looks again."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()
        self.waits = 0  # how many waits payments began (each a slice of theirs); for tests

    def advanced(self) -> None:
        for waiter in list(self._waiters):
            # A waiter may belong to another event loop (one per test, say), or to one gone.
            with contextlib.suppress(RuntimeError):
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    @contextlib.contextmanager
    def watch(self) -> Iterator[asyncio.Future[None]]:
        """A future set by the next batch; taken before looking, so no batch is missed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            yield waiter
        finally:
            self._waiters.discard(waiter)

    async def wait(self, waiter: asyncio.Future[None], seconds: float) -> bool:
        """True when woken by a batch, False when `seconds` passed first."""
        self.waits += 1
        try:
            async with asyncio.timeout(seconds):  # never swallows a cancellation, as wait_for can
                await waiter
        except TimeoutError:
            return False
        return True


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


progress = ReplicaProgress()


async def source_head(session: AsyncSession) -> int:
    """The newest committed position of the orders outbox (ids are taken in commit order)."""
    outbox = common_tables(SOURCE).outbox
    return (await session.execute(select(func.coalesce(func.max(outbox.c.id), 0)))).scalar_one()


async def replica_position(session: AsyncSession) -> int:
    """How far the replica has applied the orders outbox, as committed with its effects."""
    offsets = common_tables(SCHEMA).consumer_offsets
    return (
        await session.execute(
            select(func.coalesce(func.max(offsets.c.position), 0)).where(
                offsets.c.consumer == SUBSCRIPTION, offsets.c.source == SOURCE
            )
        )
    ).scalar_one()


ORDER_STATUSES = {
    "order.submitted": "submitted",
    "order.confirmed": "confirmed",
    "order.fulfilled": "fulfilled",
    "order.rejected": "rejected",
    "order.cancelled": "cancelled",
}


def order_id_of(event: Event) -> UUID:
    data = event.data
    return UUID(data["order"]["order_id"] if "order" in data else data["order_id"])


async def project(session: AsyncSession, events: list[Event]) -> None:
    """Apply a batch's customers and orders to the replica set-wise (handlers.on_event applies
    an order with allocations through it too, a batch of one event at a time, before what the
    event does to the allocations). Events may come out of order (one published again
    after a broker lost it comes after newer ones): an order's status only moves forward
    (domain.ORDER_PROGRESS), and an event of an order the replica does not hold yet holds a
    row for it, which the submission or confirmation fills in when it comes."""
    customers: dict[UUID, str] = {}
    orders = [e for e in events if e.type.startswith("order.")]
    for event in events:
        if event.type in ("customer.created", "customer.updated"):
            customers[UUID(event.data["customer_id"])] = event.data["name"]
    if customers:
        await insert_rows(
            session,
            table_of(KnownCustomer),
            [{"customer_id": c, "name": n} for c, n in sorted(customers.items())],
            suffix="ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name",
        )
    if not orders:
        return
    table = table_of(KnownOrder)
    ids = sorted({order_id_of(e) for e in orders})
    held = set(
        (await session.execute(select(table.c.order_id).where(table.c.order_id.in_(ids))))
        .scalars()
        .all()
    )
    new: dict[UUID, dict[str, Any]] = {}
    changed: dict[UUID, dict[str, Any]] = {}
    for event in orders:
        order_id = order_id_of(event)
        status = ORDER_STATUSES.get(event.type)
        if event.type == "order.returned":
            status = "confirmed"  # a credit note is only ever issued against an invoice
        elif status is None:
            continue  # an approval: nothing the replica keeps
        row = new.get(order_id)
        if row is None and order_id in held:
            row = changed.setdefault(order_id, _no_change())
        if row is None:
            row = new[order_id] = _held_for(event, order_id)
        row["status"] = status if row["status"] is None else later_status(row["status"], status)
        if event.type in ("order.submitted", "order.confirmed"):
            facts = event.data["order"]
            row["gross"] = _amount(facts.get("gross"), "order.gross")
            row["number"] = facts["number"]
        elif event.type == "order.returned":
            row["credited"] += _amount(event.data.get("gross"), "gross")
    await insert_rows(
        session,
        table,
        [{**new[i], "gross": new[i]["gross"] or ZERO} for i in sorted(new)],
        suffix="ON CONFLICT DO NOTHING",
    )
    if changed:
        rows = sorted(changed.items())
        await session.execute(
            _CHANGE_ORDERS,
            {
                "ids": [i for i, _ in rows],
                "statuses": [c["status"] for _, c in rows],
                "grosses": [c["gross"] for _, c in rows],
                "numbers": [c["number"] for _, c in rows],
                "credited": [c["credited"] for _, c in rows],
            },
        )


def _held_for(event: Event, order_id: UUID) -> dict[str, Any]:
    """A new row for an order the replica does not hold, from the first of its events that
    came; what that event does not tell (its gross) waits for its submission."""
    data = event.data
    facts = data.get("order", data)
    return {
        "order_id": order_id,
        "customer_id": UUID(facts["customer_id"]),
        "number": facts.get("number") or "",
        "status": None,
        "gross": None,
        "credited": ZERO,
        "applied": ZERO,
    }


def _no_change() -> dict[str, Any]:
    return {"status": None, "gross": None, "number": None, "credited": Decimal("0.00")}


ZERO = Decimal("0.00")


def _amount(raw: Any, field: str) -> Decimal:
    """An amount of an event's data, read as it was written; a stuck subscription's error
    names the field when it is not one."""
    try:
        value = Decimal(raw)
    except (TypeError, ValueError, InvalidOperation):
        raise ValueError(f"{field} is not an amount: {raw!r}") from None
    if not value.is_finite():
        raise ValueError(f"{field} is not an amount: {raw!r}")
    return value


_PROGRESS_OF = "CASE {} " + " ".join(f"WHEN '{s}' THEN {r}" for s, r in ORDER_PROGRESS.items())
_PROGRESS_OF += " ELSE 0 END"
_CHANGE_ORDERS = text(
    f"""
    UPDATE {SCHEMA}.known_orders AS o
       SET status = CASE WHEN {_PROGRESS_OF.format("c.status")} > {_PROGRESS_OF.format("o.status")}
                         THEN c.status ELSE o.status END,
           gross = COALESCE(c.gross, o.gross), number = COALESCE(c.number, o.number),
           credited = o.credited + c.credited
      FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]),
                  CAST(:grosses AS numeric[]), CAST(:numbers AS text[]),
                  CAST(:credited AS numeric[]))
           AS c(order_id, status, gross, number, credited)
     WHERE o.order_id = c.order_id
    """
)


async def count_applied(session: AsyncSession) -> None:
    """What each order has applied to it, from the allocations themselves: after a rebuild
    of the replica from order events, which do not carry it."""
    await session.execute(
        text(
            f"""
            UPDATE {SCHEMA}.known_orders AS o SET applied = a.applied
              FROM (SELECT order_id, sum(amount) AS applied FROM {SCHEMA}.allocations
                     WHERE status = 'applied' GROUP BY order_id) a
             WHERE o.order_id = a.order_id
            """
        )
    )
