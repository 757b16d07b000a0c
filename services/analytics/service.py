"""Revenue targets per salesperson and month, and how far each salesperson got."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import queries
from services.analytics.models import SCHEMA, Target
from services.analytics.schemas import TargetIn
from shared.audit import record_audit
from shared.auth import Actor
from shared.bulk import insert_rows
from shared.periods import Period
from shared.tables import table_of

T = table_of(Target).c


async def set_targets(
    *, session: AsyncSession, targets: list[TargetIn], actor: Actor
) -> list[TargetIn]:
    """Upsert targets, each salesperson and period once (as TargetsIn holds), audited."""
    now = datetime.now(UTC)
    await insert_rows(
        session,
        table_of(Target),
        [
            {
                "salesperson": t.salesperson,
                "period": t.period,
                "amount": t.amount,
                "updated_by": actor.subject,
                "updated_at": now,
            }
            for t in targets
        ],
        suffix="ON CONFLICT (salesperson, period) DO UPDATE SET amount = EXCLUDED.amount, "
        "updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at",
    )
    for t in targets:
        await record_audit(
            session,
            schema=SCHEMA,
            actor=actor,
            action="target.set",
            entity="target",
            # The salesperson goes in the details: a name of up to 100 characters and the
            # month would not fit the entity id column (80).
            entity_id=t.period,
            details={"salesperson": t.salesperson, "amount": str(t.amount)},
        )
    return targets


async def attainment(*, session: AsyncSession, period: str) -> list[dict[str, Any]]:
    """Revenue, target and revenue ÷ target per salesperson with either in the month."""
    month = Period.parse(period)
    revenue = await queries.salesperson_revenue(session, start=month.first_day, end=month.last_day)
    targets: dict[str, Decimal] = {
        row.salesperson: row.amount
        for row in await session.execute(select(T.salesperson, T.amount).where(T.period == period))
    }
    rows = []
    for name in sorted(set(revenue) | set(targets)):
        earned = revenue.get(name, queries.ZERO)
        rows.append(
            {
                "salesperson": name,
                "period": period,
                "target": targets.get(name),
                "revenue": earned,
                "attainment": queries.ratio(earned, targets.get(name) or 0),
            }
        )
    return rows
