"""A source's half of the close protocol: lock the period and report its control totals.

Orders and payments both answer `period.close_requested` with `apply_cutoff`, and
`period.reopened` or `period.close_aborted` with `lift_cutoff`; each passes its own lock
table, its totals query and the periods in which it holds documents.

Race with the close: every document takes its period's advisory lock shared
(`hold_period`) before checking the lock table and holds it until commit; the cutoff takes
it exclusively, so it waits for documents already being written into the period, and every
later document sees the lock row. No document slips in after the cutoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.closing import CONTROL_KEY, ControlTotal, PeriodCloseRequested, PeriodCutoff
from shared.events.envelope import Event
from shared.messaging.consumer import Subscription, one_by_one
from shared.messaging.outbox import emit

ControlTotals = Callable[[AsyncSession, str], Awaitable[dict[str, ControlTotal]]]
DocumentPeriods = Callable[[AsyncSession, str], Awaitable[list[str]]]


async def apply_cutoff(
    session: AsyncSession,
    *,
    schema: str,
    locks: Table,
    period: str,
    close_id: UUID,
    totals_of: ControlTotals,
    periods_before: DocumentPeriods,
) -> None:
    """Lock `period` at this source and emit `period.cutoff`, in the caller's transaction.

    The exclusive advisory lock waits for every in-flight document of the period (writers
    hold it shared), so the totals counted here are final: later writers see the lock row.
    """
    await _advisory_lock(session, schema=schema, period=period, shared=False)
    now = datetime.now(UTC)
    locked = set((await session.execute(select(locks.c.period))).scalars())
    unlocked = sorted(set(await periods_before(session, period)) - locked)
    refused = None
    if unlocked:
        refused = f"{schema} holds documents in {unlocked[0]}, which is not closed; close it first"
    else:
        await session.execute(
            insert(locks).values(period=period, locked_at=now).on_conflict_do_nothing()
        )
    emit(
        session,
        PeriodCutoff(
            period=period,
            close_id=close_id,
            source=schema,
            control_totals={} if refused else await totals_of(session, period),
            locked_at=now,
            refused=refused,
        ),
        source=schema,
        key=CONTROL_KEY,
    )


async def lock_period(session: AsyncSession, *, schema: str, locks: Table, period: str) -> None:
    """Close `period` to new documents, after every document already being written into it."""
    await _advisory_lock(session, schema=schema, period=period, shared=False)
    await session.execute(
        insert(locks).values(period=period, locked_at=datetime.now(UTC)).on_conflict_do_nothing()
    )


async def hold_period(session: AsyncSession, *, schema: str, locks: Table, period: str) -> bool:
    """Keep a cutoff of `period` waiting until this transaction ends (a document is being
    written into it); whether the period is locked already."""
    await _advisory_lock(session, schema=schema, period=period, shared=True)
    found = await session.execute(select(locks.c.period).where(locks.c.period == period))
    return found.first() is not None


def period_lock_key(schema: str, period: str) -> str:
    """Advisory lock name guarding documents of one period in one service.

    Writers of documents hold it shared until commit; the close's cutoff takes it exclusively,
    so a cutoff never counts control totals while a document for that period is in flight.
    """
    return f"salesbook.period.{schema}.{period}"


async def _advisory_lock(session: AsyncSession, *, schema: str, period: str, shared: bool) -> None:
    lock = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
    await session.execute(select(lock(func.hashtext(period_lock_key(schema, period)))))


async def lift_cutoff(session: AsyncSession, *, locks: Table, period: str) -> None:
    """Unlock a reopened period (or one whose close was aborted)."""
    await session.execute(locks.delete().where(locks.c.period == period))


def cutoff_subscription(
    *, schema: str, locks: Table, totals_of: ControlTotals, periods_before: DocumentPeriods
) -> Subscription:
    """The source's subscription to the close's control events: answer a close request with
    the cutoff; unlock on reopen or abort."""

    async def on_closing_event(session: AsyncSession, event: Event) -> None:
        if event.type == "period.close_requested":
            request = PeriodCloseRequested.model_validate(event.data)
            await apply_cutoff(
                session,
                schema=schema,
                locks=locks,
                period=request.period,
                close_id=request.close_id,
                totals_of=totals_of,
                periods_before=periods_before,
            )
        elif event.type in ("period.reopened", "period.close_aborted"):
            await lift_cutoff(session, locks=locks, period=event.data["period"])

    return Subscription(
        name=f"{schema}.closing",
        schema=schema,
        sources=("closing",),
        handle=one_by_one(on_closing_event),
    )
