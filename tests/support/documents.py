"""Event payloads for tests that feed a service's rules directly, without a database."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from shared.events.orders import OrderFacts
from shared.ids import new_id


def order_facts(
    *, customer_id: UUID | None = None, net: str = "0.00", tax: str = "0.00"
) -> OrderFacts:
    """An order without lines, of `net` plus `tax`."""
    return OrderFacts(
        order_id=new_id(),
        number="SO-2026-000001",
        customer_id=customer_id or new_id(),
        customer_name="Acme",
        region=None,
        segment=None,
        channel="pos",
        salesperson=None,
        created_by="pos",
        lines=[],
        net=Decimal(net),
        tax=Decimal(tax),
        gross=Decimal(net) + Decimal(tax),
    )
