"""orders: releases of payment allocations kept by their own id; `paid` repaired after partial
releases

Until payment.allocation_released version 2, a partial release (a refund or a credit note
that took only part of an allocation) named a new id for the released part, which no
payment.allocated had carried: this schema stored it as an unapplied payment_allocations row
of its own and never took it out of the order's `paid`. A release in full named the
allocation itself and took out the amount the allocation was first counted with, so an
allocation first split and later released in full nets out right; only parts released from
an allocation that still counts are missing from `paid`.

What this schema holds cannot tell such a released part from an allocation released in full
(both are unapplied rows of a payment and an order). This revision repairs by inference:

- For each (payment, order) that still has applied allocations, its unapplied rows are taken
  to be parts released from them, provided they sum to less than what those applied rows
  hold (a split always leaves something of the allocation). Each part is taken from the
  applied row moved most recently that holds more than it (the payments service releases its
  newest allocations first and keeps releasing from the one it split), recorded as a release
  of that allocation, and its row removed.
- Where the unapplied rows sum to as much as the applied ones or more, one of them must be
  an allocation released in full; which is unknowable here, so that pair is left as it was.
- A payment allocated to one order twice, one of the two later released in full while the
  other still counts, is indistinguishable from a split and repaired as one (its `paid` then
  reads low by that allocation); the next version 2 release of that payment's allocation
  carries the amount it really keeps and sets it right (see handlers.allocation_released).
- Then every order's `paid` is recomputed as the sum of its applied allocations (nothing
  else in this schema moves `paid`, so orders without such rows keep their figure).
The downgrade drops the table and leaves the repaired figures.

Revision ID: 0004_partial_releases
Revises: 0003_cancellation_dates
Create Date: 2026-11-28
"""

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0004_partial_releases"
down_revision: str | None = "0003_cancellation_dates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(precision=20, scale=2)
ZERO = Decimal("0.00")


def upgrade() -> None:
    op.create_table(
        "payment_releases",
        sa.Column("release_id", sa.Uuid(), nullable=False),
        sa.Column("allocation_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("taken", AMOUNT, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("release_id", name=op.f("pk_payment_releases")),
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_payment_releases_allocation_id"),
        "payment_releases",
        ["allocation_id"],
        unique=False,
        schema="orders",
    )
    _repair_partial_releases(op.get_bind())


def _repair_partial_releases(bind: sa.Connection) -> None:
    rows = bind.execute(
        sa.text(
            """
            SELECT a.allocation_id, a.payment_id, a.order_id, a.amount, a.applied, a.updated_at
            FROM orders.payment_allocations a
            JOIN (
                SELECT payment_id, order_id FROM orders.payment_allocations
                GROUP BY payment_id, order_id
                HAVING bool_or(applied) AND bool_or(NOT applied)
            ) p ON p.payment_id = a.payment_id AND p.order_id = a.order_id
            ORDER BY a.payment_id, a.order_id, a.updated_at, a.allocation_id
            """
        )
    ).all()
    pairs: dict[tuple[object, object], list[sa.Row]] = defaultdict(list)
    for row in rows:
        pairs[(row.payment_id, row.order_id)].append(row)
    for (_, order_id), members in pairs.items():
        applied = sorted(
            (r for r in members if r.applied),
            key=lambda r: (r.updated_at, str(r.allocation_id)),
            reverse=True,
        )
        parts = [r for r in members if not r.applied]  # oldest first
        if sum((p.amount for p in parts), ZERO) >= sum((a.amount for a in applied), ZERO):
            continue
        holds = {a.allocation_id: Decimal(a.amount) for a in applied}
        plan: list[tuple[sa.Row, object]] = []
        for part in parts:
            parent = next((a for a in applied if holds[a.allocation_id] > part.amount), None)
            if parent is None:
                plan = []
                break
            holds[parent.allocation_id] -= part.amount
            plan.append((part, parent.allocation_id))
        if not plan:
            continue
        for part, parent_id in plan:
            bind.execute(
                sa.text(
                    """
                    INSERT INTO orders.payment_releases
                        (release_id, allocation_id, order_id, amount, taken, created_at)
                    VALUES (:release_id, :allocation_id, :order_id, :amount, :amount, :at)
                    """
                ),
                {
                    "release_id": part.allocation_id,
                    "allocation_id": parent_id,
                    "order_id": order_id,
                    "amount": part.amount,
                    "at": part.updated_at,
                },
            )
            bind.execute(
                sa.text("DELETE FROM orders.payment_allocations WHERE allocation_id = :id"),
                {"id": part.allocation_id},
            )
        for allocation_id, amount in holds.items():
            bind.execute(
                sa.text(
                    "UPDATE orders.payment_allocations SET amount = :amount "
                    "WHERE allocation_id = :id AND amount <> :amount"
                ),
                {"id": allocation_id, "amount": amount},
            )
    # Every order, not only those repaired: `paid` is by definition what its applied
    # allocations hold, and only rows that differ are written.
    bind.execute(
        sa.text(
            """
            UPDATE orders.orders o SET paid = s.paid, updated_at = now()
            FROM (
                SELECT o2.id, COALESCE(SUM(a.amount) FILTER (WHERE a.applied), 0) AS paid
                FROM orders.orders o2
                LEFT JOIN orders.payment_allocations a ON a.order_id = o2.id
                GROUP BY o2.id
            ) s
            WHERE s.id = o.id AND o.paid <> s.paid
            """
        )
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_orders_payment_releases_allocation_id"),
        table_name="payment_releases",
        schema="orders",
    )
    op.drop_table("payment_releases", schema="orders")
