"""The close's ageing SQL (services/closing/balances.py) ages every customer exactly as the
Python reference (shared/ageing.py) does: instalments paid oldest first, credits taking back
the newest, spare credit paying the oldest open instalments, the rest current."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import col

from services.closing.balances import write_closed_balances
from services.closing.models import (
    ClosedBalance,
    CustomerActivity,
    Invoice,
    InvoiceInstalment,
    InvoiceMovement,
)
from shared import ageing
from shared.bulk import insert_rows
from shared.db import Database
from shared.ids import new_id
from shared.periods import Period
from shared.tables import table_of

D = Decimal
CENT = D("0.01")
_periods = itertools.count()


def fresh_period() -> Period:
    """A period no other test closes: ageing is written per (period, version)."""
    k = next(_periods)
    return Period(2900 + k // 12, k % 12 + 1)


amounts = st.integers(1, 300_000).map(lambda n: (D(n) / 100).quantize(CENT))


# Days past due, crowded at the bucket edges where an off-by-one would show.
lateness = st.sampled_from([-1, 0, 1, 30, 31, 60, 61, 90, 91]) | st.integers(-40, 200)


@st.composite
def invoices(draw: st.DrawFn, end: date) -> dict[str, Any]:
    """An invoice dated up to `end` (or after it, so that it must not count), with one to
    three instalments, and dated allocations (some released) and credits."""
    parts = draw(st.lists(amounts, min_size=1, max_size=3))
    if draw(st.integers(0, 9)) == 0:
        day = end + timedelta(days=draw(st.integers(1, 5)))
        dues = [day + timedelta(days=draw(st.integers(0, 60))) for _ in parts]
    else:
        dues = [end - timedelta(days=draw(lateness)) for _ in parts]
        day = min(min(dues), end) - timedelta(days=draw(st.integers(0, 30)))
    instalments = [ageing.Instalment(due, amount) for due, amount in zip(dues, parts, strict=True)]
    gross = sum(parts, D(0))
    moves = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["allocation", "credit", "release"]),
                st.integers(0, 110),  # percent of the gross
                st.integers(-10, 60),  # days after the invoice (some after `end`)
            ),
            max_size=4,
        )
    )
    movements = [
        (
            "credit" if kind == "credit" else "allocation",
            day + timedelta(days=after),
            (gross * percent / 100 * (-1 if kind == "release" else 1)).quantize(CENT),
        )
        for kind, percent, after in moves
    ]
    return {"day": day, "instalments": instalments, "gross": gross, "movements": movements}


@st.composite
def customers(draw: st.DrawFn, end: date) -> dict[str, Any]:
    bills = draw(st.lists(invoices(end), max_size=4))
    invoiced = sum((b["gross"] for b in bills if b["day"] <= end), D(0))
    # Whatever the invoices, the customer may have paid less, more (in credit) or exactly.
    received = (invoiced * draw(st.integers(0, 130)) / 100).quantize(CENT)
    return {"id": new_id(), "invoices": bills, "invoiced": invoiced, "received": received}


def reference(customer: dict[str, Any], end: date) -> dict[str, Decimal]:
    counted = [b for b in customer["invoices"] if b["day"] <= end]
    return ageing.age_customer(
        (
            ageing.Invoice(
                instalments=b["instalments"],
                allocated=sum(
                    (a for k, d, a in b["movements"] if k == "allocation" and d <= end), D(0)
                ),
                credited=sum((a for k, d, a in b["movements"] if k == "credit" and d <= end), D(0)),
            )
            for b in counted
        ),
        closing=customer["invoiced"] - customer["received"],
        on=end,
    )


async def write(db: Database, period: Period, people: list[dict[str, Any]]) -> None:
    invoice_rows: list[dict[str, Any]] = []
    instalment_rows: list[dict[str, Any]] = []
    movement_rows: list[dict[str, Any]] = []
    activity_rows: list[dict[str, Any]] = []
    for person in people:
        activity_rows.append(
            {
                "period": str(period),
                "customer_id": person["id"],
                "invoiced": person["invoiced"],
                "returned": D(0),
                "received": person["received"],
                "refunded": D(0),
            }
        )
        for bill in person["invoices"]:
            order_id = new_id()
            invoice_rows.append(
                {
                    "order_id": order_id,
                    "customer_id": person["id"],
                    "invoice_number": f"INV-{order_id.hex[:8]}",
                    "business_date": bill["day"],
                    "due_date": bill["instalments"][0].due_date,
                    "gross": bill["gross"],
                }
            )
            # As the ledger writes them: in payment order, each with its running sum.
            upto = D(0)
            numbered = sorted(
                (i.due_date, seq, i.amount) for seq, i in enumerate(bill["instalments"], 1)
            )
            for due, seq, amount in numbered:
                upto += amount
                instalment_rows.append(
                    {
                        "order_id": order_id,
                        "seq": seq,
                        "customer_id": person["id"],
                        "business_date": bill["day"],
                        "due_date": due,
                        "amount": amount,
                        "upto": upto,
                        "gross": bill["gross"],
                    }
                )
            movement_rows.extend(
                {
                    "order_id": order_id,
                    "customer_id": person["id"],
                    "kind": kind,
                    "business_date": day,
                    "amount": amount,
                }
                for kind, day, amount in bill["movements"]
            )
    async with db.transaction() as session:
        for model, rows in (
            (Invoice, invoice_rows),
            (InvoiceInstalment, instalment_rows),
            (InvoiceMovement, movement_rows),
            (CustomerActivity, activity_rows),
        ):
            if rows:
                await insert_rows(session, table_of(model), rows)
        await write_closed_balances(
            session, period=str(period), version=1, end=period.last_day, previous=None
        )


async def stored_ageing(db: Database, period: Period) -> dict[UUID, dict[str, Decimal]]:
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(ClosedBalance).where(
                    col(ClosedBalance.period) == str(period), col(ClosedBalance.version) == 1
                )
            )
        ).scalars()
        return {r.customer_id: {b: getattr(r, b) for b in ageing.BUCKETS} for r in rows}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
async def test_the_close_ages_as_the_reference(migrated: str, data: st.DataObject) -> None:
    period = fresh_period()
    people = data.draw(st.lists(customers(period.last_day), min_size=1, max_size=4))
    db = Database(migrated, pool_size=1, max_overflow=0)
    try:
        await write(db, period, people)
        stored = await stored_ageing(db, period)
    finally:
        await db.dispose()
    assert stored == {p["id"]: reference(p, period.last_day) for p in people}
