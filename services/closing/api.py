"""HTTP routes of the closing service under /v1/closing: parse, authorise, call the service."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.closing import queries, service, statements
from services.closing.models import SCHEMA
from services.closing.schemas import (
    BalanceRow,
    CustomerStatement,
    PeriodPublic,
    ReopenRequest,
    StatementConfirm,
    StatementDispute,
    StatementPublic,
    StatementSend,
    TrialBalance,
    VersionPublic,
)
from shared import periods
from shared.audit import audit_router
from shared.auth import Actor, Role, require
from shared.clock import business_today
from shared.csvout import csv_response, wants_csv
from shared.db import request_session
from shared.idempotency import IdempotencyKey, idempotent
from shared.limits import INT32_MAX, BalanceFigure, BusinessDate, PeriodText
from shared.messaging.admin import stuck_problem
from shared.openapi import CSV_ANSWER, conflict
from shared.pagination import (
    MAX_LIMIT,
    NEXT_CURSOR,
    Page,
    PageParams,
    cursor_uuid,
    cut_page,
    decode_cursor,
    page_params,
)
from shared.strict import StrictRoute

router = APIRouter(route_class=StrictRoute, prefix="/closing", tags=["closing"])
router.include_router(audit_router(schema=SCHEMA, path="/audit"))

Session = Depends(request_session, scope="function")
READERS = (Role.FINANCE, Role.ANALYST)
PeriodPath = Annotated[PeriodText, Path(description="YYYY-MM")]


def stuck_for_close(request: Request) -> str | None:
    """The events a close is waiting for that a subscription of this process is stuck on."""
    return stuck_problem(request.app.state.workers, service.CLOSE_SUBSCRIPTIONS)


@router.get("/periods", response_model=list[PeriodPublic])
async def list_periods(
    request: Request, session: AsyncSession = Session, _: Actor = Depends(require(*READERS))
) -> list[PeriodPublic]:
    """Every period that holds documents or has been closed, oldest first."""
    stuck = stuck_for_close(request)
    return [
        await queries.period_public(session, p, stuck=stuck)
        for p in await queries.list_periods(session)
    ]


@router.get("/periods/{period}", response_model=PeriodPublic)
async def read_period(
    period: PeriodPath,
    request: Request,
    session: AsyncSession = Session,
    _: Actor = Depends(require(*READERS)),
) -> PeriodPublic:
    """A period's status, totals, control totals, close progress and hash; while closing,
    `problem` names any event the close waits for that a consumer is stuck on."""
    row = await queries.read_period(session, period)
    return await queries.period_public(session, row, stuck=stuck_for_close(request))


@router.post(
    "/periods/{period}/close",
    status_code=202,
    response_model=PeriodPublic,
    responses=conflict("The period is not open, or an earlier period is not closed yet"),
)
async def close_period(
    period: PeriodPath,
    today: date = Depends(business_today),
    session: AsyncSession = Session,
    actor: Actor = Depends(require(Role.FINANCE)),
) -> PeriodPublic:
    """Close a month (结账): the sources lock it, the ledger is matched against their control
    totals, then balances are computed. Returns at once; poll the period for progress."""
    row = await service.request_close(session=session, period=period, actor=actor, today=today)
    return await queries.period_public(session, row)


@router.post(
    "/periods/{period}/reopen",
    response_model=PeriodPublic,
    responses=conflict("Only a closed period can be reopened"),
)
async def reopen_period(
    period: PeriodPath,
    body: ReopenRequest,
    session: AsyncSession = Session,
    actor: Actor = Depends(require(Role.ADMIN)),
) -> PeriodPublic:
    """Reopen a closed month (admin, with a reason); later closed months become stale."""
    row = await service.reopen(session=session, period=period, reason=body.reason, actor=actor)
    return await queries.period_public(session, row)


BALANCE_COLUMNS = (
    "customer_id",
    "opening",
    "invoiced",
    "returned",
    "received",
    "refunded",
    "closing",
    "current",
    "d1_30",
    "d31_60",
    "d61_90",
    "over_90",
)


@router.get(
    "/periods/{period}/balances",
    response_model=Page[BalanceRow],
    responses={
        **CSV_ANSWER,
        **conflict("The period is not closed: its balances exist once it is"),
    },
)
async def period_balances(
    period: PeriodPath,
    request: Request,
    customer_id: UUID | None = None,
    min_closing: BalanceFigure | None = None,
    overdue_only: bool = False,
    version: int | None = Query(default=None, ge=1, le=INT32_MAX),
    page: PageParams = Depends(page_params),
    session: AsyncSession = Session,
    _: Actor = Depends(require(*READERS)),
) -> Page[BalanceRow] | Response:
    """Per-customer balances of a closed period, by customer id; CSV with Accept: text/csv."""
    rows = await queries.balances(
        session,
        period=period,
        version=version,
        customer_id=customer_id,
        min_closing=min_closing,
        overdue_only=overdue_only,
        after=cursor_uuid(page.after) if page.after else None,
        limit=page.limit,
    )
    kept, cursor = cut_page(rows, limit=page.limit, key=lambda b: str(b.customer_id))
    items = [queries.balance_row(b) for b in kept]
    if wants_csv(request):
        flat = [
            {**i.model_dump(mode="json", exclude={"ageing"}), **i.ageing.model_dump(mode="json")}
            for i in items
        ]
        return csv_response(flat, BALANCE_COLUMNS, filename=f"balances-{period}.csv")
    return Page[BalanceRow](items=items, next_cursor=cursor)


@router.get("/periods/{period}/trial-balance", response_model=TrialBalance)
async def period_trial_balance(
    period: PeriodPath, session: AsyncSession = Session, _: Actor = Depends(require(*READERS))
) -> TrialBalance:
    """Debits and credits per account posted into the period (frozen once closed)."""
    periods.Period.parse(period)
    return await queries.trial_balance_of(session, period)


@router.get("/periods/{period}/reconciliation")
async def period_reconciliation(
    period: PeriodPath,
    request: Request,
    session: AsyncSession = Session,
    _: Actor = Depends(require(*READERS)),
) -> dict:
    """Late events, failed pending allocations, overpaid orders, credit balances,
    control-total mismatches and allocations pending too long of a period."""
    periods.Period.parse(period)
    after = request.app.state.settings.pending_allocation_report_after_seconds
    return await queries.reconciliation(
        session, period, pending_report_after=timedelta(seconds=after)
    )


@router.get("/periods/{period}/verify", responses=conflict("Only a closed period can be verified"))
async def verify_period(
    period: PeriodPath, session: AsyncSession = Session, _: Actor = Depends(require(*READERS))
) -> dict:
    """Recompute a closed period from the ledger; check its hash chain and trial balance."""
    return await queries.verify(session, period)


@router.get("/periods/{period}/versions", response_model=list[VersionPublic])
async def period_versions(
    period: PeriodPath, session: AsyncSession = Session, _: Actor = Depends(require(*READERS))
) -> list[VersionPublic]:
    """Every close of the period, oldest first, with who reopened it and why."""
    return await queries.versions(session, period)


@router.get("/periods/{period}/versions/diff")
async def period_version_diff(
    period: PeriodPath,
    from_version: int = Query(alias="from", ge=1, le=INT32_MAX),
    to_version: int = Query(alias="to", ge=1, le=INT32_MAX),
    session: AsyncSession = Session,
    _: Actor = Depends(require(*READERS)),
) -> dict:
    """Balance changes between two closes of one period."""
    periods.Period.parse(period)
    return await queries.version_diff(session, period, from_version, to_version)


STATEMENT_COLUMNS = (
    "date",
    "kind",
    "document",
    "document_id",
    "period",
    "late",
    "debit",
    "credit",
    "balance",
)


@router.get(
    "/customers/{customer_id}/statement",
    response_model=CustomerStatement,
    responses=CSV_ANSWER,
)
async def customer_statement(
    customer_id: UUID,
    request: Request,
    date_from: Annotated[BusinessDate, Query(alias="from")],
    date_to: Annotated[BusinessDate, Query(alias="to")],
    session: AsyncSession = Session,
    _: Actor = Depends(require(*READERS, Role.SALES)),
) -> Response | CustomerStatement:
    """对账单: opening balance, every document in date order with running balance, closing."""
    statement = await statements.customer_statement(
        session, customer_id=customer_id, date_from=date_from, date_to=date_to
    )
    if wants_csv(request):
        rows = [line.model_dump(mode="json") for line in statement.lines]
        opening = {"kind": "opening", "balance": str(statement.opening), "date": str(date_from)}
        closing = {"kind": "closing", "balance": str(statement.closing), "date": str(date_to)}
        return csv_response(
            [opening, *rows, closing],
            STATEMENT_COLUMNS,
            filename=f"statement-{customer_id}-{date_from}-{date_to}.csv",
        )
    return statement


@router.post(
    "/statements",
    status_code=201,
    response_model=StatementPublic,
    responses=conflict("The period is not closed, or the statement exists"),
)
async def send_statement(
    body: StatementSend,
    idempotency_key: IdempotencyKey = None,
    session: AsyncSession = Session,
    actor: Actor = Depends(require(Role.FINANCE)),
) -> JSONResponse:
    """Send a closed period's statement to a customer for confirmation."""

    async def create() -> StatementPublic:
        statement = await statements.send_statement(
            session=session, customer_id=body.customer_id, period=body.period, actor=actor
        )
        return StatementPublic.model_validate(statement, from_attributes=True)

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=idempotency_key,
        endpoint="POST /v1/closing/statements",
        body=body,
        create=create,
    )


@router.get(
    "/statements",
    response_model=list[StatementPublic],
    responses={
        200: {
            "headers": {
                NEXT_CURSOR: {
                    "description": "with `limit`, the `cursor` of the next page, if any",
                    "schema": {"type": "string"},
                }
            }
        }
    },
)
async def list_statements(
    response: Response,
    status: str | None = Query(default=None, pattern="^(sent|confirmed|disputed)$"),
    period: Annotated[PeriodText | None, Query(description="YYYY-MM")] = None,
    customer_id: UUID | None = None,
    limit: int | None = Query(
        None, ge=1, le=MAX_LIMIT, description="Statements per page (default: every one)"
    ),
    cursor: str | None = Query(None, description=f"{NEXT_CURSOR} of the previous page"),
    session: AsyncSession = Session,
    _: Actor = Depends(require(*READERS)),
) -> list[StatementPublic]:
    """Statements sent for confirmation, by id; `status=disputed` lists the open disputes.
    With `limit`, one page, and the next page's cursor in X-Next-Cursor."""
    after = cursor_uuid(decode_cursor(cursor)) if cursor else None
    rows = await queries.statements(
        session,
        status=status,
        period=period,
        customer_id=customer_id,
        after=after,
        limit=None if limit is None else limit + 1,
    )
    if limit is not None:
        rows, next_cursor = cut_page(rows, limit=limit, key=lambda s: str(s.id))
        if next_cursor is not None:
            response.headers[NEXT_CURSOR] = next_cursor
    return [StatementPublic.model_validate(s, from_attributes=True) for s in rows]


@router.post(
    "/statements/{statement_id}/confirm",
    response_model=StatementPublic,
    responses=conflict("The statement was already confirmed or disputed"),
)
async def confirm_statement(
    statement_id: UUID,
    body: StatementConfirm | None = None,
    session: AsyncSession = Session,
    actor: Actor = Depends(require(Role.FINANCE, Role.SALES)),
) -> StatementPublic:
    """Record that the customer confirmed the statement."""
    statement = await statements.answer_statement(
        session=session,
        statement_id=statement_id,
        actor=actor,
        confirmed=True,
        reason=body.note if body else None,
        documents=None,
    )
    return StatementPublic.model_validate(statement, from_attributes=True)


@router.post(
    "/statements/{statement_id}/dispute",
    response_model=StatementPublic,
    responses=conflict("The statement was already confirmed or disputed"),
)
async def dispute_statement(
    statement_id: UUID,
    body: StatementDispute,
    session: AsyncSession = Session,
    actor: Actor = Depends(require(Role.FINANCE, Role.SALES)),
) -> StatementPublic:
    """Record that the customer disputes the statement, with the reason and documents."""
    statement = await statements.answer_statement(
        session=session,
        statement_id=statement_id,
        actor=actor,
        confirmed=False,
        reason=body.reason,
        documents=body.documents,
    )
    return StatementPublic.model_validate(statement, from_attributes=True)
