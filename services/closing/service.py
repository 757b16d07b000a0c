"""The month-end close (结账): request, cutoffs from the sources, completion, reopen.

1. `request_close` marks the period `closing` and emits `period.close_requested`.
2. Orders and payments lock the period and answer with `period.cutoff` (control totals).
3. `try_complete` runs after every ledger batch: once both sources have answered and the
   ledger's document totals equal their control totals exactly, `complete` computes the
   balances, ageing, trial balance and chained hash, and emits `period.closed`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.closing.balances import write_closed_balances
from services.closing.domain import MOVES, PeriodOutOfOrder, check_begun, compare, may
from services.closing.domain import PeriodStatus as P
from services.closing.hashing import BALANCE_FIELDS, stored_period_hash
from services.closing.models import (
    SCHEMA,
    CustomerActivity,
    DocumentTotal,
    Period,
    PeriodVersion,
)
from shared import periods
from shared.audit import record_audit
from shared.auth import Actor, Role
from shared.errors import Conflict
from shared.events.closing import (
    CONTROL_KEY,
    PeriodCloseAborted,
    PeriodClosed,
    PeriodCloseRequested,
    PeriodCutoff,
    PeriodReopened,
)
from shared.ids import new_id
from shared.messaging.outbox import emit
from shared.money import money_str

log = logging.getLogger("salesbook.closing.close")

LEDGER = Actor(subject="closing.ledger", role=Role.ADMIN)
"""Who the audit log names for what the ledger does by itself: completing a close."""

ZERO = Decimal("0.00")
# The subscriptions whose events a close waits for: the ledger, and each source's answer to
# the close request. One of them stuck on an event is the close's problem (SPEC §9).
CLOSE_SUBSCRIPTIONS = ("closing.ledger", "orders.closing", "payments.closing")


async def lock_period(session: AsyncSession, period: str) -> Period:
    """The period's row, created if needed, locked for the rest of the transaction."""
    await session.execute(
        text(
            "INSERT INTO closing.periods (period, status, version, control_totals) "
            "VALUES (:p, 'open', 0, '{}') ON CONFLICT DO NOTHING"
        ),
        {"p": period},
    )
    return (
        await session.execute(
            select(Period)
            .where(col(Period.period) == period)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def earliest_unclosed_before(session: AsyncSession, period: str) -> str | None:
    """The earliest period before `period` that holds documents and is not closed."""
    row = await session.execute(
        text(
            """
            SELECT min(x.period) FROM (
                SELECT period FROM closing.customer_activity WHERE period < :p
                UNION SELECT period FROM closing.document_totals WHERE period < :p
                UNION SELECT period FROM closing.periods WHERE period < :p AND status <> 'open'
            ) x LEFT JOIN closing.periods p USING (period)
            WHERE p.status IS DISTINCT FROM 'closed'
            """
        ),
        {"p": period},
    )
    return row.scalar_one()


async def request_close(*, session: AsyncSession, period: str, actor: Actor, today: date) -> Period:
    """Start closing a period; closing a closed period again changes nothing."""
    periods.Period.parse(period)
    check_begun(period, today)
    row = await lock_period(session, period)
    if not may("close", row.status):
        return row
    earlier = await earliest_unclosed_before(session, period)
    if earlier is not None:
        raise PeriodOutOfOrder(
            f"close {earlier} first: periods close in order and {earlier} holds documents",
            period=earlier,
        )
    row.status = P.CLOSING
    row.close_id = new_id()
    row.control_totals = {}
    row.problem = None
    row.requested_by = actor.subject
    row.requested_at = datetime.now(UTC)
    emit(
        session,
        PeriodCloseRequested(
            period=period,
            close_id=row.close_id,
            requested_by=actor.subject,
            requested_at=row.requested_at,
        ),
        source=SCHEMA,
        key=CONTROL_KEY,
    )
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="period.close_requested",
        entity="period",
        entity_id=period,
        details={"close_id": row.close_id},
    )
    return row


async def on_cutoff(session: AsyncSession, cutoff: PeriodCutoff) -> None:
    """Record a source's control totals for the close in progress (stale cutoffs are ignored);
    a source's refusal aborts the close and unlocks the period everywhere."""
    row = await lock_period(session, cutoff.period)
    if row.status != P.CLOSING or row.close_id != cutoff.close_id:
        return
    if cutoff.refused:
        await abort(session, row, reason=cutoff.refused)
        return
    totals = dict(row.control_totals or {})
    totals[cutoff.source] = {
        kind: {"count": t.count, "amount": money_str(t.amount)}
        for kind, t in cutoff.control_totals.items()
    }
    row.control_totals = totals


async def document_totals(session: AsyncSession, period: str) -> dict[str, dict[str, Any]]:
    rows = await session.execute(
        select(col(DocumentTotal.kind), col(DocumentTotal.count), col(DocumentTotal.amount)).where(
            col(DocumentTotal.period) == period
        )
    )
    return {kind: {"count": count, "amount": money_str(amount)} for kind, count, amount in rows}


async def abort(session: AsyncSession, row: Period, *, reason: str) -> None:
    """Give up a close that cannot complete; the period is open again and says why."""
    emit(
        session,
        PeriodCloseAborted(period=row.period, close_id=row.close_id, reason=reason),
        source=SCHEMA,
        key=CONTROL_KEY,
    )
    row.status = P.OPEN  # the sources unlock it on period.close_aborted
    row.close_id = None
    row.control_totals = {}
    row.problem = f"close aborted: {reason}"


async def try_complete(session: AsyncSession, period: str, *, closed_by: str | None = None) -> bool:
    """Complete the period's close if the ledger now matches every control total."""
    row = await lock_period(session, period)
    if not may("complete", row.status):
        return False
    state = compare(row.control_totals or {}, await document_totals(session, period))
    row.problem = "; ".join(state["impossible"]) or None
    if not state["complete"]:
        return False
    await complete(session, row, closed_by=closed_by or row.requested_by)
    return True


async def previous_closed(session: AsyncSession, period: str) -> Period | None:
    return (
        await session.execute(
            select(Period)
            .where(col(Period.period) < period, col(Period.status) == P.CLOSED)
            .order_by(col(Period.period).desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def complete(session: AsyncSession, row: Period, *, closed_by: str | None) -> None:
    """Compute and store the closed period: balances, ageing, trial balance, hash; emit closed."""
    period = row.period
    version = row.version + 1
    previous = await previous_closed(session, period)
    steps = StepTimer()
    with steps("balances and ageing"):
        await write_closed_balances(
            session,
            period=period,
            version=version,
            end=periods.Period.parse(period).last_day,
            previous=(previous.period, previous.version) if previous else None,
        )
    with steps("hash"):
        digest = await stored_period_hash(
            session,
            period=period,
            version=version,
            previous_hash=previous.hash if previous else None,
        )
    with steps("totals"):
        trial = await trial_balance(session, period)
        totals = await balance_totals(session, period, version)
    log.info("period %s closed as version %d (%s)", period, version, steps)
    now = datetime.now(UTC)
    row.status = P.CLOSED
    row.version = version
    row.hash = digest
    row.closed_at = now
    row.totals = totals
    row.trial_balance = trial
    row.problem = None
    session.add(
        PeriodVersion(
            period=period,
            version=version,
            hash=digest,
            previous_hash=previous.hash if previous else None,
            closed_at=now,
            closed_by=closed_by,
            totals=totals,
            trial_balance=trial,
            control_totals=row.control_totals or {},
        )
    )
    emit(
        session,
        PeriodClosed(
            period=period,
            version=version,
            hash=digest,
            closed_at=now,
            customers=totals["customers"],
            closing_total=Decimal(totals["closing"]),
        ),
        source=SCHEMA,
        key=CONTROL_KEY,
    )
    # The ledger completes a close, not a person: the entry names who asked for it.
    await record_audit(
        session,
        schema=SCHEMA,
        actor=LEDGER,
        action="period.closed",
        entity="period",
        entity_id=period,
        details={
            "version": version,
            "hash": digest,
            "requested_by": closed_by,
            "customers": totals["customers"],
            "closing": totals["closing"],
        },
    )


class StepTimer:
    """Wall time of each named step of a long operation, for its log line."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - started

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.seconds.items())


async def balance_totals(session: AsyncSession, period: str, version: int) -> dict[str, Any]:
    """Each balance column summed over a version's customers, and how many there are."""
    sums = ", ".join(f"COALESCE(SUM({f}), 0) AS {f}" for f in BALANCE_FIELDS)
    row = (
        await session.execute(
            text(
                f"SELECT {sums}, count(*) AS customers FROM closing.closed_balances "
                "WHERE period = :period AND version = :version"
            ),
            {"period": period, "version": version},
        )
    ).one()
    totals: dict[str, Any] = {f: money_str(getattr(row, f)) for f in BALANCE_FIELDS}
    totals["customers"] = row.customers
    return totals


async def trial_balance(session: AsyncSession, period: str) -> list[dict[str, str]]:
    """Debit and credit totals per account posted into the period; ar:* accounts summed."""
    rows = await session.execute(
        text(
            """
            SELECT CASE WHEN account LIKE 'ar:%' THEN 'accounts_receivable' ELSE account END,
                   SUM(debit) AS debit, SUM(credit) AS credit
              FROM closing.account_totals WHERE period = :p
             GROUP BY 1 ORDER BY 1
            """
        ),
        {"p": period},
    )
    return [{"account": a, "debit": money_str(d), "credit": money_str(c)} for a, d, c in rows]


async def reopen(*, session: AsyncSession, period: str, reason: str, actor: Actor) -> Period:
    """Reopen a closed period: the close is kept as a version, later closed periods go stale."""
    periods.Period.parse(period)
    row = await lock_period(session, period)
    if not may("reopen", row.status):
        raise Conflict(f"period {period} is {row.status}; only a closed period can be reopened")
    now = datetime.now(UTC)
    await session.execute(
        update(PeriodVersion)
        .where(col(PeriodVersion.period) == period, col(PeriodVersion.version) == row.version)
        .values(reopened_at=now, reopened_by=actor.subject, reopen_reason=reason)
    )
    row.status = P.OPEN
    # What the close found is its version's now: the open month shows none of it.
    row.hash = None
    row.close_id = None
    row.control_totals = {}
    row.totals = None
    row.closed_at = None
    await session.execute(
        update(Period)
        .where(col(Period.period) > period, col(Period.status).in_(MOVES["stale"][0]))
        .values(status=P.STALE)
    )
    emit(
        session,
        PeriodReopened(
            period=period,
            version=row.version,
            reason=reason,
            reopened_by=actor.subject,
            reopened_at=now,
        ),
        source=SCHEMA,
        key=CONTROL_KEY,
    )
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="period.reopened",
        entity="period",
        entity_id=period,
        details={"reason": reason, "version": row.version},
    )
    return row


async def closing_periods(session: AsyncSession) -> list[str]:
    rows = await session.execute(
        select(col(Period.period))
        .where(col(Period.status) == P.CLOSING)
        .order_by(col(Period.period))
    )
    return list(rows.scalars())


async def activity_periods(session: AsyncSession) -> list[str]:
    rows = await session.execute(select(col(CustomerActivity.period)).distinct())
    return list(rows.scalars())
