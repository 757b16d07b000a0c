"""Approval thresholds, distinct approvers, no self-approval, and the credit limit hold."""

from __future__ import annotations

from decimal import Decimal

import httpx

from tests.conftest import auth
from tests.orders.factories import (
    APPROVER,
    APPROVER_2,
    POS,
    SALES,
    act,
    assert_problem,
    get_order,
    make_customer,
    make_order,
    ok,
)


async def test_threshold_boundaries(client: httpx.AsyncClient) -> None:
    # Tax-free products so gross equals the price.
    cases = [
        ("10000.00", 0, "confirmed"),
        ("10000.01", 1, "submitted"),
        ("100000.01", 2, "submitted"),
    ]
    for price, required, status in cases:
        product = ok(
            await client.post(
                "/v1/products",
                json={
                    "sku": f"T{price.replace('.', '')}-{id(cases)}",
                    "name": "x",
                    "unit_price": price,
                    "tax_rate": "0",
                },
                headers=SALES,
            ),
            201,
        )
        order = await make_order(
            client, lines=[{"sku": product["sku"], "quantity": "1"}], submit=True
        )
        assert (order["gross"], order["approvals_required"], order["status"]) == (
            price,
            required,
            status,
        )


async def test_one_approval_confirms_above_first_threshold(client: httpx.AsyncClient) -> None:
    order = await make_order(client, unit_price="15000", submit=True)
    assert order["status"] == "submitted" and order["approvals_required"] == 1
    approved = ok(await act(client, order, "approve", APPROVER, {"reason": "known customer"}))
    assert approved["status"] == "confirmed"
    assert approved["invoice_number"].startswith("INV-")
    assert [a["approver"] for a in approved["approvals"]] == ["ann"]
    assert approved["approvals"][0]["note"] == "known customer"
    assert approved["history"][-1]["reason"] == "approved by ann"
    assert approved["history"][-1]["actor"] == "ann"


async def test_two_distinct_approvers_above_second_threshold(client: httpx.AsyncClient) -> None:
    order = await make_order(client, unit_price="100000", submit=True)  # gross 113000
    assert order["approvals_required"] == 2
    first = ok(await act(client, order, "approve", APPROVER))
    assert first["status"] == "submitted"
    again = await act(client, order, "approve", APPROVER)
    assert_problem(again, 409, "ann", "already approved")
    assert (await get_order(client, order["id"]))["status"] == "submitted"
    second = ok(await act(client, order, "approve", APPROVER_2))
    assert second["status"] == "confirmed"
    assert [a["approver"] for a in second["approvals"]] == ["ann", "abe"]
    assert second["history"][-1]["reason"] == "approved by ann, abe"


async def test_creator_cannot_approve_own_order(client: httpx.AsyncClient) -> None:
    # An admin may create and approve, but never both on one order.
    boss = auth("admin", "boss")
    order = await make_order(client, unit_price="50000", submit=True, headers=boss)
    body = assert_problem(await act(client, order, "approve", boss), 409, "boss", "cannot approve")
    assert body["order_id"] == order["id"]
    same_name = auth("approver", "boss")
    assert_problem(await act(client, order, "approve", same_name), 409, "cannot approve")
    ok(await act(client, order, "approve", APPROVER))


async def test_wrong_role_cannot_approve(client: httpx.AsyncClient) -> None:
    order = await make_order(client, unit_price="50000", submit=True)
    for headers in (POS, SALES, auth("finance")):
        assert_problem(await act(client, order, "approve", headers), 403, "allowed")


async def test_concurrent_approvals_never_lose_one(client: httpx.AsyncClient) -> None:
    import asyncio

    order = await make_order(client, unit_price="200000", submit=True)
    results = await asyncio.gather(
        act(client, order, "approve", auth("approver", "a1")),
        act(client, order, "approve", auth("approver", "a2")),
    )
    assert sorted(r.status_code for r in results) == [200, 200]
    final = await get_order(client, order["id"])
    assert final["status"] == "confirmed"
    assert len(final["approvals"]) == 2
    assert final["history"][-1]["to_status"] == "confirmed"


async def test_reject_records_reason(client: httpx.AsyncClient) -> None:
    order = await make_order(client, unit_price="50000", submit=True)
    rejected = ok(await act(client, order, "reject", APPROVER, {"reason": "price too low"}))
    assert rejected["status"] == "rejected"
    assert rejected["history"][-1]["reason"] == "price too low"
    assert rejected["outstanding"] == "0.00"


# Credit limit -----------------------------------------------------------------------------


async def test_credit_limit_holds_order_until_approved(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client, credit_limit="1000.00")
    first = await make_order(client, customer=customer, unit_price="700", submit=True)  # 791.00
    assert first["status"] == "confirmed"

    response = await client.post(
        "/v1/orders",
        json={
            "customer_id": customer["id"],
            "channel": "pos",
            "lines": first["lines"][:1] and [{"sku": first["lines"][0]["sku"], "quantity": "0.5"}],
            "submit": True,
        },
        headers=POS,
    )
    body = assert_problem(response, 409, "1000.00", "791.00", "395.50")
    assert body["order_status"] == "submitted"
    assert body["credit_limit"] == "1000.00"
    assert body["open_receivable"] == "791.00"
    held = await get_order(client, body["order_id"])
    assert body["order_number"] == held["number"]
    assert held["credit_hold"] is True
    assert (held["status"], held["approvals_required"], held["invoice_number"]) == (
        "submitted",
        1,
        None,
    )
    assert held["number"] in body["detail"]
    # The answer says what happened and what comes next, in words.
    for words in (
        "was saved but not confirmed",
        "over the credit limit of 1000.00",
        "waits in status submitted",
        f"/v1/orders/{held['id']}/approve",
    ):
        assert words in body["detail"], body["detail"]  # fmt: skip

    approved = ok(await act(client, held, "approve", APPROVER, {"reason": "good payer"}))
    assert approved["status"] == "confirmed"
    assert approved["outstanding"] == "395.50"


async def test_credit_limit_counts_only_open_receivable(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client, credit_limit="1000.00")
    first = await make_order(client, customer=customer, unit_price="700", submit=True)
    # A credit note lowers the open receivable: 791.00 − 395.50 leaves room for 395.50 more.
    ok(
        await client.post(
            f"/v1/orders/{first['id']}/returns",
            json={"lines": [{"sku": first["lines"][0]["sku"], "quantity": "0.5"}]},
            headers=POS,
        ),
        201,
    )
    second = await make_order(
        client,
        customer=customer,
        lines=[{"sku": first["lines"][0]["sku"], "quantity": "0.5"}],
        submit=True,
    )
    assert second["status"] == "confirmed"
    # Draft submitted later through /submit gets the same 409 and is held.
    draft = await make_order(
        client, customer=customer, lines=[{"sku": first["lines"][0]["sku"], "quantity": "1"}]
    )
    body = assert_problem(await act(client, draft, "submit", POS), 409, "credit limit")
    assert (body["order_id"], body["order_status"]) == (draft["id"], "submitted")
    assert Decimal(body["open_receivable"]) == Decimal("791.00")


async def test_concurrent_orders_cannot_both_pass_the_credit_check(
    client: httpx.AsyncClient,
) -> None:
    import asyncio

    customer = await make_customer(client, credit_limit="1000.00")
    product = ok(
        await client.post(
            "/v1/products",
            json={
                "sku": f"CL-{customer['id'][:8]}",
                "name": "x",
                "unit_price": "600",
                "tax_rate": "0",
            },
            headers=SALES,
        ),
        201,
    )
    drafts = [
        await make_order(
            client, customer=customer, lines=[{"sku": product["sku"], "quantity": "1"}]
        )
        for _ in range(2)
    ]
    results = await asyncio.gather(*(act(client, d, "submit", POS) for d in drafts))
    assert sorted(r.status_code for r in results) == [200, 409]


async def test_order_needing_approval_anyway_is_flagged_not_refused(
    client: httpx.AsyncClient,
) -> None:
    customer = await make_customer(client, credit_limit="1000.00")
    order = await make_order(client, customer=customer, unit_price="20000", submit=True)
    assert (order["status"], order["approvals_required"], order["credit_hold"]) == (
        "submitted",
        1,
        True,
    )
    assert "credit limit of 1000.00" in order["history"][-1]["reason"]
    assert ok(await act(client, order, "approve", APPROVER))["status"] == "confirmed"
