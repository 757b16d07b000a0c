"""Control events of the month-end close on `salesbook.closing` (and the sources' cutoffs).

The protocol: closing emits `period.close_requested`; orders and payments each lock the
period and answer, on their own topic, with `period.cutoff` carrying control totals; closing
completes when its ledger matches every total exactly and emits `period.closed`.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.events.envelope import EventPayload, payload_type
from shared.money import EventMoney

SOURCE = "closing"
CONTROL_KEY = "period-control"  # the key of control events; they are not about one customer

# Document kinds whose counts and sums the sources report at cutoff.
ORDERS_KINDS = ("invoice", "credit_note", "cancellation")
PAYMENTS_KINDS = ("payment", "refund")


class ControlTotal(BaseModel):
    model_config = ConfigDict(frozen=True)

    count: int
    amount: EventMoney


@payload_type("period.close_requested")
class PeriodCloseRequested(EventPayload):
    period: str
    close_id: UUID
    requested_by: str
    requested_at: datetime


@payload_type("period.cutoff")
class PeriodCutoff(EventPayload):
    """A source locked the period; these are its documents dated into it, by kind.

    When the source still holds documents in an earlier period that is not locked, it does
    not lock and says why in `refused`: periods close in order, and the source knows its
    documents before closing has seen them all.
    """

    period: str
    close_id: UUID
    source: str
    control_totals: dict[str, ControlTotal]
    locked_at: datetime
    refused: str | None = None


@payload_type("period.close_aborted")
class PeriodCloseAborted(EventPayload):
    """A close that cannot complete was given up; the sources unlock the period."""

    period: str
    close_id: UUID
    reason: str


@payload_type("period.closed")
class PeriodClosed(EventPayload):
    period: str
    version: int
    hash: str
    closed_at: datetime
    customers: int
    closing_total: EventMoney


@payload_type("period.reopened")
class PeriodReopened(EventPayload):
    period: str
    version: int
    reason: str
    reopened_by: str
    reopened_at: datetime
