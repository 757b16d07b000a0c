"""The append-only audit log: who changed what, when, in every service schema."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Actor, Role, require
from shared.db import request_session
from shared.errors import InvalidInput
from shared.pagination import Page, PageParams, cut_page, page_params
from shared.strict import StrictRoute
from shared.tables import common_tables

_AUDIT_ID = re.compile(r"[0-9]{1,18}")  # an audit row's id, as its cursor carries it (int8)


async def record_audit(
    session: AsyncSession,
    *,
    schema: str,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: object,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit entry in the caller's transaction."""
    table = common_tables(schema).audit_log
    await session.execute(
        table.insert().values(
            actor=actor.subject,
            role=actor.role.value,
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            # Amounts stay decimal strings as everywhere else ("10.00", never 10.0).
            details=jsonable_encoder(details or {}, custom_encoder={Decimal: str}),
            request_id=session.info.get("request_id"),
        )
    )


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    entity: str
    entity_id: str
    details: dict[str, Any]
    request_id: str | None


def audit_router(*, schema: str, path: str) -> APIRouter:
    """`GET {path}`: the service's audit log, oldest first, for admins."""
    router = APIRouter(route_class=StrictRoute, tags=["audit"])
    table = common_tables(schema).audit_log

    @router.get(path, response_model=Page[AuditEntry], summary=f"Audit log of {schema}")
    async def list_audit(
        entity: Annotated[str | None, Query(max_length=80)] = None,
        entity_id: Annotated[str | None, Query(max_length=80)] = None,
        page: PageParams = Depends(page_params),
        session: AsyncSession = Depends(request_session, scope="function"),
        _: Actor = Depends(require(Role.ADMIN)),
    ) -> Page[AuditEntry]:
        """Every recorded state change of this service, oldest first."""
        query = select(table).order_by(table.c.id).limit(page.limit + 1)
        if entity:
            query = query.where(table.c.entity == entity)
        if entity_id:
            query = query.where(table.c.entity_id == entity_id)
        if page.after:
            if not _AUDIT_ID.fullmatch(page.after):
                raise InvalidInput("cursor", "not a cursor this API returned")
            query = query.where(table.c.id > int(page.after))
        rows = (await session.execute(query)).mappings().all()
        kept, cursor = cut_page(rows, limit=page.limit, key=lambda r: str(r["id"]))
        return Page[AuditEntry](items=[AuditEntry(**r) for r in kept], next_cursor=cursor)

    return router
