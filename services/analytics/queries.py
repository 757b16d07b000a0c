"""Reads over the read models; no HTTP in here.

Definitions (each over the documents dated in [start, end], both days included):
- net, tax, gross, units: invoiced amounts less what cancellations reversed;
- returns: credit-note gross; revenue: net less credit-note net;
- orders: confirmed orders less cancelled confirmed orders, each on its own date.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Date, String, and_, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import (
    ZERO,
    CustomerFacts,
    DailyFunnel,
    DailySales,
    Freshness,
    Invoice,
    ReceivableMove,
)

S = DailySales.__table__.c  # type: ignore[attr-defined]
M = ReceivableMove.__table__.c  # type: ignore[attr-defined]
C = CustomerFacts.__table__.c  # type: ignore[attr-defined]
F = DailyFunnel.__table__.c  # type: ignore[attr-defined]

GROUPS = (
    "day",
    "week",
    "month",
    "product",
    "category",
    "customer",
    "channel",
    "region",
    "salesperson",
)
FILTERS = ("channel", "region", "salesperson", "category", "customer_id", "sku")
RATIO = Decimal("0.0001")
CENT = Decimal("0.01")


def ratio(top: Decimal | int, bottom: Decimal | int) -> Decimal | None:
    if not bottom:
        return None
    return (Decimal(top) / Decimal(bottom)).quantize(RATIO, ROUND_HALF_UP)


def money(value: Decimal | None) -> Decimal:
    return (value or ZERO).quantize(CENT, ROUND_HALF_UP)


def group_expression(group_by: str) -> Any:
    match group_by:
        case "day":
            return cast(S.day, String)
        case "week":
            return cast(cast(func.date_trunc("week", S.day), Date), String)
        case "month":
            return func.to_char(S.day, "YYYY-MM")
        case "product":
            return S.sku
        case "customer":
            return cast(S.customer_id, String)
        case _:
            return S[group_by]


def order_column(group_by: str | None, filters: dict[str, Any]) -> Any:
    """The order count that is exact for this grouping (see DailySales)."""
    if group_by == "product" or filters.get("sku") is not None:
        return S.orders
    if group_by == "category" or filters.get("category") is not None:
        return S.category_orders
    return S.order_count


async def as_of(session: AsyncSession) -> datetime | None:
    return (await session.execute(select(Freshness.__table__.c.as_of))).scalar()  # type: ignore[attr-defined]


async def sales(
    session: AsyncSession,
    *,
    start: date,
    end: date,
    group_by: str,
    filters: dict[str, Any],
    order_by_revenue: bool = False,
    limit: int | None = None,
    after: str | None = None,
) -> list[dict[str, Any]]:
    """Sales per group over the rollup, with the given filters combined; by key, from the
    first key after `after`, unless ordered by revenue."""
    key = group_expression(group_by).label("key")
    revenue = (func.sum(S.net) - func.sum(S.returns_net)).label("revenue")
    query = (
        select(
            key,
            func.sum(S.net).label("net"),
            func.sum(S.tax).label("tax"),
            func.sum(S.gross).label("gross"),
            func.sum(order_column(group_by, filters)).label("orders"),
            func.sum(S.units).label("units"),
            func.sum(S.returns).label("returns"),
            func.sum(S.cancellations).label("cancellations"),
            revenue,
        )
        .where(S.day >= start, S.day <= end)
        .group_by(key)
    )
    for name, value in filters.items():
        if value is not None:
            query = query.where(S[name] == value)
    if after is not None:
        query = query.having(group_expression(group_by) > after)
    query = query.order_by(revenue.desc(), key) if order_by_revenue else query.order_by(key)
    if limit is not None:
        query = query.limit(limit)
    rows = []
    for row in (await session.execute(query)).mappings():
        entry = dict(row)
        entry["key"] = entry["key"] or None  # '' stands for "none" in the rollup
        rows.append(entry)
    return rows


async def kpis(session: AsyncSession, *, start: date, end: date) -> dict[str, Any]:
    """The KPIs of a date range; see the README's Analytics section for each definition."""
    in_range = and_(S.day >= start, S.day <= end)
    totals = (
        await session.execute(
            select(
                func.coalesce(func.sum(S.net), ZERO),
                func.coalesce(func.sum(S.returns_net), ZERO),
                func.coalesce(func.sum(S.order_count), 0),
                func.coalesce(func.sum(S.units), ZERO),
            ).where(in_range)
        )
    ).one()
    net, returns_net, orders, units = totals
    submitted, confirmed = (
        await session.execute(
            select(
                func.coalesce(func.sum(F.submitted), 0), func.coalesce(func.sum(F.confirmed), 0)
            ).where(F.day >= start, F.day <= end)
        )
    ).one()
    active = select(S.customer_id).where(in_range, S.order_count > 0).distinct().subquery()
    new, active_count = (
        await session.execute(
            select(
                func.count().filter(C.first_order_on >= start),
                func.count(),
            ).select_from(
                active.join(CustomerFacts.__table__, C.customer_id == active.c.customer_id)
            )
        )
    ).one()
    lifetime_revenue = (
        await session.execute(
            select(func.coalesce(func.sum(S.net - S.returns_net), ZERO)).where(S.day <= end)
        )
    ).scalar_one()
    customers_ever = (
        await session.execute(
            select(func.count()).select_from(CustomerFacts.__table__).where(C.first_order_on <= end)
        )
    ).scalar_one()
    receivables = await _receivables(session, start=start, end=end)
    days = (end - start).days + 1
    revenue = net - returns_net
    return {
        "revenue": money(revenue),
        "net_sales": money(net),
        "returns_net": money(returns_net),
        "orders": int(orders),
        "average_order_value": money(net / orders) if orders else None,
        "units_per_order": ratio(units, orders),
        "return_rate": ratio(returns_net, net),
        "submitted": int(submitted),
        "confirmed": int(confirmed),
        "conversion_rate": ratio(confirmed, submitted),
        "active_customers": int(active_count),
        "new_customers": int(new),
        "returning_customers": int(active_count - new),
        "average_customer_lifetime_value": (
            money(lifetime_revenue / customers_ever) if customers_ever else None
        ),
        "receivables_open": money(receivables["closing"]),
        "days_sales_outstanding": (ratio(receivables["closing"] * days, receivables["invoiced"])),
        "collected": money(receivables["collected"]),
        "collection_rate": ratio(
            receivables["collected"], receivables["opening"] + receivables["billed"]
        ),
    }


async def _receivables(session: AsyncSession, *, start: date, end: date) -> dict[str, Decimal]:
    """Open invoices before and at the end of the range, and what moved them within it."""

    def total(*conditions: Any) -> Any:
        return func.coalesce(func.sum(M.amount).filter(*conditions), ZERO)

    during = and_(M.day >= start, M.day <= end)
    row = (
        await session.execute(
            select(
                total(M.day < start),
                total(M.day <= end),
                total(during, M.kind == "invoice"),
                total(during, M.kind.in_(("invoice", "credit", "cancel"))),
                total(during, M.kind.in_(("allocated", "released"))),
            ).where(M.day <= end)
        )
    ).one()
    opening, closing, invoiced, billed, paid_moves = row
    return {
        "opening": opening,
        "closing": closing,
        "invoiced": invoiced,
        "billed": billed,
        "collected": -paid_moves,
    }


async def lifetime(session: AsyncSession, customer_id: UUID) -> dict[str, Any] | None:
    """A customer's whole history, or None for a customer analytics has never seen."""
    facts = (
        (await session.execute(select(CustomerFacts.__table__).where(C.customer_id == customer_id)))  # type: ignore[call-overload]
        .mappings()
        .first()
    )
    sums = (
        await session.execute(
            select(
                func.coalesce(func.sum(S.net), ZERO),
                func.coalesce(func.sum(S.returns_net), ZERO),
                func.coalesce(func.sum(S.gross), ZERO),
                func.coalesce(func.sum(S.order_count), 0),
                func.coalesce(func.sum(S.units), ZERO),
                func.count(),
            ).where(S.customer_id == customer_id)
        )
    ).one()
    net, returns_net, gross, orders, units, rows = sums
    if facts is None and not rows:
        return None
    moves = (
        await session.execute(
            select(
                func.coalesce(func.sum(M.amount).filter(M.kind == "invoice"), ZERO),
                func.coalesce(
                    func.sum(M.amount).filter(M.kind.in_(("allocated", "released"))), ZERO
                ),
                func.coalesce(func.sum(M.amount), ZERO),
            ).where(M.customer_id == customer_id)
        )
    ).one()
    return {
        "customer_id": customer_id,
        "name": facts["name"] if facts else "",
        "first_order_on": facts["first_order_on"] if facts else None,
        "last_order_on": facts["last_order_on"] if facts else None,
        "orders": int(orders),
        "units": units,
        "net_sales": money(net),
        "returns_net": money(returns_net),
        "revenue": money(net - returns_net),
        "gross": money(gross),
        "invoiced": money(moves[0]),
        "paid": money(-moves[1]),
        "outstanding": money(moves[2]),
    }


BUCKETS = ("current", "d1_30", "d31_60", "d61_90", "over_90")


async def ageing(session: AsyncSession, *, as_of_date: date) -> list[dict[str, Any]]:
    """Open invoice amounts at the end of a day, per customer, by days past due."""
    inv = Invoice.__table__.c  # type: ignore[attr-defined]
    per_invoice = (
        select(
            M.order_id,
            M.customer_id,
            func.sum(M.amount).label("open"),
        )
        .where(M.day <= as_of_date)
        .group_by(M.order_id, M.customer_id)
        .having(func.sum(M.amount) != 0)
        .subquery()
    )
    late = literal(as_of_date) - inv.due_date
    open_ = per_invoice.c.open

    def bucket(condition: Any) -> Any:
        return func.coalesce(func.sum(open_).filter(condition), ZERO)

    query = (
        select(
            per_invoice.c.customer_id,
            bucket(late <= 0).label("current"),
            bucket(and_(late >= 1, late <= 30)).label("d1_30"),
            bucket(and_(late >= 31, late <= 60)).label("d31_60"),
            bucket(and_(late >= 61, late <= 90)).label("d61_90"),
            bucket(late > 90).label("over_90"),
            func.sum(open_).label("total"),
        )
        .select_from(per_invoice.join(Invoice.__table__, inv.order_id == per_invoice.c.order_id))  # type: ignore[arg-type]
        .group_by(per_invoice.c.customer_id)
        .order_by(per_invoice.c.customer_id)
    )
    return [dict(row) for row in (await session.execute(query)).mappings()]


async def salesperson_revenue(
    session: AsyncSession, *, start: date, end: date
) -> dict[str, Decimal]:
    rows = await sales(session, start=start, end=end, group_by="salesperson", filters={})
    return {row["key"] or "": row["revenue"] for row in rows}
