"""Customer statements (对账单) and the customer's confirmation or dispute of them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.closing.models import (
    SCHEMA,
    ClosedBalance,
    Customer,
    LedgerEntry,
    Period,
    Statement,
)
from services.closing.schemas import CustomerStatement, StatementLine
from shared import periods
from shared.audit import record_audit
from shared.auth import Actor
from shared.db import lock_or_404
from shared.errors import Conflict, InvalidInput, NotFound
from shared.ids import new_id

ZERO = Decimal("0.00")


async def customer_statement(
    session: AsyncSession, *, customer_id: UUID, date_from: date, date_to: date
) -> CustomerStatement:
    """Opening balance, every posted document in date order with its running balance, closing."""
    if date_to < date_from:
        raise InvalidInput("to", "must not be before from")
    if not await _known(session, customer_id):
        raise NotFound(f"no customer {customer_id}: the ledger has no event of theirs")
    opening = (
        await session.execute(
            select(func.coalesce(func.sum(col(LedgerEntry.amount)), 0)).where(
                col(LedgerEntry.customer_id) == customer_id,
                col(LedgerEntry.posting_date) < date_from,
            )
        )
    ).scalar_one()
    entries = (
        await session.execute(
            select(LedgerEntry)
            .where(
                col(LedgerEntry.customer_id) == customer_id,
                col(LedgerEntry.posting_date) >= date_from,
                col(LedgerEntry.posting_date) <= date_to,
            )
            # Within a day, in the order the documents happened: event ids are UUIDv7, in
            # time order whichever service made them, where the ledger's own ids follow the
            # order it applied the events in, which a rebuild (one source, then the other)
            # does not keep.
            .order_by(col(LedgerEntry.posting_date), col(LedgerEntry.event_id))
        )
    ).scalars()
    balance = Decimal(opening)
    lines = []
    for entry in entries:
        balance += entry.amount
        lines.append(
            StatementLine(
                date=entry.posting_date,
                kind=entry.kind,
                document=entry.document_number,
                document_id=entry.document_id,
                period=entry.period,
                late=entry.late,
                debit=max(entry.amount, ZERO),
                credit=max(-entry.amount, ZERO),
                balance=balance,
            )
        )
    return CustomerStatement(
        customer_id=customer_id,
        date_from=date_from,
        date_to=date_to,
        opening=Decimal(opening),
        lines=lines,
        closing=balance,
    )


async def _known(session: AsyncSession, customer_id: UUID) -> bool:
    """Announced by a customer event, or (a customer from before the ledger kept customers)
    named by a posted document."""
    if await session.get(Customer, customer_id) is not None:
        return True
    posted = select(col(LedgerEntry.id)).where(col(LedgerEntry.customer_id) == customer_id)
    return (await session.execute(posted.limit(1))).first() is not None


async def send_statement(
    *, session: AsyncSession, customer_id: UUID, period: str, actor: Actor
) -> Statement:
    """Send a closed period's statement to the customer for confirmation."""
    periods.Period.parse(period)
    row = await session.get(Period, period)
    if row is None or row.status != "closed":
        raise Conflict(
            f"period {period} is not closed; only a closed period's statement can be sent"
        )
    balance = await session.get(ClosedBalance, (period, row.version, customer_id))
    if balance is None:
        raise InvalidInput(
            "customer_id", f"customer {customer_id} has no balance in the closed period {period}"
        )
    statement = Statement(
        id=new_id(),
        customer_id=customer_id,
        period=period,
        version=row.version,
        closing=balance.closing,
        sent_by=actor.subject,
    )
    session.add(statement)
    await session.flush()
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="statement.sent",
        entity="statement",
        entity_id=statement.id,
        details={
            "customer_id": customer_id,
            "period": period,
            "version": row.version,
            "closing": balance.closing,
        },
    )
    await session.refresh(statement)
    return statement


async def answer_statement(
    *,
    session: AsyncSession,
    statement_id: UUID,
    actor: Actor,
    confirmed: bool,
    reason: str | None,
    documents: list[str] | None,
) -> Statement:
    """Record the customer's confirmation or dispute of a sent statement."""
    statement = await lock_or_404(
        session, Statement, statement_id, missing=NotFound(f"no statement {statement_id}")
    )
    if statement.status != "sent":
        raise Conflict(f"statement already {statement.status}")
    if documents:
        on_statement = await statement_documents(session, statement)
        foreign = [d for d in documents if d not in on_statement]
        if foreign:
            raise InvalidInput(
                "documents",
                f"not on the {statement.period} statement of this customer: {', '.join(foreign)}",
                not_on_statement=foreign,
            )
    statement.status = "confirmed" if confirmed else "disputed"
    statement.responded_by = actor.subject
    statement.responded_at = datetime.now(UTC)
    statement.reason = reason
    statement.disputed_documents = documents
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action=f"statement.{statement.status}",
        entity="statement",
        entity_id=statement.id,
        details={"reason": reason, "documents": documents},
    )
    return statement


async def statement_documents(session: AsyncSession, statement: Statement) -> set[str]:
    """The document numbers a sent statement shows: the customer's documents of its period."""
    period = periods.Period.parse(statement.period)
    shown = await customer_statement(
        session,
        customer_id=statement.customer_id,
        date_from=period.first_day,
        date_to=period.last_day,
    )
    return {line.document for line in shown.lines if line.document}
