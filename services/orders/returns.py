"""Returns: a credit note (CRN-YYYY-NNNNNN) taking back part of a confirmed or fulfilled order.

The order row is locked for the whole return, so concurrent returns of one order queue and
each sees what the previous ones took: a line can never be returned beyond its quantity.
Amounts use cumulative rounding (see domain.py): the return that empties a line takes
exactly what is left of its net and tax.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from services.orders.domain import can_be_returned, return_amounts, totals
from services.orders.models import (
    SCHEMA,
    CreditNote,
    CreditNoteLine,
    OrderLine,
    utcnow,
)
from services.orders.schemas import ReturnCreate, tidy
from services.orders.service import document_date, lock_order
from shared.auth import Actor
from shared.config import Settings
from shared.errors import Conflict, IllegalTransition, InvalidInput
from shared.events import orders as events
from shared.ids import new_id
from shared.messaging.outbox import emit
from shared.money import plain
from shared.numbering import number_last, stand_in


async def create_return(
    *,
    session: AsyncSession,
    order_id: UUID,
    data: ReturnCreate,
    actor: Actor,
    settings: Settings,
) -> tuple[CreditNote, list[CreditNoteLine]]:
    """Take back quantities of an order's lines and issue the credit note for them; returns
    the note and its lines as written."""
    order = await lock_order(session, order_id)
    if not can_be_returned(order.status):
        raise IllegalTransition(
            f"order {order.number} is {order.status}; only a confirmed or fulfilled order "
            "can be returned",
            order_id=str(order.id),
            order_status=order.status,
        )
    day = await document_date(session, data.business_date, settings=settings, field="business_date")
    assert order.business_date is not None  # set at confirmation
    if day < order.business_date:
        raise InvalidInput(
            "business_date",
            f"{day.isoformat()} is before the invoice date {order.business_date.isoformat()}",
        )
    lines = list(
        (
            await session.execute(
                select(OrderLine)
                .where(col(OrderLine.order_id) == order.id)
                .order_by(col(OrderLine.line_no))
            )
        ).scalars()
    )
    taking = _assign(lines, data)

    note_id = new_id()
    note_lines: list[CreditNoteLine] = []
    for line in lines:
        quantity = taking.get(line.line_no)
        if not quantity:
            continue
        amounts = return_amounts(
            quantity=line.quantity,
            net=line.net,
            tax=line.tax,
            returned_quantity=line.returned_quantity,
            returned_net=line.returned_net,
            returned_tax=line.returned_tax,
            returning=quantity,
        )
        line.returned_quantity += quantity
        line.returned_net += amounts.net
        line.returned_tax += amounts.tax
        note_lines.append(
            CreditNoteLine(
                credit_note_id=note_id,
                line_no=line.line_no,
                sku=line.sku,
                quantity=quantity,
                net=amounts.net,
                tax=amounts.tax,
                gross=amounts.gross,
            )
        )
    total = totals(note_lines)
    order.credited_net += total.net
    order.credited_tax += total.tax
    order.credited += total.gross
    order.updated_at = utcnow()
    # Written under a stand-in for its number: the return's last statement takes the number
    # (number_last, below), so the counter row is locked for that statement and the commit.
    note = CreditNote(
        id=note_id,
        number=stand_in(note_id),
        order_id=order.id,
        customer_id=order.customer_id,
        business_date=day,
        net=total.net,
        tax=total.tax,
        gross=total.gross,
        reason=data.reason,
        created_by=actor.subject,
    )
    session.add(note)
    await session.flush()
    session.add_all(note_lines)
    await session.flush()

    categories = {line.line_no: line.category for line in lines}
    emit(
        session,
        events.OrderReturned(
            credit_note_id=note.id,
            credit_note_number=note.number,
            order_id=order.id,
            customer_id=order.customer_id,
            business_date=day,
            lines=[
                events.ReturnedLine(
                    line_no=n.line_no,
                    sku=n.sku,
                    category=categories[n.line_no],
                    quantity=tidy(n.quantity),
                    net=n.net,
                    tax=n.tax,
                    gross=n.gross,
                )
                for n in note_lines
            ],
            net=note.net,
            tax=note.tax,
            gross=note.gross,
            reason=data.reason,
        ),
        source=events.SOURCE,
        key=str(order.customer_id),
        business_date=day,
    )
    number = await number_last(
        session,
        schema=SCHEMA,
        table="credit_notes",
        document_id=note.id,
        prefix="CRN",
        year=day.year,
        actor=actor,
        action="order.returned",
        entity="order",
        entity_id=order.id,
        details={
            "credit_note": note.number,
            "gross": note.gross,
            "lines": {n.line_no: n.quantity for n in note_lines},
            "reason": data.reason,
        },
    )
    set_committed_value(note, "number", number)
    return note, note_lines


def _assign(lines: list[OrderLine], data: ReturnCreate) -> dict[int, Decimal]:
    """Which quantity each order line gives back. A return line names a SKU and optionally
    its line number; without one, the SKU's lines give back in line order."""
    taking: dict[int, Decimal] = {}
    for i, wanted in enumerate(data.lines):
        candidates = [
            line
            for line in lines
            if line.sku == wanted.sku and wanted.line_no in (None, line.line_no)
        ]
        if not candidates:
            if wanted.line_no is not None and any(line.sku == wanted.sku for line in lines):
                raise InvalidInput(
                    f"lines.{i}.line_no", f"line {wanted.line_no} of this order is not {wanted.sku}"
                )
            raise InvalidInput(f"lines.{i}.sku", f"{wanted.sku} is not on this order")
        remaining = wanted.quantity
        returnable = Decimal(0)
        for line in candidates:
            left = line.quantity - line.returned_quantity - taking.get(line.line_no, Decimal(0))
            returnable += left
            take = min(left, remaining)
            if take > 0:
                taking[line.line_no] = taking.get(line.line_no, Decimal(0)) + take
                remaining -= take
        if remaining > 0:
            raise Conflict(
                f"lines.{i}: {plain(wanted.quantity)} of {wanted.sku} asked, only "
                f"{plain(returnable)} can still be returned",
                field=f"lines.{i}.quantity",
                returnable=plain(returnable),
            )
    return taking
