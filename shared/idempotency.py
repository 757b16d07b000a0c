"""`Idempotency-Key` for POSTs that create documents.

The first request with a key claims it by inserting a row in the same transaction as the
document; a concurrent retry blocks on that row until the first commits, then replays the
stored response. A failed first attempt rolls back its claim, so a retry simply runs again.
The same key with a different body is refused with 422.

`create` usually returns the created document (answered with `status_code`); it may instead
return a ready JSONResponse when the document was created but the answer is not a plain
success (an order created yet held for approval answers 409): that status and body are
stored and replayed, problem+json staying problem+json.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Actor
from shared.errors import PROBLEM_JSON, InvalidInput
from shared.responses import json_answer
from shared.tables import common_tables

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 200


def _key_schema(schema: dict[str, Any]) -> None:
    schema.pop("anyOf", None)  # a header is text or absent, never null
    schema.update(type="string", minLength=1, maxLength=MAX_KEY_LENGTH)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        description="Retry-safe key: a retry with the same body answers the same",
        json_schema_extra=_key_schema,
    ),
]
"""The header as an operation that creates a document takes it."""


def request_hash(body: Any) -> str:
    canonical = json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def idempotent(
    session: AsyncSession,
    *,
    schema: str,
    actor: Actor,
    key: str | None,
    endpoint: str,
    body: BaseModel | dict[str, Any] | None,
    create: Callable[[], Awaitable[BaseModel | JSONResponse]],
    status_code: int = 201,
) -> JSONResponse:
    """Run `create` once per (subject, endpoint, key) and answer every retry the same way."""
    if key is None:
        return _answer(await create(), status_code)
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(HEADER, f"must be 1 to {MAX_KEY_LENGTH} characters")
    table = common_tables(schema).idempotency_keys
    digest = request_hash(body.model_dump(mode="json") if isinstance(body, BaseModel) else body)
    claimed = await session.execute(
        insert(table)
        .values(
            subject=actor.subject,
            endpoint=endpoint,
            key=key,
            request_hash=digest,
            status_code=0,
            response={},
        )
        .on_conflict_do_nothing()
        .returning(table.c.key)
    )
    if claimed.first() is None:
        stored = (
            await session.execute(
                select(table.c.request_hash, table.c.status_code, table.c.response).where(
                    table.c.subject == actor.subject,
                    table.c.endpoint == endpoint,
                    table.c.key == key,
                )
            )
        ).one()
        if stored.request_hash != digest:
            raise InvalidInput(HEADER, "this key was already used with a different request body")
        # Kept as the text first sent (a JSON string), so the retry gets the same bytes;
        # answers kept before were stored as objects, whose keys the database reorders.
        saved = stored.response
        return StoredAnswer(
            saved.encode() if isinstance(saved, str) else saved,
            status_code=stored.status_code,
            headers={REPLAYED_HEADER: "true"},
            media_type=PROBLEM_JSON if stored.status_code >= 400 else None,
        )
    answer = _answer(await create(), status_code)
    await session.execute(
        table.update()
        .where(table.c.subject == actor.subject, table.c.endpoint == endpoint, table.c.key == key)
        .values(status_code=answer.status_code, response=bytes(answer.body).decode())
    )
    return answer


class StoredAnswer(JSONResponse):
    """An answer sent again: the bytes first sent, or an object kept from before."""

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else super().render(content)


def _answer(created: BaseModel | JSONResponse, status_code: int) -> JSONResponse:
    if isinstance(created, JSONResponse):
        return created
    return json_answer(created, status_code)
