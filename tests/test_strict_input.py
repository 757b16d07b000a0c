"""SPEC §9 at the door of every service: bounds, periods and dates, NUL, integer ranges,
strict JSON and query strings. What would not fit downstream is 422, never a 500 nor an
event a consumer cannot apply; what is accepted at the bounds reaches every consumer."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import text

from services.registry import all_modules
from shared.config import Settings
from shared.db import Database
from shared.limits import MAX_AMOUNT, MAX_BODY_BYTES, MAX_QUANTITY
from shared.pagination import encode_cursor
from shared.strict import StrictRoute
from tests.conftest import AppClient, AppHttpClient, auth, serving
from tests.orders.factories import (
    FINANCE,
    POS,
    SALES,
    assert_problem,
    make_customer,
    make_order,
    make_product,
    ok,
    unique,
)
from tests.support.waiting import eventually

ADMIN = auth("admin", "root")
ANALYST = auth("analyst", "ana")
MAX = str(MAX_AMOUNT)


@pytest.fixture(scope="module")
async def client(
    migrated: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AppHttpClient]:
    data_dir = tmp_path_factory.mktemp("strict")
    async with serving(all_modules(), database_url=migrated, data_dir=data_dir) as client:
        yield client


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient) -> dict[str, Any]:
    customer = await make_customer(client)
    order = await make_order(client, customer=customer, submit=True)
    payment = ok(
        await client.post(
            "/v1/payments",
            json={"customer_id": customer["id"], "amount": "10.00", "method": "cash"},
            headers=POS,
        ),
        201,
    )
    return {"customer": customer, "order": order, "payment": payment}


def fields_of(problem: dict[str, Any]) -> set[str | None]:
    return {e["field"] for e in problem.get("errors", [])} | {problem.get("field")}


def refused(response: httpx.Response, field: str, *words: str) -> dict[str, Any]:
    """422 problem+json naming `field`, with every word in the detail."""
    body = assert_problem(response, 422, field, *words)
    assert field in fields_of(body), body
    return body


# Bounds -------------------------------------------------------------------------------------


async def test_an_order_beyond_the_bounds_is_refused(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    cheap = await make_product(client, unit_price="1.00", tax_rate="0")
    dear = await make_product(client, unit_price=MAX, tax_rate="0")
    taxed = await make_product(client, unit_price="900000000.00", tax_rate="0.13")

    def order(*lines: dict[str, Any]) -> dict[str, Any]:
        return {"customer_id": customer["id"], "channel": "pos", "lines": list(lines)}

    huge = {"sku": cheap["sku"], "quantity": "1000000", "unit_price": MAX}
    cases = [
        (order(*[huge] * 10), "lines.0", "at most 1000000000.00"),
        (order({"sku": cheap["sku"], "quantity": "1000000.001"}), "lines.0.quantity", "1000000"),
        (order({"sku": cheap["sku"], "quantity": "1", "unit_price": "1000000000.01"}),
         "lines.0.unit_price", "1000000000.00"),
        (order({"sku": cheap["sku"], "quantity": "1", "discount": "1000000000.01"}),
         "lines.0.discount", "1000000000.00"),
        (order({"sku": taxed["sku"], "quantity": "1"}), "lines.0", "with tax"),
        (order({"sku": dear["sku"], "quantity": "1"}, {"sku": cheap["sku"], "quantity": "1"}),
         "lines", "an order may come to at most 1000000000.00"),
        (order({"sku": cheap["sku"], "quantity": 2}), "lines.0.quantity", "not a JSON number"),
        (order({"sku": cheap["sku"], "quantity": "1", "unit_price": 1.5}),
         "lines.0.unit_price", "not a JSON number"),
    ]  # fmt: skip
    for body, field, words in cases:
        refused(await client.post("/v1/orders", json=body, headers=POS), field, words)
    product = {"sku": "X-1", "name": "x", "unit_price": "1.00", "tax_rate": 0.13}
    refused(await client.post("/v1/products", json=product, headers=SALES), "tax_rate")
    product |= {"tax_rate": "0.13", "unit_price": "1000000000.01"}
    refused(await client.post("/v1/products", json=product, headers=SALES), "unit_price")


async def test_payments_refunds_and_targets_beyond_the_bounds_are_refused(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    customer, payment = world["customer"]["id"], world["payment"]["id"]

    def pay(**changes: Any) -> dict[str, Any]:
        return {"customer_id": customer, "amount": "1.00", "method": "cash", **changes}

    for body, field in [
        (pay(amount="9999999999999999.99"), "amount"),
        (pay(amount="1000000000.01"), "amount"),
        (pay(amount=12.34), "amount"),
        (pay(amount=12), "amount"),
        (pay(allocations=[{"order_id": world["order"]["id"], "amount": "1e10"}]),
         "allocations.0.amount"),
    ]:  # fmt: skip
        refused(await client.post("/v1/payments", json=body, headers=POS), field)
    refunds = f"/v1/payments/{payment}/refunds"
    refused(await client.post(refunds, json={"amount": "1e12"}, headers=FINANCE), "amount")
    refused(await client.post(refunds, json={"amount": 1}, headers=FINANCE), "amount")
    allocations = f"/v1/payments/{payment}/allocations"
    body = {"order_id": world["order"]["id"], "amount": "99999999999999.00"}
    refused(await client.post(allocations, json=body, headers=POS), "amount")
    for target, field in [
        ({"amount": "1000000000.01"}, "targets.0.amount"),
        ({"amount": 100}, "targets.0.amount"),
        ({"salesperson": "x" * 101}, "targets.0.salesperson"),
        ({"period": "0000-01"}, "targets.0.period"),
        ({"period": "2026-12\n"}, "targets.0.period"),
    ]:
        body = {"targets": [{"salesperson": "sally", "period": "2026-01", "amount": "1.00"}]}
        body["targets"][0] |= target
        refused(await client.put("/v1/analytics/targets", json=body, headers=FINANCE), field)


async def test_figures_at_the_bounds_reach_every_consumer(client: httpx.AsyncClient) -> None:
    """The largest order and payment accepted are applied by payments, closing and analytics:
    no consumer is left retrying an overflow."""
    customer = await make_customer(client)
    product = await make_product(client, unit_price="1000.00", tax_rate="0")
    line = {"sku": product["sku"], "quantity": "1000000"}  # 1,000,000 × 1000.00 = the bound
    order = await make_order(client, customer=customer, lines=[line], submit=True)
    assert order["gross"] == MAX
    if order["status"] != "confirmed":  # held by an approval threshold: approve it
        for approver in ("ann", "abe", "amy"):
            answer = await client.post(
                f"/v1/orders/{order['id']}/approve", headers=auth("approver", approver)
            )
            if answer.json().get("status") == "confirmed":
                break
    paid = {"customer_id": customer["id"], "amount": MAX, "method": "bank_transfer"}
    paid["allocations"] = [{"order_id": order["id"], "amount": MAX}]
    payment = ok(await client.post("/v1/payments", json=paid, headers=FINANCE), 201)
    assert payment["amount"] == MAX

    async def lifetime() -> dict[str, Any]:
        answer = await client.get(
            f"/v1/analytics/customers/{customer['id']}/lifetime", headers=ANALYST
        )
        return answer.json() if answer.status_code == 200 else {}

    # Orders and payments are two sources, applied each in its own batches: wait for both.
    seen = await eventually(
        lifetime, lambda b: b.get("paid") == MAX and b.get("gross") == MAX, seconds=30
    )
    assert Decimal(seen["gross"]) == MAX_AMOUNT

    async def read_order() -> dict[str, Any]:
        return ok(await client.get(f"/v1/orders/{order['id']}", headers=FINANCE))

    settled = await eventually(read_order, lambda o: o["paid"] == MAX, seconds=30)
    assert settled["outstanding"] == "0.00"
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text


async def test_every_figure_column_holds_a_million_documents_at_the_bounds(
    migrated: str,
) -> None:
    """The bound argument of shared/limits.py, checked against the migrated schemas: every
    NUMERIC column of every service (sums per customer, period, account, day) holds at
    least a million documents of the largest amount, or a million lines of the most units."""
    db = Database(migrated)
    try:
        async with db.sessions() as session:
            columns = (
                await session.execute(
                    text(
                        "SELECT table_schema, table_name, column_name, numeric_precision, "
                        "numeric_scale FROM information_schema.columns WHERE data_type = "
                        "'numeric' AND table_schema = ANY(:schemas)"
                    ),
                    {"schemas": ["orders", "payments", "closing", "analytics"]},
                )
            ).all()
    finally:
        await db.dispose()
    assert len(columns) > 50
    for schema, table, column, precision, scale in columns:
        if precision is None:  # a view's column, or NUMERIC without a bound
            continue
        capacity = Decimal(10) ** (precision - scale)
        largest = {2: MAX_AMOUNT, 3: MAX_QUANTITY}.get(scale)
        if largest is None:  # a rate
            assert scale == 4 and capacity >= 1, (schema, table, column)
            continue
        assert capacity >= largest * 10**6, (schema, table, column, precision, scale)


async def test_a_target_of_the_longest_salesperson_is_kept_and_audited(
    client: httpx.AsyncClient,
) -> None:
    name = "长" * 100  # the 73-100 character names once overflowed the audit's entity id
    body = {"targets": [{"salesperson": name, "period": "2026-02", "amount": MAX}]}
    saved = ok(await client.put("/v1/analytics/targets", json=body, headers=FINANCE))
    assert [(t["salesperson"], t["target"]) for t in saved["targets"]] == [(name, MAX)]
    log = ok(
        await client.get(
            "/v1/analytics/audit", params={"entity": "target", "entity_id": "2026-02"},
            headers=ADMIN,
        )
    )["items"]  # fmt: skip
    assert {"salesperson": name, "amount": MAX} in [e["details"] for e in log]


# Text, periods, dates and integers ------------------------------------------------------------


async def test_nul_in_any_text_is_422(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    customer, payment = world["customer"]["id"], world["payment"]["id"]
    bodies = [
        ("/v1/payments", {"customer_id": customer, "amount": "1.00", "method": "cash",
                          "reference": "a\x00"}, POS, "reference"),
        (f"/v1/payments/{payment}/refunds", {"amount": "1.00", "reason": "a\x00"}, FINANCE,
         "reason"),
        ("/v1/closing/periods/2024-01/reopen", {"reason": "why\x00"}, ADMIN, "reason"),
    ]  # fmt: skip
    for url, body, headers, field in bodies:
        refused(await client.post(url, json=body, headers=headers), field, "NUL")
    target = {"targets": [{"salesperson": "a\x00", "period": "2026-01", "amount": "1.00"}]}
    refused(
        await client.put("/v1/analytics/targets", json=target, headers=FINANCE),
        "targets.0.salesperson",
        "NUL",
    )
    span = {"from": "2026-01-01", "to": "2026-01-31"}
    queries = [
        *[(f"/v1/{service}/audit", {name: "a\x00"}, ADMIN)
          for service in ("orders", "payments", "closing", "analytics")
          for name in ("entity", "entity_id")],
        *[("/v1/analytics/sales", span | {name: "a\x00"}, ANALYST)
          for name in ("salesperson", "sku", "channel", "region", "category")],
        ("/v1/orders", {"salesperson": "a\x00"}, SALES),
    ]  # fmt: skip
    for url, params, headers in queries:
        name = next(k for k, v in params.items() if "\x00" in v)
        refused(await client.get(url, params=params, headers=headers), name, "NUL")
    # A cursor that decodes to text with NUL ("k\0a"): no key the API pages by holds one.
    sales = span | {"group_by": "salesperson", "cursor": "awBh"}
    refused(await client.get("/v1/analytics/sales", params=sales, headers=ANALYST), "cursor")
    refused(await client.get("/v1/orders", params={"cursor": "AA"}, headers=SALES), "cursor")
    # Text the base64 decoder passes over whole ("!!!" decodes to nothing): not page one again.
    for cursor in ("!!!", "~", "YWJj=", "YW Jj"):
        for url in ("/v1/orders", "/v1/customers", "/v1/payments"):
            refused(await client.get(url, params={"cursor": cursor}, headers=ADMIN), "cursor")
    # An audit cursor carries a row id: not other scripts' digits ("²"), nor past int8.
    for cursor in (encode_cursor("²"), encode_cursor("١٢"), encode_cursor(str(2**63))):
        for service in ("orders", "payments", "closing", "analytics"):
            answer = await client.get(
                f"/v1/{service}/audit", params={"cursor": cursor}, headers=ADMIN
            )
            refused(answer, "cursor")


@pytest.mark.parametrize("figure", ["10000000000000000", "-10000000000000000", "1e17", "1.005"])
async def test_a_balance_filter_a_column_cannot_hold_is_422(
    client: httpx.AsyncClient, figure: str
) -> None:
    answer = await client.get(
        "/v1/closing/periods/2026-01/balances", params={"min_closing": figure}, headers=FINANCE
    )
    refused(answer, "min_closing")


async def test_a_dispute_refuses_nul(client: httpx.AsyncClient) -> None:
    statement = "01900000-0000-7000-8000-000000000000"
    url = f"/v1/closing/statements/{statement}/dispute"
    for body, field in [
        ({"reason": "wrong\x00", "documents": ["INV-2026-000001"]}, "reason"),
        ({"reason": "wrong", "documents": ["INV\x00"]}, "documents.0"),
    ]:
        refused(await client.post(url, json=body, headers=FINANCE), field, "NUL")


async def test_a_list_naming_one_thing_twice_is_422(client: httpx.AsyncClient) -> None:
    """One of the two would silently win (a target) or count twice (a disputed document)."""
    statement = "01900000-0000-7000-8000-000000000000"
    body = {"reason": "wrong", "documents": ["INV-2026-000001", "CRN-2026-000001"] * 2}
    answer = await client.post(
        f"/v1/closing/statements/{statement}/dispute", json=body, headers=FINANCE
    )
    refused(answer, "documents", "INV-2026-000001 is given twice, at 0 and 2")
    sally = {"salesperson": "sally", "period": "2026-01"}
    targets = [sally | {"amount": "1.00"}, sally | {"period": "2026-02", "amount": "1.00"}]
    twice = {"targets": [*targets, sally | {"amount": "2.00"}]}
    answer = await client.put("/v1/analytics/targets", json=twice, headers=FINANCE)
    refused(answer, "targets", "sally for 2026-01 is given twice, at 0 and 2")
    answer = await client.put("/v1/analytics/targets", json={"targets": targets}, headers=FINANCE)
    assert answer.status_code == 200, answer.text


PERIOD_URLS = [
    ("post", "/v1/closing/periods/{p}/close", FINANCE),
    ("get", "/v1/closing/periods/{p}", FINANCE),
    ("get", "/v1/closing/periods/{p}/reconciliation", FINANCE),
    ("get", "/v1/closing/periods/{p}/trial-balance", FINANCE),
    ("get", "/v1/closing/periods/{p}/balances", FINANCE),
    ("get", "/v1/closing/periods/{p}/verify", FINANCE),
]


@pytest.mark.parametrize(
    "period", ["0000-01", "9999-12", "1999-12", "3000-01", "٢٠٢٦-11", "2026-12\n"]
)
async def test_periods_outside_the_books_are_422(client: httpx.AsyncClient, period: str) -> None:
    for method, url, headers in PERIOD_URLS:
        answer = await client.request(method.upper(), url.format(p=quote(period)), headers=headers)
        refused(answer, "period", "YYYY-MM")
    for url, headers in [
        ("/v1/orders", SALES),
        ("/v1/payments", SALES),
        ("/v1/closing/statements", FINANCE),
        ("/v1/analytics/targets/attainment", ANALYST),
    ]:
        answer = await client.get(url, params={"period": period}, headers=headers)
        refused(answer, "period", "YYYY-MM")


async def test_dates_outside_the_books_are_422(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    customer = world["customer"]["id"]
    for params in [
        {"metric": "revenue", "interval": "month", "from": "9999-01-01", "to": "9999-12-31"},
        {"metric": "revenue", "interval": "day", "from": "0001-01-01", "to": "9999-12-31"},
    ]:
        refused(await client.get("/v1/analytics/trend", params=params, headers=ANALYST), "from")
    # Within the books, but more days than a trend draws (as its OpenAPI says).
    days = {"metric": "revenue", "interval": "day", "from": "2000-01-01", "to": "2026-12-31"}
    answer = await client.get("/v1/analytics/trend", params=days, headers=ANALYST)
    refused(answer, "from", "too many intervals")
    weeks = await client.get("/v1/analytics/trend", params=days | {"interval": "week"},
                             headers=ANALYST)  # fmt: skip
    assert weeks.status_code == 200, weeks.text
    for url, params, field in [
        ("/v1/analytics/ar-ageing", {"as_of": "9999-12-31"}, "as_of"),
        ("/v1/analytics/sales", {"from": "0001-01-01", "to": "2026-01-01"}, "from"),
        ("/v1/analytics/kpis", {"from": "2026-01-01", "to": "3000-01-01"}, "to"),
        ("/v1/analytics/top", {"from": "1999-12-31"}, "from"),
        (f"/v1/closing/customers/{customer}/statement",
         {"from": "0001-01-01", "to": "2026-01-01"}, "from"),
    ]:  # fmt: skip
        refused(await client.get(url, params=params, headers=FINANCE), field, "2000 to 2999")
    for received_at in ("0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59Z"):
        body = {"customer_id": customer, "amount": "1.00", "method": "cash"}
        answer = await client.post("/v1/payments", json=body | {"received_at": received_at},
                                   headers=POS)  # fmt: skip
        refused(answer, "received_at", "2000 to 2999")
    refund = {"amount": "1.00", "business_date": "0001-01-01"}
    answer = await client.post(
        f"/v1/payments/{world['payment']['id']}/refunds", json=refund, headers=FINANCE
    )
    refused(answer, "business_date", "2000 to 2999")
    product = await make_product(client)
    order = {"customer_id": customer, "channel": "pos", "business_date": "1999-12-31"}
    order["lines"] = [{"sku": product["sku"], "quantity": "1"}]
    refused(await client.post("/v1/orders", json=order, headers=POS), "business_date")


async def test_integers_have_bounds(client: httpx.AsyncClient) -> None:
    big = 2**31
    for url, params, field in [
        ("/v1/closing/periods/2024-01/versions/diff", {"from": big, "to": 1}, "from"),
        ("/v1/closing/periods/2024-01/versions/diff", {"from": 1, "to": big}, "to"),
        ("/v1/closing/periods/2024-01/balances", {"version": big}, "version"),
        ("/v1/orders", {"limit": big}, "limit"),
        ("/v1/analytics/top", {"limit": big}, "limit"),
    ]:
        refused(await client.get(url, params=params, headers=FINANCE), field, "less than")
    answer = await client.get(
        "/v1/closing/periods/2024-01/balances", params={"min_closing": "1e400"}, headers=FINANCE
    )
    refused(answer, "min_closing")


# Strict requests ------------------------------------------------------------------------------


async def one_line_order(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new customer, and the body of an order of one line for it."""
    customer = await make_customer(client)
    made = await make_product(client, unit_price="2.00", tax_rate="0")
    lines = [{"sku": made["sku"], "quantity": "1"}]
    return customer, {"customer_id": customer["id"], "channel": "pos", "lines": lines}


async def test_integers_and_booleans_are_json_ones(client: httpx.AsyncClient) -> None:
    """The OpenAPI says integer and boolean: text, numbers for booleans and booleans for
    numbers are 422, not read as what they might mean."""
    for value in ("7", True, 7.5):
        answer = await client.post(
            "/v1/customers", json={"name": "N", "payment_terms_days": value}, headers=SALES
        )
        refused(answer, "payment_terms_days")
    product = {"sku": "STRICT-1", "name": "P", "unit_price": "1.00", "tax_rate": "0"}
    for value in (1, "yes"):
        answer = await client.post("/v1/products", json=product | {"active": value}, headers=ADMIN)
        refused(answer, "active")
    _, order = await one_line_order(client)
    answer = await client.post("/v1/orders", json=order | {"submit": 1}, headers=auth("pos"))
    refused(answer, "submit")


async def test_dates_blank_text_and_patches_are_refused_by_name(
    client: httpx.AsyncClient,
) -> None:
    """A date is YYYY-MM-DD (not seconds since 1970, not a date and time), a time is not a
    number, a reason is more than white space, and a PATCH names the field it refuses."""
    customer, order = await one_line_order(client)
    for day in (1796083200, "2026-12-01T00:00:00"):
        answer = await client.post(
            "/v1/orders", json=order | {"business_date": day}, headers=auth("pos")
        )
        refused(answer, "business_date", "YYYY-MM-DD")
    payment = {"customer_id": customer["id"], "amount": "1.00", "method": "cash"}
    answer = await client.post(
        "/v1/payments", json=payment | {"received_at": 1796083200}, headers=auth("pos")
    )
    refused(answer, "received_at", "ISO 8601")
    span = {"from": "2026-11-01", "to": "2026-12-31T00:00:00Z"}
    refused(await client.get("/v1/analytics/kpis", params=span, headers=ANALYST), "to")
    answer = await client.post(
        "/v1/closing/periods/2026-01/reopen", json={"reason": "   "}, headers=ADMIN
    )
    refused(answer, "reason")
    # White space, or invisible: default-ignorable code points, a Hangul filler, a blank
    # Braille pattern, control characters, noncharacters.
    for blank in (
        *("\t", "\u200b", "\ufeff \u200d", "\u00ad", "\u200e\u202e", "\u3164", "\u2800"),
        *("\x01\x02", "\x1c", "\x7f\x9f", "\ufdd0", "\uffff", "\U0010ffff \U0001fffe"),
    ):
        answer = await client.post("/v1/customers", json={"name": blank}, headers=SALES)
        refused(answer, "name")
    # Said as a person reads it, not as the pattern the OpenAPI states.
    answer = await client.post("/v1/customers", json={"name": "\u200b"}, headers=SALES)
    refused(answer, "name", "must show something")
    answer = await client.post(
        "/v1/closing/periods/2026-01/reopen", json={"reason": "\u200b"}, headers=ADMIN
    )
    refused(answer, "reason")
    # An invisible character inside a name that shows something is the name's own.
    named = ok(await client.post("/v1/customers", json={"name": "A\u200dB"}, headers=SALES), 201)
    assert named["name"] == "A\u200dB"
    answer = await client.patch(
        f"/v1/customers/{customer['id']}", json={"payment_terms_days": "30"}, headers=SALES
    )
    assert fields_of(refused(answer, "payment_terms_days")) - {None} == {"payment_terms_days"}
    for number in ("30.5", "true"):
        answer = await client.patch(
            f"/v1/customers/{customer['id']}",
            content=f'{{"payment_terms_days": {number}}}',
            headers={**SALES, "Content-Type": "application/json"},
        )
        refused(answer, "payment_terms_days")
    # A number without a fraction is the integer JSON Schema says it is.
    answer = await client.patch(
        f"/v1/customers/{customer['id']}",
        content='{"payment_terms_days": 30.0}',
        headers={**SALES, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200 and answer.json()["payment_terms_days"] == 30, answer.text


async def test_a_body_past_the_limit_is_413(client: httpx.AsyncClient) -> None:
    huge = b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}'
    answer = await client.post(
        "/v1/customers", content=huge, headers={**SALES, "Content-Type": "application/json"}
    )
    assert_problem(answer, 413)
    assert answer.headers["x-request-id"]  # refused at the door, and still traceable

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield huge[: len(huge) // 2]
        yield huge[len(huge) // 2 :]

    answer = await client.post(
        "/v1/customers", content=chunks(), headers={**SALES, "Content-Type": "application/json"}
    )
    assert "content-length" not in answer.request.headers
    assert assert_problem(answer, 413)["title"] == "Content too large"
    # Answered before the token is looked at: the body is not read to find out who sent it.
    answer = await client.post(
        "/v1/orders/x/submit", content=huge, headers={"Content-Type": "application/json"}
    )
    assert assert_problem(answer, 413)["title"] == "Content too large"


async def test_unknown_query_parameters_are_422(client: httpx.AsyncClient) -> None:
    for url, params, headers in [
        ("/v1/orders", {"number": "SO-2026-000003"}, SALES),
        ("/v1/payments", {"number": "PAY-2026-000001"}, SALES),
        ("/v1/analytics/ar-ageing", {"from": "2026-01-01"}, ANALYST),
        ("/v1/closing/periods", {"status": "open"}, FINANCE),
        ("/v1/orders/audit", {"actor": "me"}, ADMIN),
        ("/healthz", {"verbose": "1"}, {}),
    ]:
        name = next(iter(params))
        body = refused(await client.get(url, params=params, headers=headers), name)
        assert "unknown query parameter" in body["detail"]
    # One value each: the last would be used and the others never checked.
    for url, query, name, headers in [
        ("/v1/analytics/top", "dimension=product&limit=abc&limit=1", "limit", ANALYST),
        ("/v1/orders", "status=draft&status=confirmed", "status", SALES),
    ]:
        body = refused(await client.get(f"{url}?{query}", headers=headers), name)
        assert "more than once" in body["detail"]
    # Nor a second Idempotency-Key: a retry carrying only the other would take a new order.
    twice = await client.post(
        "/v1/orders",
        json={},
        headers=[*SALES.items(), ("Idempotency-Key", "k1"), ("Idempotency-Key", "k2")],
    )
    assert "more than once" in refused(twice, "Idempotency-Key")["detail"]
    # Nor two tokens: which one speaks for the caller is not the server's to pick, on a
    # refused body or an accepted one alike.
    for body in ({}, {"name": unique("Two Tokens")}):
        both = await client.post(
            "/v1/customers",
            json=body,
            headers=[*ADMIN.items(), *ANALYST.items()],
        )
        assert_problem(both, 401, "more than once")
    answer = await client.get("/v1/orders", headers=[*SALES.items(), *SALES.items()])
    assert_problem(answer, 401, "more than once")
    # A page for browsers takes what a browser adds (a cache-buster) and ignores it.
    answer = await client.get("/v1/analytics/dashboard", params={"v": "2"})
    assert answer.status_code == 200
    # Authentication and roles answer first: the caller learns nothing of the parameters.
    assert (await client.get("/v1/orders", params={"number": "x"})).status_code == 401
    answer = await client.get("/v1/orders/audit", params={"number": "x"}, headers=SALES)
    assert answer.status_code == 403


async def test_a_field_given_twice_in_a_body_is_422(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    """Python's JSON reader keeps the last of two values of one field: a proxy or validator in
    front of the server that read the first would see another payment than the one booked."""
    customer = world["customer"]["id"]
    json_type = {"Content-Type": "application/json"}
    twice = (
        f'{{"customer_id": "{customer}", "amount": "5.00", "method": "cash", "amount": "6.00"}}'
    ).encode()
    before = ok(await client.get("/v1/payments", params={"customer_id": customer}, headers=SALES))
    answer = await client.post("/v1/payments", content=twice, headers=SALES | json_type)
    assert "more than once" in refused(answer, "amount")["detail"]
    after = ok(await client.get("/v1/payments", params={"customer_id": customer}, headers=SALES))
    assert len(after["items"]) == len(before["items"])
    # In a nested object too.
    line = '{"sku": "A", "quantity": "1", "sku": "B"}'
    body = f'{{"customer_id": "{customer}", "channel": "pos", "lines": [{line}]}}'.encode()
    answer = await client.post("/v1/orders", content=body, headers=SALES | json_type)
    refused(answer, "sku", "more than once")
    # A key is named as text the answer can carry, however odd or long it is.
    for key, named in (("\\ud800", "\\ud800"), ("k" * 5000, "k" * 100 + "…")):
        odd = f'{{"{key}": 1, "{key}": 2}}'.encode()
        answer = await client.post("/v1/customers", content=odd, headers=SALES | json_type)
        refused(answer, named, "more than once")
    # Who may not call learns nothing of the body.
    answer = await client.post("/v1/payments", content=twice, headers=json_type)
    assert_problem(answer, 401)
    answer = await client.post("/v1/payments", content=twice, headers=ANALYST | json_type)
    assert_problem(answer, 403)


async def test_a_body_sent_as_another_type_than_json_is_415(client: httpx.AsyncClient) -> None:
    body = b'{"name": "Plain Text Ltd", "payment_terms_days": 30}'
    for media in ("text/plain", "text/json", "application/x-www-form-urlencoded"):
        sent = {"Content-Type": media}
        answer = await client.post("/v1/customers", content=body, headers=SALES | sent)
        assert_problem(answer, 415, media, "application/json")
        # Who may not call learns nothing of the body.
        assert_problem(await client.post("/v1/customers", content=body, headers=sent), 401)
        answer = await client.post("/v1/customers", content=body, headers=ANALYST | sent)
        assert_problem(answer, 403)
    # JSON under any of its names is read.
    for media in ("application/json", "application/json; charset=utf-8", "application/x+json"):
        answer = await client.post(
            "/v1/customers", content=body, headers=SALES | {"Content-Type": media}
        )
        assert answer.status_code == 201, answer.text
    # Nor is a body without a Content-Type (FastAPI would read it as bytes).
    bare = await client.post("/v1/customers", content=body, headers=SALES)
    assert "content-type" not in bare.request.headers
    assert_problem(bare, 415, "without a Content-Type")
    # Nor a compressed one: the server does not undo a Content-Encoding.
    packed = await client.post(
        "/v1/customers",
        content=gzip.compress(body),
        headers=SALES | {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert_problem(packed, 415, "Content-Encoding gzip", "uncompressed")
    # Even when the bytes sent under a coding happen to be plain JSON: they are not read.
    for coding in ("gzip", "br", "Identity, gzip"):
        labelled = await client.post(
            "/v1/customers",
            content=body,
            headers=SALES | {"Content-Type": "application/json", "Content-Encoding": coding},
        )
        assert_problem(labelled, 415, f"Content-Encoding {coding.lower()}")
    for plain in ("identity", "IDENTITY", ""):
        kept = await client.post(
            "/v1/customers",
            content=body,
            headers=SALES | {"Content-Type": "application/json", "Content-Encoding": plain},
        )
        assert kept.status_code == 201, kept.text
    # No body at all is still the body the operation lacks, with or without its length.
    bodiless = client.build_request("POST", "/v1/customers", headers=SALES)
    bodiless.headers.pop("Content-Length", None)
    assert "content-length" not in bodiless.headers
    refused(await client.send(bodiless), "body")
    empty = await client.post("/v1/customers", headers=SALES | {"Content-Type": "text/plain"})
    refused(empty, "body")
    document = (await client.get("/openapi.json")).json()
    responses = document["paths"]["/v1/customers"]["post"]["responses"]
    assert {"413", "415"} <= set(responses)
    assert "413" in document["paths"]["/v1/customers"]["get"]["responses"]


def test_every_operation_reads_its_body_strictly(client: AppHttpClient) -> None:
    routes = [
        r.original_route
        for r in iter_route_contexts(client.app.routes)
        if isinstance(r.original_route, APIRoute) and r.original_route.body_field
    ]
    assert len(routes) > 15  # every POST, PUT and PATCH with a body
    assert [r.path for r in routes if not isinstance(r, StrictRoute)] == []


async def test_who_may_not_call_learns_nothing_of_the_input(client: httpx.AsyncClient) -> None:
    """401 without a token and 403 with a role the operation does not admit come before any
    422, including the ones found before the operation's own checks run: a body that is not
    JSON, a cursor, a path parameter. (None: the operation admits every role.)"""
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, bytes | None, dict[str, str] | None]] = [
        ("GET", "/v1/orders/audit?cursor=zz", None, SALES),
        ("GET", "/v1/closing/periods/2026-11/balances?cursor=zz", None, auth("pos")),
        ("GET", "/v1/analytics/sales?cursor=zz", None, auth("pos")),
        ("GET", "/v1/payments?cursor=zz", None, None),
        ("GET", "/v1/orders/not-an-id", None, None),
        ("POST", "/v1/customers", b"{bad", ANALYST),
        ("POST", "/v1/customers", b'{"name": "\xff"}', ANALYST),
        ("POST", "/v1/closing/periods/2026-13/close", None, SALES),
    ]
    for method, url, body, role in cases:
        for headers, status in [({}, 401), (role, 403), (ADMIN, 422)]:
            if headers is None:
                continue
            sent = {**headers, **(json_type if body is not None else {})}
            answer = await client.request(method, url, content=body, headers=sent)
            assert_problem(answer, status)


async def test_unreadable_bodies_are_the_malformed_json_problem(client: httpx.AsyncClient) -> None:
    json_type = SALES | {"Content-Type": "application/json"}
    for content in (
        b'{"name": "\xff\xfe"}',  # not UTF-8
        b"[" * 1000 + b"]" * 1000,
        b'{"name": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"name": ',
    ):
        answer = await client.post("/v1/customers", content=content, headers=json_type)
        body = refused(answer, "body", "malformed JSON")
        assert body["errors"] == [{"field": "body", "message": body["detail"][len("body: ") :]}]
    # A number longer than Python reads is named as the cause.
    content = b'{"name": "x", "payment_terms_days": ' + b"1" * 5000 + b"}"
    answer = await client.post("/v1/customers", content=content, headers=json_type)
    refused(answer, "body", "malformed JSON", "4300 digits")


async def test_405_names_the_allowed_methods(client: httpx.AsyncClient, world) -> None:
    for method, url, allowed in [
        ("DELETE", "/v1/orders", "GET, POST"),
        ("DELETE", f"/v1/customers/{world['customer']['id']}", "GET, PATCH"),
        ("GET", "/v1/analytics/targets", "PUT"),
    ]:
        answer = await client.request(method, url, headers=ADMIN)
        assert_problem(answer, 405)
        assert answer.headers["Allow"] == allowed


async def test_date_times_read_back_with_their_offset(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    body = {"customer_id": world["customer"]["id"], "amount": "1.00", "method": "cash"}
    for sent, instant in [
        ("2026-01-02T08:30:00+08:00", "2026-01-02T00:30:00Z"),
        ("2026-01-02T00:30:00", "2026-01-02T00:30:00Z"),  # no offset: UTC
    ]:
        payment = ok(
            await client.post("/v1/payments", json=body | {"received_at": sent}, headers=POS), 201
        )
        assert payment["received_at"] == instant
        again = ok(await client.get(f"/v1/payments/{payment['id']}", headers=SALES))
        assert again["received_at"] == instant
        assert again["created_at"].endswith("Z")


# Messages -------------------------------------------------------------------------------------


async def test_messages_a_person_reads(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    product = await make_product(client)
    line = {"sku": product["sku"], "quantity": "2000000"}
    order = {"customer_id": world["customer"]["id"], "channel": "pos", "lines": [line]}
    body = refused(await client.post("/v1/orders", json=order, headers=POS), "lines.0.quantity")
    assert "1000000" in body["detail"] and "Decimal" not in body["detail"]
    body = refused(
        await client.post("/v1/customers", json={"name": "a\x00"}, headers=SALES), "name"
    )
    assert "Value error" not in body["detail"]
    assert all("Value error" not in e["message"] for e in body["errors"])

    order = await make_order(client, quantity="3", submit=True)
    url = f"/v1/orders/{order['id']}/returns"
    sku = order["lines"][0]["sku"]
    ok(await client.post(url, json={"lines": [{"sku": sku, "quantity": "1"}]}, headers=POS), 201)
    too_many = await client.post(url, json={"lines": [{"sku": sku, "quantity": "5"}]}, headers=POS)
    problem = assert_problem(too_many, 409, "5 of", "only 2 can still be returned")
    assert problem["returnable"] == "2"


async def test_audit_records_amounts_as_decimal_strings(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    answer = await client.get(
        "/v1/payments/audit", params={"entity_id": world["payment"]["id"]}, headers=ADMIN
    )
    entries = ok(answer)["items"]
    assert [e["details"]["amount"] for e in entries] == ["10.00"]
    order = world["order"]
    answer = await client.get("/v1/orders/audit", params={"entity_id": order["id"]}, headers=ADMIN)
    created = [e for e in ok(answer)["items"] if e["action"] == "order.created"]
    assert [e["details"]["gross"] for e in created] == [order["gross"]]


async def test_csv_booleans_are_true_and_false(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    params = {"metric": "revenue", "interval": "month", "from": "2026-01-01", "to": "2026-03-31"}
    answer = await client.get(
        "/v1/analytics/trend",
        params=params | {"forecast": 2},
        headers=ANALYST | {"Accept": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    forecast = [row.rsplit(",", 1)[-1].strip() for row in answer.text.splitlines()[1:]]
    assert set(forecast) == {"true", "false"}, answer.text


async def test_a_payment_whose_business_date_falls_before_2000_is_refused(
    app_client: AppClient, settings: Settings
) -> None:
    """In a business time zone behind UTC, 2000-01-01T03:00Z is still 1999: that date no
    period the close can reach would hold, so it is refused like year 1."""
    west = settings.model_copy(update={"timezone": "America/New_York"})
    async with app_client(settings_override=west) as client:
        customer = await make_customer(client)
        body = {"customer_id": customer["id"], "amount": "1.00", "method": "cash"}
        answer = await client.post(
            "/v1/payments", json=body | {"received_at": "2000-01-01T03:00:00Z"}, headers=POS
        )
        refused(answer, "received_at", "1999-12-31", "business time zone")
        accepted = await client.post(
            "/v1/payments", json=body | {"received_at": "2000-01-01T12:00:00Z"}, headers=POS
        )
        assert ok(accepted, 201)["business_date"] == "2000-01-01"
    # East of UTC, the first moment of 2000 where it was written is still 1999 in UTC.
    east = settings.model_copy(update={"timezone": "Asia/Shanghai"})
    async with app_client(settings_override=east) as client:
        customer = await make_customer(client)
        body = {"customer_id": customer["id"], "amount": "1.00", "method": "cash"}
        answer = await client.post(
            "/v1/payments", json=body | {"received_at": "2000-01-01T00:00:00+08:00"}, headers=POS
        )
        assert ok(answer, 201)["business_date"] == "2000-01-01"
        answer = await client.post(
            "/v1/payments", json=body | {"received_at": "2000-01-01T00:00:00+09:00"}, headers=POS
        )
        refused(answer, "received_at", "1999-12-31", "business time zone")
