"""The close protocol with the real payments service answering for its side, and the orders
side played by the test: ordering, no-ops, empty periods, locks, reopen and versions, late
events, reconciliation and customer statements."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import httpx
import pytest

from services.registry import service_module
from shared.events.closing import ControlTotal, PeriodCutoff
from shared.events.orders import CustomerCreated, OrderConfirmed
from shared.events.payments import PaymentAllocated
from shared.ids import new_id
from tests.closing.world import World
from tests.conftest import AppClient, auth, migrate_all
from tests.support.documents import order_facts
from tests.support.feed import publish
from tests.support.waiting import eventually

FINANCE = auth("finance", "controller")
ADMIN = auth("admin", "chief")
_months = itertools.count()


def next_month() -> str:
    """Months in order from 2024-01, one per use: closing periods is global, moving forward."""
    k = next(_months)
    return f"{2024 + k // 12:04d}-{k % 12 + 1:02d}"


@pytest.fixture(scope="module")
async def db(own_database: str) -> str:
    return await migrate_all(own_database)


@pytest.fixture
async def client(app_client: AppClient, db: str) -> AsyncIterator[httpx.AsyncClient]:
    modules = [service_module("payments"), service_module("closing")]
    async with app_client(modules, database_url=db) as c:
        yield c


async def customer(db: str) -> UUID:
    cid = new_id()
    await publish(
        db,
        [
            (
                CustomerCreated(
                    customer_id=cid,
                    name="Cu",
                    contact=None,
                    region=None,
                    segment=None,
                    payment_terms_days=0,
                    credit_limit=None,
                    created_at=datetime.now(UTC),
                ),
                "orders",
                str(cid),
                None,
            )
        ],
    )
    return cid


async def pay(client: httpx.AsyncClient, cid: UUID, amount: str, day: date) -> httpx.Response:
    at = datetime(day.year, day.month, day.day, 3, tzinfo=UTC).isoformat()
    return await client.post(
        "/v1/payments",
        json={
            "customer_id": str(cid),
            "amount": amount,
            "method": "bank_transfer",
            "received_at": at,
        },
        headers=auth("pos"),
    )


async def orders_cutoff(db: str, month: str, close_id: UUID, world: World | None = None) -> None:
    """The orders service's answer, played by the test (no order documents unless given)."""
    totals = {
        k: ControlTotal(count=0, amount=Decimal(0))
        for k in ("invoice", "credit_note", "cancellation")
    }
    if world:
        totals.update(
            {
                k: ControlTotal(
                    count=world.controls[(month, k)][0], amount=world.controls[(month, k)][1]
                )
                for k in totals
            }
        )
    await publish(
        db,
        [
            (
                PeriodCutoff(
                    period=month,
                    close_id=close_id,
                    source="orders",
                    control_totals=totals,
                    locked_at=datetime.now(UTC),
                ),
                "orders",
                "period-control",
                None,
            )
        ],
    )


async def get_period(client: httpx.AsyncClient, month: str) -> dict:
    return (await client.get(f"/v1/closing/periods/{month}", headers=FINANCE)).json()


async def close(client: httpx.AsyncClient, db: str, month: str) -> dict:
    response = await client.post(f"/v1/closing/periods/{month}/close", headers=FINANCE)
    assert response.status_code == 202, response.text
    if response.json()["status"] == "closing":
        await orders_cutoff(db, month, UUID(response.json()["close_id"]))
    return await eventually(lambda: get_period(client, month), lambda p: p["status"] == "closed")


def csv_statement_lines(text: str) -> list[dict[str, str]]:
    """The document lines of a statement's CSV, without its opening and closing rows."""
    rows = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    return [r for r in rows if r["kind"] not in ("opening", "closing")]


def day_in(month: str, d: int = 10) -> date:
    return date(int(month[:4]), int(month[5:7]), d)


async def test_close_waits_for_both_cutoffs_and_locks_payments(client, db) -> None:
    month = next_month()
    cid = await customer(db)
    assert (await pay(client, cid, "100.00", day_in(month))).status_code == 201
    response = await client.post(f"/v1/closing/periods/{month}/close", headers=FINANCE)
    assert response.status_code == 202 and response.json()["status"] == "closing"
    # Payments answers on its own; the period waits for orders and says so.
    waiting = await eventually(
        lambda: get_period(client, month), lambda p: "payments" in p["control_totals"]
    )
    assert waiting["status"] == "closing"
    assert waiting["progress"]["waiting_for_cutoff"] == ["orders"]
    assert waiting["control_totals"]["payments"]["payment"]["amount"] == "100.00"
    late = await pay(client, cid, "5.00", day_in(month, 20))
    assert late.status_code == 409 and month in late.json()["detail"]
    await orders_cutoff(db, month, UUID(response.json()["close_id"]))
    closed = await eventually(lambda: get_period(client, month), lambda p: p["status"] == "closed")
    assert closed["version"] == 1 and len(closed["hash"]) == 64
    assert closed["totals"]["received"] == "100.00"
    again = await client.post(f"/v1/closing/periods/{month}/close", headers=FINANCE)
    assert again.status_code == 202 and again.json()["hash"] == closed["hash"]  # a no-op


async def test_periods_close_in_order(client, db) -> None:
    first, second, third = next_month(), next_month(), next_month()
    cid = await customer(db)
    assert (await pay(client, cid, "10.00", day_in(first))).status_code == 201
    # Closing may not have seen the payment yet; then payments refuses the cutoff itself.
    attempt = await client.post(f"/v1/closing/periods/{second}/close", headers=FINANCE)
    if attempt.status_code == 202:
        aborted = await eventually(
            lambda: get_period(client, second), lambda p: p["status"] == "open"
        )
        assert first in aborted["problem"]
    else:
        assert attempt.status_code == 409
    refused = await client.post(f"/v1/closing/periods/{second}/close", headers=FINANCE)
    assert refused.status_code == 409 and first in refused.json()["detail"]
    # The aborted close left nothing locked: payments still takes documents in the month.
    assert (await pay(client, cid, "1.00", day_in(second))).status_code == 201
    await close(client, db, first)
    await close(client, db, second)
    third_closed = await close(client, db, third)
    balances = (
        await client.get(
            f"/v1/closing/periods/{third}/balances",
            params={"customer_id": str(cid)},
            headers=FINANCE,
        )
    ).json()
    assert balances["items"][0]["opening"] == "-11.00"  # carried through the months
    assert third_closed["status"] == "closed"


async def test_an_empty_period_closes(client, db) -> None:
    month = next_month()
    empty = await close(client, db, month)
    assert (
        empty["totals"]["invoiced"] == "0.00"
        and empty["control_totals"]["payments"]["payment"]["count"] == 0
    )


async def test_verify_holds_whatever_order_empty_months_close_in(client, db) -> None:
    """Closing an empty month after later ones were closed neither changes nor breaks their
    chain: each close keeps the link it made when it closed."""
    empty, october, november = next_month(), next_month(), next_month()
    cid = await customer(db)
    assert (await pay(client, cid, "30.00", day_in(october))).status_code == 201
    assert (await pay(client, cid, "12.00", day_in(november))).status_code == 201
    before = [await close(client, db, october), await close(client, db, november)]
    late_empty = await close(client, db, empty)
    for month, closed in ((october, before[0]), (november, before[1]), (empty, late_empty)):
        verified = (await client.get(f"/v1/closing/periods/{month}/verify", headers=FINANCE)).json()
        assert verified["ok"], (month, verified["checks"])
        assert verified["hash"] == closed["hash"]
    chain = (await client.get(f"/v1/closing/periods/{november}/verify", headers=FINANCE)).json()
    link = next(c for c in chain["checks"] if c["check"] == "chain")
    assert link["previous_period"] == october and link["previous_hash"] == before[0]["hash"]


async def test_reopen_keeps_versions_marks_later_stale_and_diffs(client, db) -> None:
    month, after = next_month(), next_month()
    cid = await customer(db)
    await pay(client, cid, "40.00", day_in(month))
    v1 = await close(client, db, month)
    await close(client, db, after)
    assert (
        await client.post(
            f"/v1/closing/periods/{month}/reopen", json={"reason": "missed"}, headers=FINANCE
        )
    ).status_code == 403
    assert (
        await client.post(f"/v1/closing/periods/{month}/reopen", json={}, headers=ADMIN)
    ).status_code == 422
    reopened = await client.post(
        f"/v1/closing/periods/{month}/reopen",
        json={"reason": "a transfer was booked late"},
        headers=ADMIN,
    )
    assert reopened.status_code == 200 and reopened.json()["status"] == "open"
    # The open month shows nothing of the close it had: that is version 1's now.
    assert {
        k: reopened.json()[k] for k in ("totals", "hash", "closed_at", "close_id")
    } == dict.fromkeys(("totals", "hash", "closed_at", "close_id"))
    assert (await get_period(client, after))["status"] == "stale"
    # Payments lifts its lock: a document may be dated into the month again.
    added = await eventually(
        lambda: pay(client, cid, "15.00", day_in(month, 25)), lambda r: r.status_code == 201
    )
    assert added.json()["period"] == month
    v2 = await close(client, db, month)
    assert v2["version"] == 2 and v2["hash"] != v1["hash"]
    versions = (await client.get(f"/v1/closing/periods/{month}/versions", headers=FINANCE)).json()
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["reopen_reason"] == "a transfer was booked late" and versions[1]["current"]
    diff = (
        await client.get(
            f"/v1/closing/periods/{month}/versions/diff",
            params={"from": 1, "to": 2},
            headers=FINANCE,
        )
    ).json()
    mine = [c for c in diff["changes"] if c["customer_id"] == str(cid)]
    assert mine[0]["received"] == {"from": "40.00", "to": "55.00", "change": "15.00"}
    assert diff["reopened_by"] == "chief"
    refreshed = await close(client, db, after)
    assert refreshed["version"] == 2
    row = (
        await client.get(
            f"/v1/closing/periods/{after}/balances",
            params={"customer_id": str(cid)},
            headers=FINANCE,
        )
    ).json()["items"][0]
    assert row["opening"] == "-55.00"
    assert (await client.get(f"/v1/closing/periods/{after}/verify", headers=FINANCE)).json()["ok"]
    # The payments service's audit log has each lock the close took and the reopen lifted.
    audit = (
        await client.get(
            "/v1/payments/audit", params={"entity": "period", "entity_id": month}, headers=ADMIN
        )
    ).json()["items"]
    assert [(e["actor"], e["action"]) for e in audit] == [
        ("payments.closing", "period.locked"),
        ("payments.closing", "period.unlocked"),
        ("payments.closing", "period.locked"),
    ]
    assert audit[1]["details"] == {
        "because": "period.reopened",
        "reason": "a transfer was booked late",
    }
    locked = audit[2]["details"]
    assert locked["close_id"] == v2["close_id"]
    assert locked["control_totals"]["payment"] == {"count": 2, "amount": "55.00"}


async def test_late_event_goes_to_the_first_open_period(client, db) -> None:
    month, nxt = next_month(), next_month()
    cid = await customer(db)
    await close(client, db, month)
    # An event dated into the closed month still reaches closing (e.g. delivered late).
    from shared.events.payments import PaymentReceived

    pid = new_id()
    day = day_in(month, 15)
    await publish(
        db,
        [
            (
                PaymentReceived(
                    payment_id=pid,
                    number="PAY-LATE-1",
                    customer_id=cid,
                    amount=Decimal("7.00"),
                    method="cash",
                    received_at=datetime(day.year, day.month, day.day, tzinfo=UTC),
                    business_date=day,
                    reference=None,
                    allocations=[],
                ),
                "payments",
                str(cid),
                day,
            )
        ],
    )
    report = await eventually(
        lambda: client.get(f"/v1/closing/periods/{nxt}/reconciliation", headers=FINANCE),
        lambda r: r.json()["late_events"],
    )
    late = report.json()["late_events"][0]
    assert late["document"] == "PAY-LATE-1" and month in late["detail"]
    statement = (
        await client.get(
            f"/v1/closing/customers/{cid}/statement",
            params={"from": f"{nxt}-01", "to": f"{nxt}-28"},
            headers=FINANCE,
        )
    ).json()
    assert statement["lines"][0]["late"] is True and statement["closing"] == "-7.00"
    closed_first = await client.get(f"/v1/closing/periods/{month}/verify", headers=FINANCE)
    assert closed_first.json()["ok"]  # the closed month was not touched
    # The late document does not upset the next month's control totals.
    closed_next = await close(client, db, nxt)
    assert closed_next["totals"]["received"] == "7.00"


def _invoice(cid: UUID, day: date, due: date, gross: str) -> OrderConfirmed:
    return OrderConfirmed(
        order=order_facts(customer_id=cid, net=gross),
        invoice_number=f"INV-{new_id().hex[:8]}",
        business_date=day,
        due_date=due,
        instalments=[],
        confirmed_at=datetime.now(UTC),
    )


async def test_an_allocation_resolved_after_the_close_is_late(client, db) -> None:
    """A pending allocation the payments service resolves after the month closed (it had not
    seen the order yet) is dated into the closed month; like any late event it counts from
    the first open month, so the closed month's ageing, which placed the payment oldest
    first, still verifies."""
    month, nxt = next_month(), next_month()
    cid = await customer(db)
    old = _invoice(cid, day_in(month, 1), day_in(month, 1), "100.00")  # 27 days overdue
    new = _invoice(cid, day_in(month, 2), day_in(month, 2) + timedelta(days=90), "40.00")
    await publish(db, [(i, "orders", str(cid), i.business_date) for i in (old, new)])
    paid = await pay(client, cid, "40.00", day_in(month, 3))  # unallocated when the month closes
    assert paid.status_code == 201
    response = await client.post(f"/v1/closing/periods/{month}/close", headers=FINANCE)
    assert response.status_code == 202
    invoices = ControlTotal(count=2, amount=Decimal("140.00"))
    none = ControlTotal(count=0, amount=Decimal(0))
    cutoff = PeriodCutoff(
        period=month,
        close_id=UUID(response.json()["close_id"]),
        source="orders",
        control_totals={"invoice": invoices, "credit_note": none, "cancellation": none},
        locked_at=datetime.now(UTC),
    )
    await publish(db, [(cutoff, "orders", "period-control", None)])
    await eventually(lambda: get_period(client, month), lambda p: p["status"] == "closed")
    url = f"/v1/closing/periods/{month}/verify"
    assert (await client.get(url, headers=FINANCE)).json()["ok"]
    payment = paid.json()
    allocated = PaymentAllocated(
        allocation_id=new_id(),
        payment_id=UUID(payment["id"]),
        payment_number=payment["number"],
        customer_id=cid,
        order_id=new.order.order_id,
        amount=Decimal("40.00"),
        business_date=day_in(month, 3),
    )
    await publish(db, [(allocated, "payments", str(cid), allocated.business_date)])
    report = await eventually(
        lambda: client.get(f"/v1/closing/periods/{nxt}/reconciliation", headers=FINANCE),
        lambda r: r.json()["late_events"],
    )
    late = report.json()["late_events"][0]
    assert late["document"] == str(new.order.order_id) and month in late["detail"]
    verified = (await client.get(url, headers=FINANCE)).json()
    assert verified["ok"], verified


async def test_statement_csv_send_confirm_dispute(client, db) -> None:
    month = next_month()
    cid = await customer(db)
    await pay(client, cid, "12.34", day_in(month, 3))
    await pay(client, cid, "1.00", day_in(month, 4))
    await close(client, db, month)
    csv = await client.get(
        f"/v1/closing/customers/{cid}/statement",
        params={"from": f"{month}-01", "to": f"{month}-28"},
        headers={**FINANCE, "Accept": "text/csv"},
    )
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("date,kind,document") and lines[-1].split(",")[-1] == "-13.34"
    body = {"customer_id": str(cid), "period": month}
    keyed = FINANCE | {"Idempotency-Key": f"statement-{cid}"}
    sent = await client.post("/v1/closing/statements", json=body, headers=keyed)
    assert sent.status_code == 201 and sent.json()["closing"] == "-13.34"
    # A retry is answered the first answer, not sent a second statement.
    again = await client.post("/v1/closing/statements", json=body, headers=keyed)
    assert again.status_code == 201 and again.content == sent.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = await client.post(
        "/v1/closing/statements", json=body | {"period": "2026-01"}, headers=keyed
    )
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key", other.text
    listed = await client.get(
        "/v1/closing/statements", params={"customer_id": str(cid)}, headers=FINANCE
    )
    assert [s["id"] for s in listed.json()] == [sent.json()["id"]]
    # The audit log says what was sent, and that the period closed, with its hash.
    logged = await client.get(
        "/v1/closing/audit",
        params={"entity": "statement", "entity_id": sent.json()["id"]},
        headers=ADMIN,
    )
    [entry] = logged.json()["items"]
    assert entry["action"] == "statement.sent" and entry["actor"] == "controller"
    assert entry["details"] | {"customer_id": None} == {
        "customer_id": None,
        "period": month,
        "version": sent.json()["version"],
        "closing": "-13.34",
    }
    closed = (await client.get(f"/v1/closing/periods/{month}", headers=FINANCE)).json()
    logged = await client.get(
        "/v1/closing/audit", params={"entity": "period", "entity_id": month}, headers=ADMIN
    )
    done = [e for e in logged.json()["items"] if e["action"] == "period.closed"]
    assert [e["details"]["hash"] for e in done] == [closed["hash"]]
    assert done[0]["details"]["version"] == closed["version"]
    assert done[0]["details"]["requested_by"] == "controller"
    shown = [line["document"] for line in csv_statement_lines(csv.text)]
    foreign = await client.post(
        f"/v1/closing/statements/{sent.json()['id']}/dispute",
        json={"reason": "we paid 13.40", "documents": [shown[0], "PAY-2099-000001"]},
        headers=FINANCE,
    )
    assert foreign.status_code == 422, foreign.text
    assert foreign.json()["field"] == "documents"
    assert foreign.json()["not_on_statement"] == ["PAY-2099-000001"]
    blank = await client.post(
        f"/v1/closing/statements/{sent.json()['id']}/dispute",
        json={"reason": " \t ", "documents": [shown[0]]},
        headers=FINANCE,
    )
    assert blank.status_code == 422, blank.text
    assert [e["field"] for e in blank.json()["errors"]] == ["reason"]
    disputed = await client.post(  # two characters are a reason: "wrong entry"
        f"/v1/closing/statements/{sent.json()['id']}/dispute",
        json={"reason": "错账", "documents": [shown[0]]},
        headers=FINANCE,
    )
    assert disputed.status_code == 200 and disputed.json()["status"] == "disputed"
    assert disputed.json()["disputed_documents"] == [shown[0]]
    open_disputes = (
        await client.get("/v1/closing/statements", params={"status": "disputed"}, headers=FINANCE)
    ).json()
    assert any(s["id"] == sent.json()["id"] for s in open_disputes)
    twice = await client.post(
        f"/v1/closing/statements/{sent.json()['id']}/confirm", headers=FINANCE
    )
    assert twice.status_code == 409
    second = await client.post(
        "/v1/closing/statements", json={"customer_id": str(cid), "period": month}, headers=FINANCE
    )
    confirmed = await client.post(
        f"/v1/closing/statements/{second.json()['id']}/confirm",
        json={"note": "ok by phone"},
        headers=FINANCE,
    )
    assert confirmed.json()["status"] == "confirmed"
    unclosed = await client.post(
        "/v1/closing/statements",
        json={"customer_id": str(cid), "period": "2099-01"},
        headers=FINANCE,
    )
    assert unclosed.status_code == 409
    stranger = await client.post(
        "/v1/closing/statements",
        json={"customer_id": str(uuid4()), "period": month},
        headers=FINANCE,
    )
    assert stranger.status_code == 422, stranger.text
    assert stranger.json()["field"] == "customer_id"
    # Paged with limit: one statement at a time, the next page's cursor in a header.
    mine = {"customer_id": str(cid)}
    every = (await client.get("/v1/closing/statements", params=mine, headers=FINANCE)).json()
    assert [s["id"] for s in every] == sorted([sent.json()["id"], second.json()["id"]])
    paged, cursor = [], None
    while True:
        page = await client.get(
            "/v1/closing/statements",
            params={**mine, "limit": 1, **({"cursor": cursor} if cursor else {})},
            headers=FINANCE,
        )
        assert page.status_code == 200 and len(page.json()) <= 1, page.text
        paged += page.json()
        cursor = page.headers.get("X-Next-Cursor")
        if cursor is None:
            break
    assert paged == every


async def test_bad_requests(client) -> None:
    assert (
        await client.post("/v1/closing/periods/2026-13/close", headers=FINANCE)
    ).status_code == 422
    assert (await client.post("/v1/closing/periods/oct/close", headers=FINANCE)).status_code == 422
    future = (datetime.now(UTC) + timedelta(days=62)).strftime("%Y-%m")
    assert (
        await client.post(f"/v1/closing/periods/{future}/close", headers=FINANCE)
    ).status_code == 422
    assert (
        await client.post("/v1/closing/periods/2024-01/close", headers=auth("sales"))
    ).status_code == 403
    assert (await client.post("/v1/closing/periods/2024-01/close")).status_code == 401
    assert (
        await client.get("/v1/closing/periods/2999-12/balances", headers=FINANCE)
    ).status_code == 409
    # Periods are years 2000–2999 in ASCII digits (SPEC §9).
    for outside in ("1999-01", "3000-01", "٢٠٢٦-01"):
        assert (
            await client.get(f"/v1/closing/periods/{outside}/balances", headers=FINANCE)
        ).status_code == 422
    bad_dates = await client.get(
        f"/v1/closing/customers/{new_id()}/statement",
        params={"from": "2024-02-01", "to": "2024-01-01"},
        headers=FINANCE,
    )
    assert bad_dates.status_code == 422


async def test_a_statement_for_a_customer_the_ledger_never_saw_is_404(client, db) -> None:
    month = next_month()

    async def statement_of(customer_id: UUID) -> httpx.Response:
        return await client.get(
            f"/v1/closing/customers/{customer_id}/statement",
            params={"from": f"{month}-01", "to": f"{month}-28"},
            headers=FINANCE,
        )

    unknown = new_id()
    answer = await statement_of(unknown)
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert str(unknown) in answer.json()["detail"]
    # A customer the orders service announced has a statement before any document: at zero.
    cid = await customer(db)
    empty = await eventually(lambda: statement_of(cid), lambda r: r.status_code != 404)
    assert empty.status_code == 200, empty.text
    assert (empty.json()["opening"], empty.json()["lines"], empty.json()["closing"]) == (
        "0.00",
        [],
        "0.00",
    )
    await pay(client, cid, "5.00", day_in(month, 3))
    known = await eventually(lambda: statement_of(cid), lambda r: r.json()["lines"] != [])
    assert known.json()["closing"] == "-5.00"
