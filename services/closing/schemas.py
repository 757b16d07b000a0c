"""Request and response models of the closing API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.limits import PeriodText, each_once, text
from shared.money import Money

Reason = Annotated[str, *text(strip=True, min_length=1, max_length=1000)]
"""Why: more than white space. Two characters are a reason in Chinese (错账, 未收)."""
Note = Annotated[str, *text(max_length=1000)]
DocumentNumber = Annotated[str, *text(min_length=1, max_length=80)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReopenRequest(_Input):
    reason: Reason


class Ageing(BaseModel):
    current: Money
    d1_30: Money
    d31_60: Money
    d61_90: Money
    over_90: Money


class BalanceRow(BaseModel):
    customer_id: UUID
    opening: Money
    invoiced: Money
    returned: Money
    received: Money
    refunded: Money
    closing: Money
    ageing: Ageing


class PeriodPublic(BaseModel):
    period: str
    status: str
    version: int
    close_id: UUID | None
    totals: dict[str, Any] | None
    control_totals: dict[str, Any]
    progress: dict[str, Any] | None
    problem: str | None
    hash: str | None
    closed_at: datetime | None
    requested_by: str | None
    requested_at: datetime | None


class TrialBalance(BaseModel):
    period: str
    status: str
    lines: list[dict[str, str]]
    debits: Money
    credits: Money
    balanced: bool


class StatementLine(BaseModel):
    date: date
    kind: str
    document: str | None
    document_id: UUID
    period: str
    late: bool
    debit: Money
    credit: Money
    balance: Money


class CustomerStatement(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    customer_id: UUID
    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    opening: Money
    lines: list[StatementLine]
    closing: Money


class StatementSend(_Input):
    customer_id: UUID
    period: PeriodText


class StatementConfirm(_Input):
    note: Note | None = None


class StatementDispute(_Input):
    reason: Reason
    documents: Annotated[
        list[DocumentNumber],
        Field(min_length=1, max_length=500),
        each_once(lambda number: f"document {number}"),
    ]


class StatementPublic(BaseModel):
    id: UUID
    customer_id: UUID
    period: str
    version: int
    closing: Money
    status: str
    sent_by: str
    sent_at: datetime
    responded_by: str | None
    responded_at: datetime | None
    reason: str | None
    disputed_documents: list[str] | None


class VersionPublic(BaseModel):
    period: str
    version: int
    hash: str
    previous_hash: str | None
    closed_at: datetime
    closed_by: str | None
    totals: dict[str, Any]
    reopened_at: datetime | None
    reopened_by: str | None
    reopen_reason: str | None
    current: bool
