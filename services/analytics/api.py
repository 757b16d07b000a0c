"""HTTP routes of the analytics service under /v1/analytics: parse, authorise, read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import dashboard, domain, queries, service
from services.analytics.models import SCHEMA
from services.analytics.schemas import (
    AgeingReport,
    AgeingRow,
    AgeingTotals,
    Attainment,
    Fresh,
    Kpis,
    Lifetime,
    SalesReport,
    SalesRow,
    SavedTargets,
    TargetRow,
    TargetsIn,
    TopReport,
    TopRow,
    TrendPoint,
    TrendReport,
)
from shared.audit import audit_router
from shared.auth import Actor, Role, require
from shared.clock import business_today
from shared.csvout import csv_response, wants_csv
from shared.db import request_session
from shared.errors import InvalidInput, NotFound
from shared.limits import MAX_YEAR, MIN_YEAR, BusinessDate, PeriodText, text
from shared.openapi import CSV_ANSWER
from shared.pagination import NEXT_CURSOR, cursor_uuid, cut_page, decode_cursor
from shared.responses import json_answer
from shared.strict import StrictRoute

router = APIRouter(route_class=StrictRoute, prefix="/analytics", tags=["analytics"])
router.include_router(audit_router(schema=SCHEMA, path="/audit"))

Session = Depends(request_session, scope="function")
READERS = Depends(require(Role.ANALYST, Role.FINANCE))
MAX_ROWS = 10000
Dimension = Annotated[str, *text(max_length=100)]
"""A filter on a dimension analytics keeps (its columns hold 100 characters)."""
TOP_DIMENSIONS = {"product": "product", "customer": "customer", "salesperson": "salesperson"}


MOST_INTERVALS = 5000


def _range(start: date, end: date) -> None:
    if start > end:
        raise InvalidInput("from", f"{start} is after to ({end})")


def _choice(field: str, value: str, allowed: tuple[str, ...] | dict[str, Any]) -> None:
    if value not in allowed:
        raise InvalidInput(field, f"{value!r} is not one of {', '.join(allowed)}")


AS_OF = "X-As-Of"
CSV_ROWS: dict[int | str, dict[str, Any]] = {
    200: {
        **CSV_ANSWER[200],
        "headers": {
            AS_OF: {
                "description": "On a CSV answer: the report's `as_of`, the time of the newest "
                "event applied (absent while none has been).",
                "schema": {"type": "string", "format": "date-time"},
            }
        },
    }
}
"""`responses=` of a report that answers CSV rows, its freshness in a header."""


def _csv_answer(
    report: Fresh, rows: Sequence[dict[str, Any]], columns: list[str], name: str
) -> Response:
    answer = csv_response(rows, columns, filename=name)
    if report.as_of is not None:  # written as the JSON answer writes it
        answer.headers[AS_OF] = Fresh(as_of=report.as_of).model_dump(mode="json")["as_of"]
    return answer


def _list_answer(
    request: Request, report: Fresh, rows: Sequence[BaseModel], columns: list[str], name: str
) -> Response:
    """The report as JSON, or its rows as CSV (how fresh, in X-As-Of) when the client asks
    for text/csv."""
    if wants_csv(request):
        return _csv_answer(report, [r.model_dump(mode="json") for r in rows], columns, name)
    return json_answer(report)


def _paged_answer(
    request: Request,
    report: Fresh,
    rows: Sequence[BaseModel],
    columns: list[str],
    name: str,
    next_cursor: str | None,
) -> Response:
    """A page as `_list_answer` gives it; as CSV, the next page's cursor in X-Next-Cursor."""
    answer = _list_answer(request, report, rows, columns, name)
    if wants_csv(request) and next_cursor:
        answer.headers[NEXT_CURSOR] = next_cursor
    return answer


def sales_key_after(cursor: str | None) -> str | None:
    """The group key a sales cursor points after."""
    if not cursor:
        return None
    marked = decode_cursor(cursor)
    if not marked.startswith("k"):
        raise InvalidInput("cursor", "not a cursor this API returned")
    return marked[1:]


@router.get("/sales", response_model=SalesReport, response_model_by_alias=True, responses=CSV_ROWS)
async def sales(
    request: Request,
    start: Annotated[BusinessDate, Query(alias="from")],
    end: Annotated[BusinessDate, Query(alias="to")],
    group_by: str = Query("day", json_schema_extra={"enum": list(queries.GROUPS)}),
    channel: Dimension | None = None,
    region: Dimension | None = None,
    salesperson: Dimension | None = None,
    category: Dimension | None = None,
    customer_id: UUID | None = None,
    sku: Dimension | None = None,
    limit: int = Query(1000, ge=1, le=MAX_ROWS),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
    session: AsyncSession = Session,
    _: Actor = READERS,
) -> Any:
    """Net, tax, gross, orders, units and returns per group, by group key, a page at a time;
    filters combine with AND."""
    _range(start, end)
    _choice("group_by", group_by, queries.GROUPS)
    filters = {
        "channel": channel,
        "region": region,
        "salesperson": salesperson,
        "category": category,
        "customer_id": customer_id,
        "sku": sku,
    }
    found = await queries.sales(
        session,
        start=start,
        end=end,
        group_by=group_by,
        filters=filters,
        limit=limit + 1,
        after=sales_key_after(cursor),
    )
    # The key is kept behind a marker so that the empty key (rows with no salesperson,
    # region or category) still makes a cursor, which "" would not.
    page, next_cursor = cut_page(found, limit=limit, key=lambda r: "k" + (r["key"] or ""))
    rows = [SalesRow.model_validate(r) for r in page]
    report = SalesReport(
        as_of=await queries.as_of(session),
        start=start,
        end=end,
        group_by=group_by,
        rows=rows,
        next_cursor=next_cursor,
    )
    return _paged_answer(
        request, report, rows, list(SalesRow.model_fields), "sales.csv", next_cursor
    )


@router.get("/kpis", response_model=Kpis, response_model_by_alias=True, responses=CSV_ROWS)
async def kpis(
    request: Request,
    start: Annotated[BusinessDate, Query(alias="from")],
    end: Annotated[BusinessDate, Query(alias="to")],
    session: AsyncSession = Session,
    _: Actor = READERS,
) -> Any:
    """Revenue, orders, order value, returns, conversion, customers, DSO and collection rate."""
    _range(start, end)
    report = Kpis(
        as_of=await queries.as_of(session),
        start=start,
        end=end,
        **await queries.kpis(session, start=start, end=end),
    )
    if wants_csv(request):
        row = report.model_dump(mode="json", by_alias=True)
        return _csv_answer(report, [row], list(row), "kpis.csv")
    return report


@router.get("/customers/{customer_id}/lifetime", response_model=Lifetime)
async def customer_lifetime(
    customer_id: UUID, session: AsyncSession = Session, _: Actor = READERS
) -> Lifetime:
    """A customer's orders, revenue, payments and open balance over their whole history."""
    found = await queries.lifetime(session, customer_id)
    if found is None:
        raise NotFound(f"no sales recorded for customer {customer_id}")
    return Lifetime(as_of=await queries.as_of(session), **found)


@router.get("/top", response_model=TopReport, responses=CSV_ROWS)
async def top(
    request: Request,
    dimension: str = Query("product", json_schema_extra={"enum": list(TOP_DIMENSIONS)}),
    limit: int = Query(10, ge=1, le=1000),
    start: Annotated[BusinessDate, Query(alias="from")] = date(MIN_YEAR, 1, 1),
    end: Annotated[BusinessDate, Query(alias="to")] = date(MAX_YEAR, 12, 31),
    session: AsyncSession = Session,
    _: Actor = READERS,
) -> Any:
    """The best products, customers or salespeople by revenue, best first."""
    _range(start, end)
    _choice("dimension", dimension, TOP_DIMENSIONS)
    if dimension == "customer" and await queries.holds_every_sale(session, start=start, end=end):
        found = await queries.top_customers_ever(session, limit=limit)
    else:
        found = await queries.sales(
            session,
            start=start,
            end=end,
            group_by=TOP_DIMENSIONS[dimension],
            filters={},
            order_by_revenue=True,
            limit=limit,
        )
    rows = [
        TopRow(rank=i, **{k: r[k] for k in ("key", "revenue", "net", "orders", "units")})
        for i, r in enumerate(found, start=1)
    ]
    report = TopReport(as_of=await queries.as_of(session), dimension=dimension, rows=rows)
    return _list_answer(request, report, rows, list(TopRow.model_fields), "top.csv")


@router.get("/ar-ageing", response_model=AgeingReport, responses=CSV_ROWS)
async def ar_ageing(
    request: Request,
    as_of: Annotated[
        BusinessDate | None,
        Query(description="the day to age at; default today in the business time zone"),
    ] = None,
    limit: int = Query(1000, ge=1, le=MAX_ROWS),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
    today: date = Depends(business_today),
    session: AsyncSession = Session,
    _: Actor = READERS,
) -> Any:
    """Open invoice amounts per customer by days past due, as they stood at the end of as_of,
    a page of customers at a time by customer id; totals are over every customer."""
    day = as_of or today
    after = cursor_uuid(decode_cursor(cursor)) if cursor else None
    found = await queries.ageing(session, as_of_date=day, limit=limit + 1, after=after)
    page, next_cursor = cut_page(found, limit=limit, key=lambda r: str(r["customer_id"]))
    # Sums of NUMERIC(18, 2) columns are amounts already: validating a thousand rows' six
    # amounts again would cost more than the query.
    rows = [AgeingRow.model_construct(**r) for r in page]
    report = AgeingReport(
        as_of=await queries.as_of(session),
        as_of_date=day,
        rows=rows,
        totals=AgeingTotals.model_validate(await queries.ageing_totals(session, as_of_date=day)),
        next_cursor=next_cursor,
    )
    columns = ["customer_id", *AgeingTotals.model_fields]
    return _paged_answer(request, report, rows, columns, "ar-ageing.csv", next_cursor)


@router.get("/trend", response_model=TrendReport, responses=CSV_ROWS)
async def trend_report(
    request: Request,
    start: Annotated[BusinessDate, Query(alias="from")],
    end: Annotated[BusinessDate, Query(alias="to")],
    metric: str = Query("revenue", json_schema_extra={"enum": list(queries.TREND_METRICS)}),
    interval: str = Query(
        "month",
        json_schema_extra={"enum": list(domain.INTERVALS)},
        description=f"At most {MOST_INTERVALS:,} intervals from `from` to `to` (422 beyond).",
    ),
    forecast: int = Query(0, ge=0, le=366),
    today: date = Depends(business_today),
    session: AsyncSession = Session,
    _: Actor = READERS,
) -> Any:
    """A metric per interval from `from` to `to`, then `forecast` predicted intervals."""
    _range(start, end)
    _choice("metric", metric, queries.TREND_METRICS)
    _choice("interval", interval, domain.INTERVALS)
    if len(domain.buckets(start, end, interval)) > MOST_INTERVALS:
        raise InvalidInput("from", "too many intervals; choose a shorter range or longer interval")
    points = [
        TrendPoint.model_validate(p)
        for p in await queries.trend(
            session,
            metric=metric,
            interval=interval,
            start=start,
            end=end,
            forecast=forecast,
            today=today,
        )
    ]
    report = TrendReport(
        as_of=await queries.as_of(session),
        metric=metric,
        interval=interval,
        method=domain.METHOD if forecast else None,
        points=points,
    )
    return _list_answer(request, report, points, list(TrendPoint.model_fields), "trend.csv")


@router.put("/targets", response_model=SavedTargets)
async def put_targets(
    body: TargetsIn,
    session: AsyncSession = Session,
    actor: Actor = Depends(require(Role.FINANCE)),
) -> SavedTargets:
    """Set revenue targets per salesperson and period (YYYY-MM), each pair once (422 names
    a repeat); answers each with its attainment as it stands."""
    saved = await service.set_targets(session=session, targets=body.targets, actor=actor)
    # Each target as attainment reads it now: the month's revenue so far against it.
    by_period: dict[str, dict[str, dict[str, Any]]] = {}
    for period in sorted({t.period for t in saved}):
        by_period[period] = {
            r["salesperson"]: r for r in await service.attainment(session=session, period=period)
        }
    return SavedTargets(
        as_of=await queries.as_of(session),
        targets=[TargetRow.model_validate(by_period[t.period][t.salesperson]) for t in saved],
    )


@router.get("/targets/attainment", response_model=Attainment, responses=CSV_ROWS)
async def attainment(
    request: Request,
    period: Annotated[PeriodText, Query(description="YYYY-MM")],
    session: AsyncSession = Session,
    _: Actor = READERS,
) -> Any:
    """Revenue against target per salesperson in a month (YYYY-MM)."""
    rows = [
        TargetRow.model_validate(r)
        for r in await service.attainment(session=session, period=period)
    ]
    report = Attainment(as_of=await queries.as_of(session), period=period, rows=rows)
    return _list_answer(request, report, rows, list(TargetRow.model_fields), "attainment.csv")


# The page and its script carry no figures, so a browser can open them without a token; the
# script then calls the endpoints above with the token the user enters.
@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page() -> HTMLResponse:
    return HTMLResponse(dashboard.PAGE)


@router.get("/dashboard.js", include_in_schema=False)
async def dashboard_script() -> Response:
    return Response(dashboard.SCRIPT, media_type="text/javascript; charset=utf-8")


@router.get("/dashboard-colours.json", include_in_schema=False)
async def dashboard_colours() -> Response:
    return Response(dashboard.COLOURS_JSON, media_type="application/json")
