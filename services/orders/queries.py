"""The read model of orders: an order with its lines, schedule, approvals, credit notes and
history, loaded in a fixed number of queries for a whole page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.orders.customers import uuid_cursor
from services.orders.domain import RECEIVABLE_STATUSES, Channel, OrderStatus
from services.orders.models import (
    ZERO,
    Approval,
    CreditNote,
    CreditNoteLine,
    Instalment,
    Order,
    OrderLine,
    StatusChange,
)
from services.orders.schemas import (
    ApprovalPublic,
    CreditNoteLinePublic,
    CreditNotePublic,
    HistoryEntry,
    InstalmentPublic,
    LinePublic,
    OrderPublic,
)
from shared.config import Settings
from shared.errors import NotFound
from shared.pagination import PageParams, cut_page
from shared.periods import Period


async def _grouped(
    session: AsyncSession, model: Any, key: Any, ids: Sequence[UUID], *order: Any
) -> dict[UUID, list[Any]]:
    groups: dict[UUID, list[Any]] = defaultdict(list)
    if ids:
        rows = await session.execute(select(model).where(key.in_(ids)).order_by(*order))
        for row in rows.scalars():
            groups[getattr(row, key.key)].append(row)
    return groups


async def order_views(
    session: AsyncSession, orders: Sequence[Order], *, settings: Settings
) -> list[OrderPublic]:
    """The public form of each order, in the given order."""
    ids = [o.id for o in orders]
    lines = await _grouped(session, OrderLine, col(OrderLine.order_id), ids, col(OrderLine.line_no))
    schedule = await _grouped(
        session, Instalment, col(Instalment.order_id), ids, col(Instalment.seq)
    )
    approvals = await _grouped(session, Approval, col(Approval.order_id), ids, col(Approval.at))
    history = await _grouped(
        session, StatusChange, col(StatusChange.order_id), ids, col(StatusChange.id)
    )
    notes = await _grouped(session, CreditNote, col(CreditNote.order_id), ids, col(CreditNote.id))
    note_ids = [n.id for group in notes.values() for n in group]
    note_lines = await _grouped(
        session, CreditNoteLine, CreditNoteLine.credit_note_id, note_ids, CreditNoteLine.line_no
    )
    return [
        _view(
            o,
            settings=settings,
            lines=lines[o.id],
            schedule=schedule[o.id],
            approvals=approvals[o.id],
            history=history[o.id],
            notes=[(n, note_lines[n.id]) for n in notes[o.id]],
        )
        for o in orders
    ]


async def order_view(session: AsyncSession, order: Order, *, settings: Settings) -> OrderPublic:
    await session.flush()
    return (await order_views(session, [order], settings=settings))[0]


async def get_order_view(
    session: AsyncSession, order_id: UUID, *, settings: Settings
) -> OrderPublic:
    """One order's public form, or 404."""
    order = await session.get(Order, order_id)
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return await order_view(session, order, settings=settings)


def _view(
    order: Order,
    *,
    settings: Settings,
    lines: list[OrderLine],
    schedule: list[Instalment],
    approvals: list[Approval],
    history: list[StatusChange],
    notes: list[tuple[CreditNote, list[CreditNoteLine]]],
) -> OrderPublic:
    owed = order.status in RECEIVABLE_STATUSES
    return OrderPublic(
        id=order.id,
        number=order.number,
        customer_id=order.customer_id,
        status=OrderStatus(order.status),
        channel=Channel(order.channel),
        salesperson=order.salesperson,
        note=order.note,
        currency=settings.currency,
        lines=[LinePublic.model_validate(line, from_attributes=True) for line in lines],
        net=order.net,
        tax=order.tax,
        gross=order.gross,
        paid=order.paid,
        credited=order.credited,
        outstanding=order.gross - order.credited - order.paid if owed else ZERO,
        business_date=order.business_date,
        period=_period(order.business_date),
        invoice_number=order.invoice_number,
        due_date=order.due_date,
        instalments=[InstalmentPublic(due_date=i.due_date, amount=i.amount) for i in schedule],
        approvals_required=order.approvals_required,
        approvals=[ApprovalPublic.model_validate(a, from_attributes=True) for a in approvals],
        credit_hold=order.credit_hold,
        credit_notes=[credit_note_public(note, nl) for note, nl in notes],
        history=[HistoryEntry.model_validate(h, from_attributes=True) for h in history],
        created_by=order.created_by,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def credit_note_public(note: CreditNote, lines: list[CreditNoteLine]) -> CreditNotePublic:
    return CreditNotePublic(
        id=note.id,
        number=note.number,
        order_id=note.order_id,
        business_date=note.business_date,
        period=str(Period.of(note.business_date)),
        net=note.net,
        tax=note.tax,
        gross=note.gross,
        reason=note.reason,
        lines=[CreditNoteLinePublic.model_validate(n, from_attributes=True) for n in lines],
        created_by=note.created_by,
        created_at=note.created_at,
    )


def _period(day: date | None) -> str | None:
    return str(Period.of(day)) if day else None


async def list_orders(
    *,
    session: AsyncSession,
    page: PageParams,
    settings: Settings,
    customer_id: UUID | None = None,
    status: str | None = None,
    channel: str | None = None,
    salesperson: str | None = None,
    period: str | None = None,
    created_by: str | None = None,
) -> tuple[list[OrderPublic], str | None]:
    """Orders in creation order, filtered; returns the page and the next cursor."""
    query = select(Order).order_by(col(Order.id)).limit(page.limit + 1)
    if customer_id is not None:
        query = query.where(col(Order.customer_id) == customer_id)
    if status is not None:
        query = query.where(col(Order.status) == status)
    if channel is not None:
        query = query.where(col(Order.channel) == channel)
    if salesperson is not None:
        query = query.where(col(Order.salesperson) == salesperson)
    if created_by is not None:
        query = query.where(col(Order.created_by) == created_by)
    if period is not None:
        first, after = Period.parse(period).bounds()
        query = query.where(col(Order.business_date) >= first, col(Order.business_date) < after)
    if page.after:
        query = query.where(col(Order.id) > uuid_cursor(page.after))
    rows = (await session.execute(query)).scalars().all()
    kept, cursor = cut_page(rows, limit=page.limit, key=lambda o: str(o.id))
    return await order_views(session, kept, settings=settings), cursor
