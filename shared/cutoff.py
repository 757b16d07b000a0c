"""A source's half of the close protocol: lock the period and report its control totals.

Orders and payments both answer `period.close_requested` with `apply_cutoff`, and
`period.reopened` or `period.close_aborted` with `lift_cutoff`; each passes its own
`PeriodGuard` (its lock tables), its totals query and the periods in which it holds
documents.

Periods close in order, so a lock closes the months before it too: a document dated into
an earlier period than a locked one is refused (the earlier month held no documents when the
later one closed, or that close would have been refused; a document now would change a
balance the later close carried forward). A period the close reopened is the exception: the
periods after it are stale and will be closed again from its new balances.

Race with the close: every document takes its period's advisory lock shared, and one
back-dated into a month before today's its source's lock too (`hold_period`, `held`), before
checking the lock tables, and holds them until commit; the cutoff takes both exclusively, so
it waits for documents already being written into the period or any earlier one (and counts
them, or refuses the close for them), and every later document sees the lock row. No
document slips in after the cutoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.audit import record_audit
from shared.auth import Actor, Role
from shared.events.closing import CONTROL_KEY, ControlTotal, PeriodCloseRequested, PeriodCutoff
from shared.events.envelope import Event
from shared.messaging.consumer import Subscription, one_by_one
from shared.messaging.outbox import emit
from shared.periods import Period

ControlTotals = Callable[[AsyncSession, str], Awaitable[dict[str, ControlTotal]]]
DocumentPeriods = Callable[[AsyncSession, str], Awaitable[list[str]]]


@dataclass(frozen=True)
class PeriodGuard:
    """A source's locks on periods: its schema (which names its advisory locks), its table of
    locked periods and its table of reopened ones."""

    schema: str
    locks: Table
    reopened: Table


async def apply_cutoff(
    session: AsyncSession,
    guard: PeriodGuard,
    *,
    period: str,
    close_id: UUID,
    totals_of: ControlTotals,
    periods_before: DocumentPeriods,
) -> PeriodCutoff:
    """Lock `period` at this source and emit `period.cutoff` (returned), in the caller's
    transaction.

    The exclusive advisory locks wait for every in-flight document of the period or an
    earlier one (writers hold them shared), so the totals counted here are final and the
    check of earlier periods sees every document: later writers see the lock row.
    """
    await _cut_off_locks(session, guard.schema, period)
    now = datetime.now(UTC)
    locked = set((await session.execute(select(guard.locks.c.period))).scalars())
    unlocked = sorted(set(await periods_before(session, period)) - locked)
    refused = None
    if unlocked:
        refused = (
            f"{guard.schema} holds documents in {unlocked[0]}, which is not closed; close it first"
        )
    else:
        await _lock(session, guard, period, now)
    cutoff = PeriodCutoff(
        period=period,
        close_id=close_id,
        source=guard.schema,
        control_totals={} if refused else await totals_of(session, period),
        locked_at=now,
        refused=refused,
    )
    emit(session, cutoff, source=guard.schema, key=CONTROL_KEY)
    return cutoff


async def lock_period(session: AsyncSession, guard: PeriodGuard, period: str) -> None:
    """Close `period` to new documents, after every document already being written into it."""
    await _cut_off_locks(session, guard.schema, period)
    await _lock(session, guard, period, datetime.now(UTC))


async def _lock(session: AsyncSession, guard: PeriodGuard, period: str, now: datetime) -> None:
    """Lock `period`; the months before it that were reopened are closed with it again (their
    corrections are in, or they stayed empty). Its own mark stays: should this close be
    aborted, the month is open for corrections as before."""
    await session.execute(
        insert(guard.locks).values(period=period, locked_at=now).on_conflict_do_nothing()
    )
    await session.execute(guard.reopened.delete().where(guard.reopened.c.period < period))


async def hold_period(
    session: AsyncSession, guard: PeriodGuard, period: str, *, today: date
) -> str | None:
    """Keep a cutoff of `period`, or of any later period, waiting until this transaction ends
    (a document is being written into `period` on `today`, the business date); the locked
    period that closes `period` to documents already (itself, or a later one unless `period`
    was reopened), if any."""
    await session.execute(
        select(
            *(
                func.pg_advisory_xact_lock_shared(func.hashtext(k))
                for k in held(guard.schema, period, today)
            )
        )
    )
    locks, reopened = guard.locks, guard.reopened
    later, itself, was_reopened = (
        await session.execute(
            select(
                select(func.max(locks.c.period)).where(locks.c.period > period).scalar_subquery(),
                select(locks.c.period).where(locks.c.period == period).exists(),
                select(reopened.c.period).where(reopened.c.period == period).exists(),
            )
        )
    ).one()
    if itself:
        return period
    return later if later is not None and not was_reopened else None


def period_lock_key(schema: str, period: str) -> str:
    """Advisory lock name guarding documents of one period in one service.

    Writers of documents hold it shared until commit; the close's cutoff takes it exclusively,
    so a cutoff never counts control totals while a document for that period is in flight.
    """
    return f"salesbook.period.{schema}.{period}"


def source_lock_key(schema: str) -> str:
    """Advisory lock name guarding documents of every period in one service: writers hold it
    shared, a cutoff exclusively, so a cutoff also waits for a document being dated into an
    earlier period (which its check of earlier periods then sees)."""
    return f"salesbook.period.{schema}"


def held(schema: str, period: str, today: date) -> list[str]:
    """The advisory locks a document dated into `period` on `today` holds shared: its period's,
    and its source's first when it is back-dated into a month before today's (a cutoff is only
    ever taken of a month that has begun, so only such a document can fall before the month
    being cut off; one dated into today's month does not wait on every cutoff)."""
    keys = [period_lock_key(schema, period)]
    if period < str(Period.of(today)):
        keys.insert(0, source_lock_key(schema))  # always the source's first
    return keys


async def _cut_off_locks(session: AsyncSession, schema: str, period: str) -> None:
    keys = (source_lock_key(schema), period_lock_key(schema, period))
    await session.execute(select(*(func.pg_advisory_xact_lock(func.hashtext(k)) for k in keys)))


async def lift_cutoff(
    session: AsyncSession, guard: PeriodGuard, period: str, *, reopening: bool
) -> bool:
    """Unlock a period whose close was aborted or, with `reopening`, that was reopened: a
    reopened period takes documents though later periods stay locked. Whether this source
    had it locked (one that refused the cutoff had not)."""
    lifted = await session.execute(
        guard.locks.delete().where(guard.locks.c.period == period).returning(guard.locks.c.period)
    )
    was_locked = lifted.first() is not None
    if reopening:
        await session.execute(
            insert(guard.reopened)
            .values(period=period, reopened_at=datetime.now(UTC))
            .on_conflict_do_nothing()
        )
    return was_locked


def cutoff_subscription(
    guard: PeriodGuard,
    *,
    totals_of: ControlTotals,
    periods_before: DocumentPeriods,
    before_cutoff: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> Subscription:
    """The source's subscription to the close's control events: answer a close request with
    the cutoff (after `before_cutoff`, which may wait for what the source still has to do
    for the period); unlock on reopen or abort."""

    name = f"{guard.schema}.closing"
    # Who the audit log names for the locks this subscription takes and lifts.
    actor = Actor(subject=name, role=Role.ADMIN)

    async def on_closing_event(session: AsyncSession, event: Event) -> None:
        if event.type == "period.close_requested":
            request = event.payload_as(PeriodCloseRequested)
            if before_cutoff is not None:
                await before_cutoff(session)
            cutoff = await apply_cutoff(
                session,
                guard,
                period=request.period,
                close_id=request.close_id,
                totals_of=totals_of,
                periods_before=periods_before,
            )
            details: dict[str, Any] = {"close_id": cutoff.close_id}
            if cutoff.refused:
                details["refused"] = cutoff.refused
            else:
                details["control_totals"] = cutoff.model_dump(mode="json")["control_totals"]
            action = "period.cutoff_refused" if cutoff.refused else "period.locked"
        elif event.type in ("period.reopened", "period.close_aborted"):
            reopening = event.type == "period.reopened"
            if not await lift_cutoff(session, guard, event.data["period"], reopening=reopening):
                return  # nothing was locked here: nothing changed
            action, details = "period.unlocked", {"because": event.type}
            details |= {k: event.data[k] for k in ("close_id", "reason") if k in event.data}
        else:
            return
        await record_audit(
            session,
            schema=guard.schema,
            actor=actor,
            action=action,
            entity="period",
            entity_id=event.data["period"],
            details=details,
        )

    return Subscription(
        name=name,
        schema=guard.schema,
        sources=("closing",),
        handle=one_by_one(on_closing_event),
    )
