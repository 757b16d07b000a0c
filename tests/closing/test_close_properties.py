"""Property: for any months of orders, returns, cancellations, payments, allocations and
refunds, closing month by month gives balanced books, statements that end at the closing
balance, and balances equal to a straightforward recomputation from the raw documents."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from uuid import UUID

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.registry import service_module
from shared.periods import Period
from tests.closing.world import ZERO, World, worlds
from tests.conftest import AppClient, auth, migrate_all
from tests.support.feed import publish
from tests.support.waiting import eventually

FINANCE = auth("finance", "controller")
_month_numbers = itertools.count()


def fresh_months(n: int = 3) -> list[str]:
    """Months no earlier example used: closing periods is global state, and it moves forward."""
    months = []
    for _ in range(n):
        k = next(_month_numbers)
        months.append(f"{2001 + k // 12:04d}-{k % 12 + 1:02d}")
    return months


@pytest.fixture(scope="module")
async def closing_db(own_database: str) -> str:
    return await migrate_all(own_database)


@pytest.fixture
async def client(app_client: AppClient, closing_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client([service_module("closing")], database_url=closing_db) as c:
        yield c


async def close_month(
    client: httpx.AsyncClient, database_url: str, world: World, month: str
) -> dict:
    response = await client.post(f"/v1/closing/periods/{month}/close", headers=FINANCE)
    assert response.status_code == 202, response.text
    close_id = UUID(response.json()["close_id"])
    await publish(database_url, world.cutoffs(month, close_id))

    async def period() -> dict:
        return (await client.get(f"/v1/closing/periods/{month}", headers=FINANCE)).json()

    return await eventually(period, lambda p: p["status"] == "closed")


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_closed_months_add_up(
    client: httpx.AsyncClient, closing_db: str, data: st.DataObject
) -> None:
    months = fresh_months()
    world = data.draw(worlds(months))
    if world.events:
        await publish(closing_db, world.events)
    expected = world.expected_balances()
    previous_hash = None
    for month in months:
        period = await close_month(client, closing_db, world, month)
        assert period["hash"] and period["hash"] != previous_hash
        previous_hash = period["hash"]

        trial = (
            await client.get(f"/v1/closing/periods/{month}/trial-balance", headers=FINANCE)
        ).json()
        assert trial["balanced"] and trial["debits"] == trial["credits"]

        verify = (await client.get(f"/v1/closing/periods/{month}/verify", headers=FINANCE)).json()
        assert verify["ok"], verify
        # verify ages every customer again with the Python reference (shared/ageing.py)
        assert {"check": "ageing", "ok": True, "mismatched": []} in verify["checks"]

        for customer in world.customers:
            want = expected[month][customer]
            rows = (
                await client.get(
                    f"/v1/closing/periods/{month}/balances",
                    params={"customer_id": str(customer)},
                    headers=FINANCE,
                )
            ).json()
            if all(v == ZERO for v in want.values()):
                assert rows["items"] == [] or Decimal(rows["items"][0]["closing"]) == ZERO
                continue
            (row,) = rows["items"]
            for column, amount in want.items():
                assert Decimal(row[column]) == amount, (month, column, row, want)
            ageing = {bucket: Decimal(v) for bucket, v in row["ageing"].items()}
            assert ageing == world.expected_ageing(month, customer, want["closing"]), (month, row)

            statement = (
                await client.get(
                    f"/v1/closing/customers/{customer}/statement",
                    params={"from": f"{month}-01", "to": str(Period.parse(month).last_day)},
                    headers=FINANCE,
                )
            ).json()
            assert Decimal(statement["opening"]) == want["opening"]
            running = Decimal(statement["opening"])
            for line in statement["lines"]:
                running += Decimal(line["debit"]) - Decimal(line["credit"])
                assert Decimal(line["balance"]) == running
            assert running == Decimal(statement["closing"]) == want["closing"]
