"""The canonical form of a closed period's balances and its SHA-256 hash chain.

The close hashes inside the database (`stored_period_hash`), where the balances are;
`verify` recomputes the same digest here in Python from the stored rows, so each
implementation checks the other.

The chain: each close hashes over the hash of the latest period closed before it at that
moment, and the version row records that hash. Periods close in order except empty ones,
which may close after later months: such a month links to the same predecessor as the later
months did, and their links stay as they were made. `verify` follows the recorded link, so it
holds whatever order empty months close in; a later close that found a predecessor must name
one that exists, and a close that started a chain must have had none before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

GENESIS = "0" * 64
BALANCE_FIELDS = (
    "opening",
    "invoiced",
    "returned",
    "received",
    "refunded",
    "closing",
    "current",
    "d1_30",
    "d31_60",
    "d61_90",
    "over_90",
)


def canonical_line(row: Any) -> str:
    values = "|".join(f"{getattr(row, f):.2f}" for f in BALANCE_FIELDS)
    return f"{row.customer_id}|{values}"


def period_hash(*, period: str, previous_hash: str | None, rows: Iterable[Any]) -> str:
    """SHA-256 over the previous period's hash, the period, and its balances sorted by customer."""
    digest = hashlib.sha256()
    digest.update(f"{previous_hash or GENESIS}\n{period}\n".encode())
    for row in sorted(rows, key=lambda r: str(r.customer_id)):
        digest.update(canonical_line(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# numeric(18,2) prints with exactly two places, as f"{value:.2f}" does; customer ids sort
# as their text in byte order, as Python sorts strings.
_LINE = " || '|' || ".join(["customer_id::text", *(f"{f}::text" for f in BALANCE_FIELDS)])
_STORED_HASH = text(
    f"""
    SELECT encode(sha256(convert_to(
               :prefix || COALESCE(string_agg(
                   {_LINE} || E'\\n',
                   '' ORDER BY customer_id::text COLLATE "C"), ''),
               'UTF8')), 'hex')
      FROM closing.closed_balances
     WHERE period = :period AND version = :version
    """
)


async def stored_period_hash(
    session: AsyncSession, *, period: str, version: int, previous_hash: str | None
) -> str:
    """`period_hash` of a stored version's balances, computed where they are."""
    prefix = f"{previous_hash or GENESIS}\n{period}\n"
    result = await session.execute(
        _STORED_HASH, {"prefix": prefix, "period": period, "version": version}
    )
    return result.scalar_one()
