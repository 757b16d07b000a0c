"""Cursor pagination: stable order by a unique, time-ordered key; the cursor is opaque."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel

from shared.errors import InvalidInput

T = TypeVar("T")
R = TypeVar("R")

MAX_LIMIT = 500
NEXT_CURSOR = "X-Next-Cursor"
"""The header carrying the next page's cursor where the body is the page's rows alone."""


class Page(BaseModel, Generic[T]):
    """One page of a list; pass next_cursor back as `cursor` for the next one."""

    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    limit: int
    after: str | None


def page_params(
    limit: int = Query(50, ge=1, le=MAX_LIMIT, description="Items per page"),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
) -> PageParams:
    return PageParams(limit=limit, after=decode_cursor(cursor) if cursor else None)


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("cursor", "not a cursor this API returned") from None
    # The decoder passes over characters outside its alphabet ("!!!" decodes to nothing), so
    # only a cursor written exactly as this API writes it is one; no key is empty or holds
    # NUL (which the database cannot).
    if not value or "\x00" in value or encode_cursor(value) != cursor:
        raise InvalidInput("cursor", "not a cursor this API returned")
    return value


def cut_page(
    rows: Sequence[R], *, limit: int, key: Callable[[R], str]
) -> tuple[list[R], str | None]:
    """Keep `limit` of the up to limit+1 rows fetched; the cursor points after the last kept."""
    kept = list(rows[:limit])
    more = len(rows) > limit
    return kept, encode_cursor(key(kept[-1])) if more and kept else None


def cursor_uuid(value: str) -> UUID:
    """A cursor that holds a UUID key, or 422 when it was not one this API returned."""
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput("cursor", "not a cursor this API returned") from None
