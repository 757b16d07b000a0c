"""The canonical form of a closed period's balances and its SHA-256 hash chain."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

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
