"""Reads over the read models; no HTTP in here.

Definitions (each over the documents dated in [start, end], both days included):
- net, tax, gross, units: invoiced amounts less what cancellations reversed;
- returns: credit-note gross; revenue: net less credit-note net;
- orders: confirmed orders less cancelled confirmed orders, each on its own date.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Date,
    String,
    Table,
    and_,
    cast,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.domain import (
    INTERVALS,
    PLACES,
    bucket_start,
    buckets,
    linear_forecast,
    next_bucket,
)
from services.analytics.models import (
    ACTIVE_CUSTOMERS_BY_MONTH,
    CUSTOMER_DAYS,
    CUSTOMER_MONTHS,
    FIRST_ORDERS_BY_DAY,
    NEW_CUSTOMERS_BY_MONTH,
    ROLLUPS,
    SALES_BY_CUSTOMER,
    SALES_MEASURES,
    ZERO,
    CustomerFacts,
    DailyFunnel,
    DailySales,
    Freshness,
    OpenByDay,
    OpenChange,
    OpenNow,
    ReceivableMove,
    ReceivablesByDay,
)
from shared.periods import Period
from shared.tables import table_of

S = table_of(DailySales).c
M = table_of(ReceivableMove).c
C = table_of(CustomerFacts).c
F = table_of(DailyFunnel).c
R = table_of(ReceivablesByDay).c
TOTALS = ROLLUPS[0].table.c

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


GROUP_COLUMNS = {"product": "sku", "customer": "customer_id"}
DAILY_GROUPS = ("day", "week")


def group_expression(group_by: str, rows: Any = S) -> Any:
    match group_by:
        case "day":
            return cast(rows.day, String)
        # Constants written into the SQL, not bound: the key's expression must read the same
        # in GROUP BY and in the HAVING that pages after a key.
        case "week":
            return cast(cast(func.date_trunc(literal_column("'week'"), rows.day), Date), String)
        case "month":
            return func.to_char(rows.day, literal_column("'YYYY-MM'"))
        case "product":
            return rows.sku
        case "customer":
            return cast(rows.customer_id, String)
        case _:
            return rows[group_by]


def order_column(group_by: str | None, filters: dict[str, Any], rows: Any = S) -> Any:
    """The order count that is exact for this grouping (see DailySales)."""
    if group_by == "product" or filters.get("sku") is not None:
        return rows.orders
    if group_by == "category" or filters.get("category") is not None:
        return rows.category_orders
    return rows.order_count


def _smallest_rollup(dimensions: set[str], *, monthly: bool) -> Table | None:
    for rollup in ROLLUPS:
        if rollup.monthly == monthly and dimensions <= set(rollup.dimensions):
            return rollup.table
    return None if monthly else table_of(DailySales)


def _whole_months(start: date, end: date) -> tuple[date, date] | None:
    """The first and last day of the whole months within [start, end], if any."""
    if start.day == 1:
        first = start
    elif (start.year, start.month) < (date.max.year, 12):
        first = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    else:
        return None
    if end == Period.of(end).last_day:
        last = end
    elif (end.year, end.month) > (date.min.year, 1):
        last = end.replace(day=1) - timedelta(days=1)
    else:
        return None
    return (first, last) if first <= last else None


def _by_grain(
    start: date, end: date, *, daily: Table, monthly: Table | None
) -> list[tuple[Table, date, date]]:
    """[start, end] as day ranges to read: its whole months from the monthly table, if
    there is one, and the days around them from the daily one."""
    months = _whole_months(start, end) if monthly is not None else None
    if monthly is None or months is None:
        return [(daily, start, end)]
    first, last = months
    parts = [(monthly, first, last)]
    if start < first:
        parts.append((daily, start, first - timedelta(days=1)))
    if last < end:
        parts.append((daily, last + timedelta(days=1), end))
    return parts


def sales_rows(*, group_by: str, filters: dict[str, Any], start: date, end: date) -> Any:
    """The rows to sum for a sales question: from the smallest rollups holding every
    dimension it groups or filters by, whole months from a monthly one when the grouping
    is coarser than a day."""
    dimensions = {name for name, value in filters.items() if value is not None}
    if group_by not in (*DAILY_GROUPS, "month"):
        dimensions.add(GROUP_COLUMNS.get(group_by, group_by))
    daily = _smallest_rollup(dimensions, monthly=False)
    assert daily is not None  # daily_sales holds every dimension
    monthly = None if group_by in DAILY_GROUPS else _smallest_rollup(dimensions, monthly=True)
    parts = _by_grain(start, end, daily=daily, monthly=monthly)
    columns = ("day", *sorted(dimensions), *SALES_MEASURES)
    selects = [
        select(*(table.c[c] for c in columns)).where(table.c.day >= low, table.c.day <= high)
        for table, low, high in parts
    ]
    return (union_all(*selects) if len(selects) > 1 else selects[0]).subquery("rows")


async def as_of(session: AsyncSession) -> datetime | None:
    return (await session.execute(select(table_of(Freshness).c.as_of))).scalar()


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
    rows = sales_rows(group_by=group_by, filters=filters, start=start, end=end).c
    key = group_expression(group_by, rows).label("key")
    revenue = (func.sum(rows.net) - func.sum(rows.returns_net)).label("revenue")
    query = select(
        key,
        func.sum(rows.net).label("net"),
        func.sum(rows.tax).label("tax"),
        func.sum(rows.gross).label("gross"),
        func.sum(order_column(group_by, filters, rows)).label("orders"),
        func.sum(rows.units).label("units"),
        func.sum(rows.returns).label("returns"),
        func.sum(rows.cancellations).label("cancellations"),
        revenue,
    ).group_by(key)
    for name, value in filters.items():
        if value is not None:
            query = query.where(rows[name] == value)
    if after is not None:
        query = query.having(group_expression(group_by, rows) > after)
    query = query.order_by(revenue.desc(), key) if order_by_revenue else query.order_by(key)
    if limit is not None:
        query = query.limit(limit)
    rows = []
    for row in (await session.execute(query)).mappings():
        entry = dict(row)
        entry["key"] = entry["key"] or None  # '' stands for "none" in the rollup
        rows.append(entry)
    return rows


async def holds_every_sale(session: AsyncSession, *, start: date, end: date) -> bool:
    """Whether [start, end] takes in every day with sales, so all-time totals answer it."""
    first, last = (await session.execute(select(func.min(TOTALS.day), func.max(TOTALS.day)))).one()
    return first is None or (start <= first and last <= end)


async def top_customers_ever(session: AsyncSession, *, limit: int) -> list[dict[str, Any]]:
    """The customers with the most revenue over all time, best first (ties by id), as
    `sales` answers them, read down the revenue index of `sales_by_customer`."""
    ever = SALES_BY_CUSTOMER.c
    revenue = ever.net - ever.returns_net
    rows = await session.execute(
        select(
            cast(ever.customer_id, String).label("key"),
            ever.net,
            ever.tax,
            ever.gross,
            ever.order_count.label("orders"),
            ever.units,
            ever.returns,
            ever.cancellations,
            revenue.label("revenue"),
        )
        .order_by(revenue.desc(), ever.customer_id)
        .limit(limit)
    )
    return [dict(row) for row in rows.mappings()]


async def kpis(session: AsyncSession, *, start: date, end: date) -> dict[str, Any]:
    """The KPIs of a date range; see the README's Analytics section for each definition."""
    totals = (
        await session.execute(
            select(
                func.coalesce(func.sum(TOTALS.net), ZERO),
                func.coalesce(func.sum(TOTALS.returns_net), ZERO),
                func.coalesce(func.sum(TOTALS.order_count), 0),
                func.coalesce(func.sum(TOTALS.units), ZERO),
            ).where(TOTALS.day >= start, TOTALS.day <= end)
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
    active_count, new = await _active_customers(session, start=start, end=end)
    lifetime_revenue = (
        await session.execute(
            select(func.coalesce(func.sum(TOTALS.net - TOTALS.returns_net), ZERO)).where(
                TOTALS.day <= end
            )
        )
    ).scalar_one()
    firsts = FIRST_ORDERS_BY_DAY.c
    customers_ever = (
        await session.execute(
            select(func.coalesce(func.sum(firsts.customers), 0)).where(firsts.day <= end)
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


def _one_whole_month(start: date, end: date) -> bool:
    return start.day == 1 and end == Period.of(start).last_day


async def _counted(session: AsyncSession, counts: Table, day: date) -> int:
    found = select(func.coalesce(func.sum(counts.c.customers), 0)).where(counts.c.day == day)
    return int((await session.execute(found)).scalar_one())


async def _active_customers(session: AsyncSession, *, start: date, end: date) -> tuple[int, int]:
    """Customers with an order in the range that no cancellation took back the same day,
    and how many of them ordered for the first time in it: for one whole month, from the
    counters kept per month; otherwise counted."""
    if _one_whole_month(start, end):
        return (
            await _counted(session, ACTIVE_CUSTOMERS_BY_MONTH, start),
            await _counted(session, NEW_CUSTOMERS_BY_MONTH, start),
        )
    parts = _by_grain(start, end, daily=CUSTOMER_DAYS, monthly=CUSTOMER_MONTHS)
    ids = union_all(
        *(
            select(table.c.customer_id).where(
                table.c.day >= low, table.c.day <= high, table.c.kept_orders > 0
            )
            for table, low, high in parts
        )
    ).subquery("active")
    active_count = (
        await session.execute(select(func.count(func.distinct(ids.c.customer_id))))
    ).scalar_one()
    # New: first ordered within the range and active in it. Read from the customers who
    # first ordered then, a few in any range but the first, not from the active ones.
    days = CUSTOMER_DAYS.c
    kept_in_range = (
        select(days.customer_id)
        .where(
            days.customer_id == C.customer_id,
            days.day >= C.first_order_on,
            days.day <= end,
            days.kept_orders > 0,
        )
        .exists()
    )
    new = (
        await session.execute(
            select(func.count()).where(
                C.first_order_on >= start, C.first_order_on <= end, kept_in_range
            )
        )
    ).scalar_one()
    return int(active_count), int(new)


async def _receivables(session: AsyncSession, *, start: date, end: date) -> dict[str, Decimal]:
    """Open invoices before and at the end of the range, and what moved them within it."""

    def total(*conditions: Any) -> Any:
        return func.coalesce(func.sum(R.amount).filter(*conditions), ZERO)

    during = and_(R.day >= start, R.day <= end)
    row = (
        await session.execute(
            select(
                total(R.day < start),
                total(R.day <= end),
                total(during, R.kind == "invoice"),
                total(during, R.kind.in_(("invoice", "credit", "cancel"))),
                total(during, R.kind.in_(("allocated", "released"))),
            ).where(R.day <= end)
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
        (await session.execute(select(table_of(CustomerFacts)).where(C.customer_id == customer_id)))
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


def _aged(as_of_date: date, due_date: Any, amount: Any) -> list[Any]:
    """Sums of `amount` by ageing bucket of its due date as of `as_of_date`, and in all."""

    def due_between(earliest: int, latest: int) -> Any:
        return and_(
            due_date >= as_of_date - timedelta(days=earliest),
            due_date <= as_of_date - timedelta(days=latest),
        )

    def bucket(condition: Any) -> Any:
        return func.coalesce(func.sum(amount).filter(condition), ZERO)

    return [
        bucket(due_date >= as_of_date).label("current"),
        bucket(due_between(30, 1)).label("d1_30"),
        bucket(due_between(60, 31)).label("d31_60"),
        bucket(due_between(90, 61)).label("d61_90"),
        bucket(due_date < as_of_date - timedelta(days=90)).label("over_90"),
        func.coalesce(func.sum(amount), ZERO).label("total"),
    ]


async def ageing(
    session: AsyncSession, *, as_of_date: date, limit: int, after: UUID | None = None
) -> list[dict[str, Any]]:
    """Open invoice amounts at the end of a day by days past each instalment's due date, for
    up to `limit` customers with something open, by customer id after `after`.

    Allocated payments pay an invoice's oldest instalments first, credit notes and
    cancellations take back its newest (shared/ageing.py is the reference). The consumer
    keeps what is open of each instalment now in `open_now`, which a day on or after the
    newest receivable move reads (nothing changed since), and what each day changed of it in
    `open_changes`, which an earlier day sums up to that day."""
    newest = (await session.execute(select(func.max(M.day)))).scalar()
    if newest is None or as_of_date >= newest:
        c = table_of(OpenNow).c
        query = select(c.customer_id, *_aged(as_of_date, c.due_date, c.amount))
    else:
        c = table_of(OpenChange).c
        query = select(c.customer_id, *_aged(as_of_date, c.due_date, c.amount)).where(
            c.day <= as_of_date
        )
    if after is not None:
        query = query.where(c.customer_id > after)
    query = (
        query.group_by(c.customer_id)
        .having(func.sum(c.amount) != 0)
        .order_by(c.customer_id)
        .limit(limit)
    )
    return [dict(row) for row in (await session.execute(query)).mappings()]


async def ageing_totals(session: AsyncSession, *, as_of_date: date) -> dict[str, Decimal]:
    """The ageing of every customer together at the end of a day."""
    c = table_of(OpenByDay).c
    query = select(*_aged(as_of_date, c.due_date, c.amount)).where(c.day <= as_of_date)
    return dict((await session.execute(query)).mappings().one())


async def salesperson_revenue(
    session: AsyncSession, *, start: date, end: date
) -> dict[str, Decimal]:
    rows = await sales(session, start=start, end=end, group_by="salesperson", filters={})
    return {row["key"] or "": row["revenue"] for row in rows}


TREND_METRICS = {
    "revenue": lambda rows: func.sum(rows.net - rows.returns_net),
    "orders": lambda rows: func.sum(rows.order_count),
    "units": lambda rows: func.sum(rows.units),
}


async def trend(
    session: AsyncSession,
    *,
    metric: str,
    interval: str,
    start: date,
    end: date,
    forecast: int,
    today: date,
) -> list[dict[str, Any]]:
    """Every bucket from start to end that has begun by `today` (empty ones as zero), then
    `forecast` predicted ones (none starting after 2999). Intervals still to come are not
    history: counting them as zeros would drag the line fitted through the history down."""
    end = min(end, today)
    rows = sales_rows(group_by=interval, filters={}, start=start, end=end).c
    bucket = cast(func.date_trunc(INTERVALS[interval], rows.day), Date).label("bucket")
    query = select(bucket, TREND_METRICS[metric](rows).label("value")).group_by(bucket)
    found = {row.bucket: Decimal(row.value or 0) for row in await session.execute(query)}
    history = buckets(start, end, interval)
    values = [found.get(b, Decimal(0)) for b in history]
    places = PLACES[metric]
    points = [
        {"bucket": b, "value": v.quantize(places, ROUND_HALF_UP), "forecast": False}
        for b, v in zip(history, values, strict=True)
    ]
    ahead = next_bucket(history[-1], interval) if history else bucket_start(start, interval)
    for predicted in linear_forecast(values, forecast):
        if ahead.year > Period.LAST_YEAR:
            break  # the books end with the year 2999, and so do the intervals predicted
        points.append(
            {"bucket": ahead, "value": predicted.quantize(places, ROUND_HALF_UP), "forecast": True}
        )
        ahead = next_bucket(ahead, interval)
    return points
