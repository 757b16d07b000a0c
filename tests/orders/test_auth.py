"""401 without a valid token, 403 for a role that may not do it."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import auth
from tests.orders.factories import assert_problem, make_order

ID = "01900000-0000-7000-8000-000000000000"

# (method, path, roles allowed besides admin)
ROUTES = [
    ("POST", "/v1/customers", {"sales"}),
    ("PATCH", f"/v1/customers/{ID}", {"sales"}),
    ("POST", "/v1/products", {"sales"}),
    ("PATCH", "/v1/products/X", {"sales"}),
    ("POST", "/v1/orders", {"pos", "sales"}),
    ("POST", f"/v1/orders/{ID}/submit", {"pos", "sales"}),
    ("POST", f"/v1/orders/{ID}/approve", {"approver"}),
    ("POST", f"/v1/orders/{ID}/reject", {"approver"}),
    ("POST", f"/v1/orders/{ID}/fulfil", {"sales"}),
    ("POST", f"/v1/orders/{ID}/cancel", {"sales"}),
    ("POST", f"/v1/orders/{ID}/returns", {"pos", "sales"}),
    ("GET", "/v1/orders/audit", set()),
]
READS = ["/v1/customers", f"/v1/customers/{ID}", "/v1/products", "/v1/orders", f"/v1/orders/{ID}"]
ROLES = ["pos", "sales", "approver", "finance", "analyst"]


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES)
async def test_writes_need_a_token_and_the_role(
    client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    assert_problem(await client.request(method, path), 401)
    bad = {"Authorization": "Bearer not-a-token"}
    assert_problem(await client.request(method, path, headers=bad), 401)
    for role in ROLES:
        response = await client.request(method, path, headers=auth(role))
        if role in allowed:
            assert response.status_code not in (401, 403), (role, response.text)
        else:
            assert_problem(response, 403, role)


async def test_every_role_reads(client: httpx.AsyncClient) -> None:
    for path in READS:
        assert_problem(await client.get(path), 401)
        for role in [*ROLES, "admin"]:
            assert (await client.get(path, headers=auth(role))).status_code in (200, 404)


async def test_expired_token_is_401(client: httpx.AsyncClient) -> None:
    from datetime import timedelta

    from shared.auth import Role, issue_token
    from tests.conftest import TEST_SECRET

    token = issue_token(secret=TEST_SECRET, subject="x", role=Role.SALES, ttl=timedelta(seconds=-1))
    response = await client.get("/v1/orders", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401, "expired")


async def test_admin_may_do_everything(client: httpx.AsyncClient) -> None:
    admin = auth("admin", "root")
    order = await make_order(client, headers=admin, submit=True)
    response = await client.post(f"/v1/orders/{order['id']}/fulfil", headers=admin)
    assert response.status_code == 200
