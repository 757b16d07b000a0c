"""What finance reads from the closing service: periods, balances, trial balance,
reconciliation exceptions, versions and their diffs, statements sent, and the verification
of a closed period."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.closing.domain import compare
from services.closing.hashing import BALANCE_FIELDS, period_hash
from services.closing.models import (
    ClosedBalance,
    CustomerActivity,
    Period,
    PeriodVersion,
    ReconciliationException,
    Statement,
)
from services.closing.pending import overdue_pending
from services.closing.schemas import Ageing, BalanceRow, PeriodPublic, TrialBalance, VersionPublic
from services.closing.service import document_totals
from shared import ageing, periods
from shared.errors import Conflict, NotFound
from shared.money import money_str

ZERO = Decimal("0.00")


async def read_period(session: AsyncSession, period: str) -> Period:
    """The period's row, or an open one if nothing has happened to it yet."""
    periods.Period.parse(period)
    row = await session.get(Period, period)
    return row or Period(period=period, status="open", version=0, control_totals={})


async def period_public(
    session: AsyncSession, row: Period, *, stuck: str | None = None
) -> PeriodPublic:
    """The period as shown; `stuck` names the stuck events a close in progress waits for."""
    progress = None
    if row.status == "closing":
        arrived = await document_totals(session, row.period)
        state = compare(row.control_totals or {}, arrived)
        progress = {
            "expected": row.control_totals or {},
            "arrived": arrived,
            "waiting_for_cutoff": state["waiting_for_cutoff"],
            "mismatches": state["mismatches"],
        }
    return PeriodPublic(
        period=row.period,
        status=row.status,
        version=row.version,
        close_id=row.close_id,
        totals=row.totals,
        control_totals=row.control_totals or {},
        progress=progress,
        problem=(stuck if row.status == "closing" and stuck else row.problem),
        hash=row.hash,
        closed_at=row.closed_at,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
    )


async def list_periods(session: AsyncSession) -> list[Period]:
    known = {p.period: p for p in (await session.execute(select(Period))).scalars()}
    active = await session.execute(select(col(CustomerActivity.period)).distinct())
    for period in active.scalars():
        known.setdefault(period, Period(period=period, status="open", version=0, control_totals={}))
    return [known[p] for p in sorted(known)]


def balance_row(b: ClosedBalance) -> BalanceRow:
    return BalanceRow(
        customer_id=b.customer_id,
        opening=b.opening,
        invoiced=b.invoiced,
        returned=b.returned,
        received=b.received,
        refunded=b.refunded,
        closing=b.closing,
        ageing=Ageing(
            current=b.current, d1_30=b.d1_30, d31_60=b.d31_60, d61_90=b.d61_90, over_90=b.over_90
        ),
    )


async def closed_version(session: AsyncSession, period: str, version: int | None) -> int:
    row = await read_period(session, period)
    if version is None:
        if row.status != "closed":
            raise Conflict(
                f"period {period} is {row.status}; its balances exist once it is closed",
                status_of_period=row.status,
            )
        return row.version
    exists = await session.get(PeriodVersion, (period, version))
    if exists is None:
        raise NotFound(f"period {period} has no version {version}")
    return version


async def balances(
    session: AsyncSession,
    *,
    period: str,
    version: int | None,
    customer_id: UUID | None,
    min_closing: Decimal | None,
    overdue_only: bool,
    after: UUID | None,
    limit: int,
) -> list[ClosedBalance]:
    version = await closed_version(session, period, version)
    query = (
        select(ClosedBalance)
        .where(col(ClosedBalance.period) == period, col(ClosedBalance.version) == version)
        .order_by(col(ClosedBalance.customer_id))
        .limit(limit + 1)
    )
    if customer_id:
        query = query.where(col(ClosedBalance.customer_id) == customer_id)
    if min_closing is not None:
        query = query.where(col(ClosedBalance.closing) >= min_closing)
    if overdue_only:
        query = query.where(
            col(ClosedBalance.d1_30)
            + col(ClosedBalance.d31_60)
            + col(ClosedBalance.d61_90)
            + col(ClosedBalance.over_90)
            > 0
        )
    if after:
        query = query.where(col(ClosedBalance.customer_id) > after)
    return list((await session.execute(query)).scalars())


async def trial_balance_of(session: AsyncSession, period: str) -> TrialBalance:
    from services.closing.service import trial_balance

    row = await read_period(session, period)
    lines = (
        row.trial_balance
        if row.status == "closed" and row.trial_balance
        else await trial_balance(session, period)
    )
    debits = sum((Decimal(line["debit"]) for line in lines), ZERO)
    credits = sum((Decimal(line["credit"]) for line in lines), ZERO)
    return TrialBalance(
        period=period,
        status=row.status,
        lines=lines,
        debits=debits,
        credits=credits,
        balanced=debits == credits,
    )


async def reconciliation(
    session: AsyncSession,
    period: str,
    *,
    pending_report_after: timedelta = timedelta(hours=24),
    now: datetime | None = None,
) -> dict[str, Any]:
    """Everything finance must look at for a period, by kind.

    `pending_allocations` are allocations dated up to the period's end that have been
    waiting for their order longer than `pending_report_after`; they stay listed (in this
    and later periods) until the order arrives or the allocation is released."""
    row = await read_period(session, period)
    recorded = (
        await session.execute(
            select(ReconciliationException)
            .where(col(ReconciliationException.period) == period)
            .order_by(col(ReconciliationException.id))
        )
    ).scalars()
    report: dict[str, list[dict[str, Any]]] = {
        "late_events": [],
        "failed_allocations": [],
        "overpaid_orders": [],
        "credit_balances": [],
        "control_total_mismatches": [],
        "pending_allocations": await overdue_pending(
            session,
            end=periods.Period.parse(period).last_day,
            now=now or datetime.now(UTC),
            report_after=pending_report_after,
        ),
    }
    for exc in recorded:
        key = "late_events" if exc.kind == "late_event" else "failed_allocations"
        report[key].append(
            {
                "customer_id": exc.customer_id,
                "document": exc.document,
                "amount": money_str(exc.amount) if exc.amount is not None else None,
                "detail": exc.detail,
                "event_id": exc.event_id,
                "recorded_at": exc.created_at,
            }
        )
    overpaid = await session.execute(
        text(
            """
            SELECT i.order_id, i.invoice_number, i.customer_id, i.gross,
                   COALESCE(SUM(m.amount) FILTER (WHERE m.kind = 'credit'), 0) AS credited,
                   COALESCE(SUM(m.amount) FILTER (WHERE m.kind = 'allocation'), 0) AS paid
              FROM closing.invoices i JOIN closing.invoice_movements m USING (order_id)
             WHERE i.business_date <= :end AND m.business_date <= :end
             GROUP BY i.order_id, i.invoice_number, i.customer_id, i.gross
            HAVING COALESCE(SUM(m.amount) FILTER (WHERE m.kind = 'allocation'), 0)
                   > i.gross - COALESCE(SUM(m.amount) FILTER (WHERE m.kind = 'credit'), 0)
            """
        ),
        {"end": periods.Period.parse(period).last_day},
    )
    for order_id, number, customer_id, gross, credited, paid in overpaid:
        report["overpaid_orders"].append(
            {
                "order_id": order_id,
                "invoice_number": number,
                "customer_id": customer_id,
                "gross": money_str(gross),
                "credited": money_str(credited),
                "paid": money_str(paid),
                "overpaid_by": money_str(paid - (gross - credited)),
            }
        )
    if row.status == "closed":
        credit = await session.execute(
            select(col(ClosedBalance.customer_id), col(ClosedBalance.closing))
            .where(
                col(ClosedBalance.period) == period,
                col(ClosedBalance.version) == row.version,
                col(ClosedBalance.closing) < 0,
            )
            .order_by(col(ClosedBalance.customer_id))
        )
        report["credit_balances"] = [
            {"customer_id": c, "closing": money_str(amount)} for c, amount in credit
        ]
    if row.status == "closing":
        state = compare(row.control_totals or {}, await document_totals(session, period))
        report["control_total_mismatches"] = state["mismatches"]
    return {
        "period": period,
        "status": row.status,
        **report,
        "count": sum(len(v) for v in report.values()),
    }


async def version_diff(
    session: AsyncSession, period: str, older: int, newer: int
) -> dict[str, Any]:
    """What changed in a period's balances between two of its closes, and why it was reopened."""
    versions = {}
    for v in (older, newer):
        found = await session.get(PeriodVersion, (period, v))
        if found is None:
            raise NotFound(f"period {period} has no version {v}")
        versions[v] = found
    rows = await session.execute(
        text(
            """
            SELECT COALESCE(a.customer_id, b.customer_id) AS customer_id,
                   a.closing AS old_closing, b.closing AS new_closing,
                   a.invoiced AS old_invoiced, b.invoiced AS new_invoiced,
                   a.returned AS old_returned, b.returned AS new_returned,
                   a.received AS old_received, b.received AS new_received,
                   a.refunded AS old_refunded, b.refunded AS new_refunded,
                   a.opening AS old_opening, b.opening AS new_opening
              FROM (SELECT * FROM closing.closed_balances WHERE period = :p AND version = :a) a
              FULL JOIN (SELECT * FROM closing.closed_balances WHERE period = :p AND version = :b) b
                ON a.customer_id = b.customer_id
            ORDER BY 1
            """
        ),
        {"p": period, "a": older, "b": newer},
    )
    changes = []
    for r in rows.mappings():
        fields = {}
        for f in ("opening", "invoiced", "returned", "received", "refunded", "closing"):
            old, new = r[f"old_{f}"] or ZERO, r[f"new_{f}"] or ZERO
            if old != new:
                fields[f] = {
                    "from": money_str(old),
                    "to": money_str(new),
                    "change": money_str(new - old),
                }
        if fields:
            changes.append({"customer_id": r["customer_id"], **fields})
    reopened = versions[older]
    return {
        "period": period,
        "from_version": older,
        "to_version": newer,
        "reopened_by": reopened.reopened_by,
        "reopened_at": reopened.reopened_at,
        "reopen_reason": reopened.reopen_reason,
        "from_hash": versions[older].hash,
        "to_hash": versions[newer].hash,
        "changes": changes,
    }


async def verify(session: AsyncSession, period: str) -> dict[str, Any]:
    """Recompute a closed period from the ledger and check its hash chain and trial balance."""
    row = await read_period(session, period)
    if row.status != "closed":
        raise Conflict(f"period {period} is {row.status}; only a closed period can be verified")
    checks: list[dict[str, Any]] = []
    stored = list(
        (
            await session.execute(
                select(ClosedBalance).where(
                    col(ClosedBalance.period) == period, col(ClosedBalance.version) == row.version
                )
            )
        ).scalars()
    )
    version_row = await session.get(PeriodVersion, (period, row.version))
    previous_hash = version_row.previous_hash if version_row else None
    # The link recorded when the period closed, not today's latest earlier close: an empty
    # earlier month may have closed since, and the chain does not change after the fact.
    previous = await chained_to(session, period=period, previous_hash=previous_hash)
    recomputed_hash = period_hash(period=period, previous_hash=previous_hash, rows=stored)
    checks.append(
        {
            "check": "hash",
            "ok": recomputed_hash == row.hash,
            "stored": row.hash,
            "recomputed": recomputed_hash,
        }
    )
    if previous_hash is None:
        linked = version_row is not None and not await closed_earlier_before(
            session, period=period, moment=version_row.closed_at
        )
    else:
        linked = previous is not None
    checks.append(
        {
            "check": "chain",
            "ok": linked,
            "previous_period": previous.period if previous else None,
            "previous_hash": previous_hash,
        }
    )
    opening = {}
    if previous is not None:
        opening = {
            b.customer_id: b.closing
            for b in (
                await session.execute(
                    select(ClosedBalance).where(
                        col(ClosedBalance.period) == previous.period,
                        col(ClosedBalance.version) == previous.version,
                    )
                )
            ).scalars()
        }
    from_ledger = await session.execute(
        text(
            """
            SELECT customer_id,
                   COALESCE(SUM(amount) FILTER (WHERE kind = 'invoice'), 0)
                     - COALESCE(SUM(-amount) FILTER (WHERE kind = 'cancellation'), 0) AS invoiced,
                   SUM(-amount) FILTER (WHERE kind = 'credit_note') AS returned,
                   SUM(-amount) FILTER (WHERE kind = 'payment') AS received,
                   SUM(amount) FILTER (WHERE kind = 'refund') AS refunded
              FROM closing.ledger_entries WHERE period = :p GROUP BY customer_id
            """
        ),
        {"p": period},
    )
    expected: dict[UUID, dict[str, Decimal]] = {}
    for r in from_ledger.mappings():
        expected[r["customer_id"]] = {
            k: r[k] or ZERO for k in ("invoiced", "returned", "received", "refunded")
        }
    mismatched = []
    by_customer = {b.customer_id: b for b in stored}
    for customer in set(expected) | set(opening) | set(by_customer):
        moves = expected.get(
            customer, dict.fromkeys(("invoiced", "returned", "received", "refunded"), ZERO)
        )
        start = opening.get(customer, ZERO)
        closing = (
            start + moves["invoiced"] - moves["returned"] - moves["received"] + moves["refunded"]
        )
        b = by_customer.get(customer)
        ok = (
            b is not None
            and b.opening == start
            and b.closing == closing
            and all(getattr(b, k) == v for k, v in moves.items())
            and sum((getattr(b, f) for f in BALANCE_FIELDS[6:]), ZERO) == max(b.closing, ZERO)
        )
        if not ok:
            mismatched.append(str(customer))
    checks.append(
        {
            "check": "balances_from_ledger",
            "ok": not mismatched,
            "customers": len(by_customer),
            "mismatched": mismatched[:100],
        }
    )
    aged = await reference_ageing(
        session, end=periods.Period.parse(period).last_day, closing=by_customer
    )
    misaged = [
        str(customer)
        for customer, b in by_customer.items()
        if any(getattr(b, bucket) != amount for bucket, amount in aged[customer].items())
    ]
    checks.append({"check": "ageing", "ok": not misaged, "mismatched": misaged[:100]})
    trial = await trial_balance_of(session, period)
    checks.append(
        {
            "check": "trial_balance",
            "ok": trial.balanced,
            "debits": money_str(trial.debits),
            "credits": money_str(trial.credits),
        }
    )
    state = compare(row.control_totals or {}, await document_totals(session, period))
    checks.append(
        {
            "check": "control_totals",
            "ok": not state["mismatches"],
            "mismatches": state["mismatches"],
        }
    )
    return {
        "period": period,
        "version": row.version,
        "hash": row.hash,
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
    }


async def reference_ageing(
    session: AsyncSession, *, end: date, closing: dict[UUID, ClosedBalance]
) -> dict[UUID, dict[str, Decimal]]:
    """Each customer's closing balance aged on `end` by the Python reference (shared/ageing.py),
    from the invoices, instalments and movements the ledger recorded: what the close's SQL
    wrote must equal it."""
    debtors = [c for c, b in closing.items() if b.closing > ZERO]
    instalments: dict[UUID, list[ageing.Instalment]] = defaultdict(list)
    owner: dict[UUID, UUID] = {}
    for order_id, customer_id, due_date, amount in await session.execute(
        text(
            """
            SELECT order_id, customer_id, due_date, amount FROM closing.invoice_instalments
             WHERE customer_id = ANY(:debtors) AND business_date <= :end ORDER BY order_id, seq
            """
        ),
        {"debtors": debtors, "end": end},
    ):
        instalments[order_id].append(ageing.Instalment(due_date, amount))
        owner[order_id] = customer_id
    moved: dict[tuple[UUID, str], Decimal] = defaultdict(lambda: ZERO)
    for order_id, kind, amount in await session.execute(
        text(
            """
            SELECT order_id, kind, SUM(amount) FROM closing.invoice_movements
             WHERE customer_id = ANY(:debtors) AND business_date <= :end GROUP BY order_id, kind
            """
        ),
        {"debtors": debtors, "end": end},
    ):
        moved[(order_id, kind)] = amount
    invoices: dict[UUID, list[ageing.Invoice]] = defaultdict(list)
    for order_id, plan in instalments.items():
        invoices[owner[order_id]].append(
            ageing.Invoice(
                instalments=plan,
                allocated=moved[(order_id, "allocation")],
                credited=moved[(order_id, "credit")],
            )
        )
    return {
        customer: ageing.age_customer(invoices[customer], closing=b.closing, on=end)
        for customer, b in closing.items()
    }


async def chained_to(
    session: AsyncSession, *, period: str, previous_hash: str | None
) -> PeriodVersion | None:
    """The close of an earlier period whose hash `period`'s close chained to."""
    if previous_hash is None:
        return None
    return (
        await session.execute(
            select(PeriodVersion)
            .where(col(PeriodVersion.period) < period, col(PeriodVersion.hash) == previous_hash)
            .limit(1)
        )
    ).scalar_one_or_none()


async def closed_earlier_before(session: AsyncSession, *, period: str, moment: Any) -> bool:
    """Whether some earlier period had been closed before `moment` (so a close at `moment`
    should have chained to it rather than starting a chain)."""
    found = await session.execute(
        select(col(PeriodVersion.period))
        .where(col(PeriodVersion.period) < period, col(PeriodVersion.closed_at) < moment)
        .limit(1)
    )
    return found.first() is not None


async def versions(session: AsyncSession, period: str) -> list[VersionPublic]:
    """Every close of the period, oldest first, marking the one that stands."""
    current = await read_period(session, period)
    rows = (
        await session.execute(
            select(PeriodVersion)
            .where(col(PeriodVersion.period) == period)
            .order_by(col(PeriodVersion.version))
        )
    ).scalars()
    return [
        VersionPublic(
            **v.model_dump(exclude={"trial_balance", "control_totals"}),
            current=current.status == "closed" and v.version == current.version,
        )
        for v in rows
    ]


async def statements(
    session: AsyncSession,
    *,
    status: str | None,
    period: str | None,
    customer_id: UUID | None,
    after: UUID | None = None,
    limit: int | None = None,
) -> list[Statement]:
    """Statements sent for confirmation, by id (after `after`, at most `limit`), filtered by
    status, period and customer."""
    query = select(Statement).order_by(col(Statement.id)).limit(limit)
    if after is not None:
        query = query.where(col(Statement.id) > after)
    if status:
        query = query.where(col(Statement.status) == status)
    if period:
        query = query.where(col(Statement.period) == period)
    if customer_id:
        query = query.where(col(Statement.customer_id) == customer_id)
    return list((await session.execute(query)).scalars())
