"""The order state machine: every legal path, every illegal transition, history and audit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.orders.factories import (
    ADMIN,
    APPROVER,
    POS,
    SALES,
    act,
    assert_problem,
    get_order,
    make_order,
    ok,
)

BIG = "20000.00"  # above the first approval threshold: stays submitted


async def order_in(client: httpx.AsyncClient, status: str) -> dict[str, Any]:
    """A fresh order brought to `status` through the API."""
    if status == "draft":
        return await make_order(client)
    if status == "submitted":
        return await make_order(client, unit_price=BIG, submit=True)
    if status == "rejected":
        order = await make_order(client, unit_price=BIG, submit=True)
        return ok(await act(client, order, "reject", APPROVER, {"reason": "no"}))
    order = await make_order(client, submit=True)
    if status == "confirmed":
        return order
    if status == "fulfilled":
        return ok(await act(client, order, "fulfil", SALES))
    if status == "cancelled":
        return ok(await act(client, order, "cancel", SALES, {"reason": "changed mind"}))
    raise AssertionError(status)


ACTIONS = {
    "submit": POS,
    "approve": APPROVER,
    "reject": APPROVER,
    "fulfil": SALES,
    "cancel": SALES,
}
LEGAL = {
    "draft": {"submit", "cancel"},
    "submitted": {"approve", "reject", "cancel"},
    "confirmed": {"fulfil", "cancel"},
    "fulfilled": set(),
    "rejected": set(),
    "cancelled": set(),
}
ILLEGAL = [
    (status, action) for status, legal in LEGAL.items() for action in ACTIONS if action not in legal
]


@pytest.fixture(scope="module")
async def orders_by_status(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """One order in each status, shared: an illegal action changes nothing (asserted below)."""
    return {status: await order_in(client, status) for status in LEGAL}


@pytest.mark.parametrize(("status", "action"), ILLEGAL)
async def test_illegal_transition_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
    orders_by_status: dict[str, dict[str, Any]],
    status: str,
    action: str,
) -> None:
    order = orders_by_status[status]
    assert order["status"] == status
    response = await act(client, order, action, ACTIONS[action])
    body = assert_problem(response, 409, order["number"], status)
    assert body["order_id"] == order["id"]
    assert body["order_status"] == status
    after = await get_order(client, order["id"])
    assert after["status"] == status
    assert after["history"] == order["history"]


async def test_small_order_submitted_is_confirmed_at_once(client: httpx.AsyncClient) -> None:
    draft = await make_order(client, unit_price="99.99", quantity="2")
    assert draft["status"] == "draft"
    assert draft["invoice_number"] is None and draft["due_date"] is None
    assert draft["outstanding"] == "0.00"
    order = ok(await act(client, draft, "submit", POS))
    assert order["status"] == "confirmed"
    assert order["invoice_number"].startswith("INV-")
    assert order["period"] == order["business_date"][:7]
    assert [(h["from_status"], h["to_status"]) for h in order["history"]] == [
        (None, "draft"),
        ("draft", "submitted"),
        ("submitted", "confirmed"),
    ]
    assert all(h["actor"] == "till-1" and h["role"] == "pos" for h in order["history"])
    assert order["outstanding"] == order["gross"] == "225.98"


async def test_full_path_to_fulfilled_with_history_and_audit(client: httpx.AsyncClient) -> None:
    order = await make_order(client, submit=True)
    fulfilled = ok(await act(client, order, "fulfil", SALES, {"reason": "shipped"}))
    assert fulfilled["status"] == "fulfilled"
    last = fulfilled["history"][-1]
    assert (last["from_status"], last["to_status"], last["actor"], last["reason"]) == (
        "confirmed",
        "fulfilled",
        "sam",
        "shipped",
    )
    audit = ok(
        await client.get(
            "/v1/orders/audit", params={"entity": "order", "entity_id": order["id"]}, headers=ADMIN
        )
    )
    actions = [entry["action"] for entry in audit["items"]]
    assert actions == ["order.created", "order.submitted", "order.confirmed", "order.fulfilled"]
    assert audit["items"][-1]["actor"] == "sam"
    assert audit["items"][-1]["details"]["from"] == "confirmed"


async def test_audit_log_is_admin_only(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/orders/audit", headers=SALES), 403)
    assert_problem(await client.get("/v1/orders/audit"), 401)


async def test_cancel_draft_and_submitted_reverses_nothing(client: httpx.AsyncClient) -> None:
    for status in ("draft", "submitted"):
        order = await order_in(client, status)
        cancelled = ok(await act(client, order, "cancel", SALES, {"reason": "dup"}))
        assert cancelled["status"] == "cancelled"
        assert cancelled["outstanding"] == "0.00"
        assert cancelled["history"][-1]["reason"] == "dup"


async def test_unknown_order_is_404_and_bad_id_is_422(client: httpx.AsyncClient) -> None:
    missing = "01900000-0000-7000-8000-000000000000"
    assert_problem(await client.get(f"/v1/orders/{missing}", headers=SALES), 404, missing)
    assert_problem(await client.post(f"/v1/orders/{missing}/submit", headers=POS), 404)
    body = assert_problem(await client.get("/v1/orders/not-a-uuid", headers=SALES), 422)
    assert body["errors"][0]["field"] == "order_id"
