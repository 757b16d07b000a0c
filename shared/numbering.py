"""Gapless document numbers per prefix and year (SO-2026-000001, INV-2026-000001, ...)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastapi.encoders import jsonable_encoder
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Actor
from shared.db import raw_connection
from shared.messaging.outbox import notify_channel, outbox_lock_key, take_pending
from shared.tables import common_tables


async def next_number(session: AsyncSession, *, schema: str, prefix: str, year: int) -> str:
    """Take the next number in the caller's transaction.

    The counter row stays locked until that transaction ends, so concurrent callers queue
    behind it and a rollback gives the number back: numbers are gapless.
    """
    table = common_tables(schema).document_numbers
    stmt = (
        insert(table)
        .values(prefix=prefix, year=year, last=1)
        .on_conflict_do_update(
            index_elements=[table.c.prefix, table.c.year], set_={"last": table.c.last + 1}
        )
        .returning(table.c.last)
    )
    last = (await session.execute(stmt)).scalar_one()
    return f"{prefix}-{year}-{last:06d}"


def stand_in(document_id: UUID) -> str:
    """What a document's number is written as until `number_last` takes it: unique (the
    number columns are), 20 characters at most, and never a number."""
    return "~" + document_id.hex[-19:]


_NUMBER_LAST = """
WITH n AS (
    INSERT INTO {schema}.document_numbers AS d (prefix, year, last) VALUES ($1::text, $2::int, 1)
    ON CONFLICT (prefix, year) DO UPDATE SET last = d.last + 1
    RETURNING $1::text || '-' || $2::int || '-' || lpad(d.last::text, 6, '0') AS number
), document AS (
    UPDATE {schema}.{table} AS t SET number = n.number FROM n
    WHERE t.id = $3::uuid AND t.number = $4::text
    RETURNING n.number
), audit AS (
    INSERT INTO {schema}.audit_log (actor, role, action, entity, entity_id, details, request_id)
    SELECT $5::text, $6::text, $7::text, $8::text, $18::text,
           replace($9::text, $4::text, document.number)::jsonb, $10::text
    FROM document
), outbox_lock AS (
    SELECT pg_advisory_xact_lock(hashtext($11::text)) FROM document
    WHERE cardinality($12::uuid[]) > 0
), outbox AS (
    -- Ids come from the outbox sequence once its lock is held: in commit order.
    INSERT INTO {schema}.outbox (event_id, type, key, payload)
    SELECT e.event_id, e.type, e.key, replace(e.payload, $4::text, document.number)::jsonb
    FROM outbox_lock, document,
         unnest($12::uuid[], $13::text[], $14::text[], $15::text[]) WITH ORDINALITY
             AS e(event_id, type, key, payload, n)
    ORDER BY e.n
    RETURNING id
), notified AS (
    SELECT pg_notify($16::text, $17::text) FROM (SELECT 1 FROM outbox LIMIT 1) AS x
)
SELECT document.number, (SELECT count(*) FROM notified) FROM document
"""


async def number_last(
    session: AsyncSession,
    *,
    schema: str,
    table: str,
    document_id: UUID,
    prefix: str,
    year: int,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: UUID,
    details: dict[str, Any],
) -> str:
    """Take the number of a document written under `stand_in(document_id)`, as the
    transaction's last statement: the same statement sets it on the document's row, appends
    the audit entry and writes the events raised so far to the outbox, the stand-in replaced
    by the number in each. The counter row is then locked only for that statement and the
    commit: concurrent documents of the prefix queue behind a lock held for one round trip,
    not for every statement of the document. Numbers stay gapless: a rollback gives the
    number back."""
    events = take_pending(session)
    if any(e.source != schema for e in events):
        raise ValueError(f"number_last writes only {schema}'s own outbox")
    placeholder = stand_in(document_id)
    db = await raw_connection(session)
    row = await db.fetchrow(
        _NUMBER_LAST.format(schema=schema, table=table),
        prefix,
        year,
        document_id,
        placeholder,
        actor.subject,
        actor.role.value,
        action,
        entity,
        # Amounts stay decimal strings as everywhere else ("10.00", never 10.0).
        json.dumps(jsonable_encoder(details, custom_encoder={Decimal: str})),
        session.info.get("request_id"),
        outbox_lock_key(schema),
        [e.event_id for e in events],
        [e.type for e in events],
        [e.key for e in events],
        [e.model_dump_json() for e in events],
        notify_channel(schema),
        schema,
        str(entity_id),
    )
    if row is None:
        raise LookupError(f"{schema}.{table} has no row {document_id} written as {placeholder}")
    number: str = row[0]
    return number
