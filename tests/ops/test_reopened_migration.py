"""The revisions that bring in reopened periods carry over a month reopened before them:
it keeps taking documents, while an empty month before a locked one is closed with it."""

from __future__ import annotations

from services.registry import service_module
from tests.conftest import AppClient, migrate_all
from tests.orders.factories import POS, assert_problem, make_customer, make_product, ok
from tests.payments.factories import take_payment
from tests.support.migrating import migrate_service, query, run_sql

EARLIER = {"orders": "0005_entry_guards", "payments": "0002_payments_tables"}


async def test_a_month_reopened_before_the_upgrade_keeps_taking_documents(
    app_client: AppClient, scratch_database: str
) -> None:
    url = await migrate_all(scratch_database)
    modules = [service_module("orders"), service_module("payments")]
    async with app_client(modules, database_url=url) as client:
        customer = await make_customer(client)
        product = await make_product(client)
        lines = [{"sku": product["sku"], "quantity": "1"}]
        body = {"customer_id": customer["id"], "channel": "pos", "lines": lines, "submit": True}
        ok(
            await client.post(
                "/v1/orders", json={**body, "business_date": "2019-03-05"}, headers=POS
            ),
            201,
        )
        paid = await take_payment(
            client, customer["id"], "5.00", received_at="2019-03-06T10:00:00+08:00"
        )
        assert paid.status_code == 201, paid.text
    # 2019-03 was reopened after 2019-04 closed (2019-04 is stale, still locked); 2019-02 held
    # nothing when 2019-04 closed.
    await run_sql(
        url,
        [
            (f"INSERT INTO {schema}.period_locks (period, locked_at) VALUES ('2019-04', now())", {})
            for schema in EARLIER
        ],
    )
    for service, revision in EARLIER.items():
        await migrate_service(url, service, "downgrade", revision)
        await migrate_service(url, service, "upgrade", "head")
        marked = await query(url, f"SELECT period FROM {service}.reopened_periods")
        assert marked == [("2019-03",)], service
    async with app_client(modules, database_url=url) as client:
        ok(
            await client.post(
                "/v1/orders", json={**body, "business_date": "2019-03-20"}, headers=POS
            ),
            201,
        )
        refused = assert_problem(
            await client.post(
                "/v1/orders", json={**body, "business_date": "2019-02-20"}, headers=POS
            ),
            409,
        )
        assert refused["closed_by"] == "2019-04"
        again = await take_payment(
            client, customer["id"], "5.00", received_at="2019-03-21T10:00:00+08:00"
        )
        assert again.status_code == 201, again.text
        early = await take_payment(
            client, customer["id"], "5.00", received_at="2019-02-21T10:00:00+08:00"
        )
        assert early.status_code == 409 and early.json()["closed_by"] == "2019-04", early.text
