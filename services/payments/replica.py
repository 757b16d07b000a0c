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

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.models import SCHEMA
from shared.tables import common_tables

SUBSCRIPTION = "payments.orders"
SOURCE = "orders"
# Long enough for a replica that is merely behind, short enough for a till to wait on.
WAIT_SECONDS = 5.0


class ReplicaProgress:
    """Wakes every payment waiting on the replica when the subscription commits a batch.

    One per process: apps of several databases in one process share it, and a waiter woken by
    another database's batch only looks again."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()
        self.waits = 0  # how many times a payment had to wait; read by tests and metrics

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
            await asyncio.wait_for(waiter, seconds)
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
