"""Request and response models of the analytics API. Ratios are decimal strings with four
places; a ratio whose denominator is zero is null."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from shared.limits import Amount, PeriodText, each_once, text
from shared.money import Money

Ratio = Annotated[Decimal, PlainSerializer(lambda v: str(v), return_type=str, when_used="json")]
Units = Annotated[Decimal, PlainSerializer(lambda v: str(v), return_type=str, when_used="json")]


class Fresh(BaseModel):
    as_of: datetime | None = Field(description="when the newest event applied happened")


class SalesRow(BaseModel):
    key: str | None
    net: Money
    tax: Money
    gross: Money
    orders: int
    units: Units
    returns: Money
    cancellations: Money
    revenue: Money


class SalesReport(Fresh):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    group_by: str
    rows: list[SalesRow]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class Kpis(Fresh):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    revenue: Money
    net_sales: Money
    returns_net: Money
    orders: int
    average_order_value: Money | None
    units_per_order: Ratio | None
    return_rate: Ratio | None
    submitted: int
    confirmed: int
    conversion_rate: Ratio | None
    active_customers: int
    new_customers: int
    returning_customers: int
    average_customer_lifetime_value: Money | None
    receivables_open: Money
    days_sales_outstanding: Ratio | None
    collected: Money
    collection_rate: Ratio | None


class Lifetime(Fresh):
    customer_id: UUID
    name: str
    first_order_on: date | None
    last_order_on: date | None
    orders: int
    units: Units
    net_sales: Money
    returns_net: Money
    revenue: Money
    gross: Money
    invoiced: Money
    paid: Money
    outstanding: Money


class TopRow(BaseModel):
    rank: int
    key: str | None
    revenue: Money
    net: Money
    orders: int
    units: Units


class TopReport(Fresh):
    dimension: str
    rows: list[TopRow]


class AgeingTotals(BaseModel):
    current: Money
    d1_30: Money
    d31_60: Money
    d61_90: Money
    over_90: Money
    total: Money


class AgeingRow(AgeingTotals):
    customer_id: UUID


class AgeingReport(Fresh):
    as_of_date: date
    rows: list[AgeingRow]
    totals: AgeingTotals = Field(description="over every customer, not only this page's")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class TrendPoint(BaseModel):
    bucket: date
    value: Ratio
    forecast: bool


class TrendReport(Fresh):
    metric: str
    interval: str
    method: str | None
    points: list[TrendPoint]


Salesperson = Annotated[str, *text(strip=True, min_length=1, max_length=100)]


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    salesperson: Salesperson
    period: PeriodText
    amount: Amount


class TargetsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: Annotated[
        list[TargetIn],
        Field(min_length=1, max_length=1000),
        each_once(lambda t: f"the target of {t.salesperson} for {t.period}"),
    ]


class TargetRow(BaseModel):
    salesperson: str
    period: str
    target: Money | None
    revenue: Money
    attainment: Ratio | None


class Attainment(Fresh):
    period: str
    rows: list[TargetRow]


class SavedTargets(Fresh):
    """The targets just set, each with its attainment as it stands."""

    targets: list[TargetRow]
