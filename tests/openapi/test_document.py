"""The OpenAPI document says who may call each operation and what it answers, each service of a
distributed deployment publishes its own operations, and /docs needs nothing from outside."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from services.payments.schemas import AllocationsCreate
from services.registry import SERVICES, all_modules, service_module
from shared.app import create_app
from shared.auth import Role
from shared.config import Settings
from shared.errors import PROBLEM_JSON
from tests.conftest import TEST_SECRET, AppClient, auth

UNUSED_DATABASE = "postgresql://nobody@localhost/unused"
METHODS = ("get", "put", "post", "patch", "delete")


def app_of(service: str | None = None) -> FastAPI:
    """`salesbook serve <service>`'s app, or `salesbook run`'s, not started: serving its
    document and docs reaches no database."""
    return create_app(
        [service_module(service)] if service else all_modules(),
        settings=Settings(secret_key=TEST_SECRET, _env_file=None),
        database_url=UNUSED_DATABASE,
        run_workers=False,
        **({"title": f"Salesbook {service}"} if service else {}),
    )


def document_of(service: str | None = None) -> dict[str, Any]:
    return app_of(service).openapi()


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


# Keywords of pydantic's own that are not JSON Schema's: a bound written with one of them is
# a bound no client or validator sees (minimum, maximum, exclusiveMinimum... are).
NOT_JSON_SCHEMA = {"ge", "gt", "le", "lt", "max_digits", "decimal_places", "multiple_of"}


def _keywords(schema: Any, where: str = "#") -> list[tuple[str, str]]:
    found = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in NOT_JSON_SCHEMA and where.rsplit("/", 1)[-1] != "properties":
                found.append((where, key))
            found += _keywords(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            found += _keywords(value, f"{where}/{i}")
    return found


def test_every_bound_is_stated_in_json_schema_keywords() -> None:
    document = document_of()
    assert _keywords(document) == []
    terms = document["components"]["schemas"]["CustomerCreate"]["properties"]
    assert terms["payment_terms_days"]["minimum"] == 0
    assert terms["payment_terms_days"]["maximum"] == 3650


def test_the_allocation_body_schema_admits_exactly_what_the_server_takes() -> None:
    """Allocations take one of two shapes; the document says so (oneOf), so a client or a
    fuzzer building a body from it does not send one the server always refuses."""
    document = document_of("payments")
    component = document["components"]["schemas"]["AllocationsCreate"]
    validator = jsonschema_rs.validator_for({**component, "components": document["components"]})
    order, amount = str(uuid.uuid4()), "12.50"
    one = {"order_id": order, "amount": amount}
    bodies: list[dict[str, Any]] = [
        {},
        {"allocations": []},
        {"allocations": [one]},
        {"allocations": [one], "order_id": None, "amount": None},
        {"allocations": [one], "order_id": order},
        {"allocations": [one], **one},
        one,
        {**one, "allocations": []},
        {"order_id": order},
        {"order_id": order, "amount": None},
        {"amount": amount},
    ]
    for body in bodies:
        try:
            AllocationsCreate.model_validate(body)
            taken = True
        except ValidationError:
            taken = False
        assert validator.is_valid(body) == taken, body


def test_every_operation_states_its_roles_and_error_answers() -> None:
    document = document_of()
    ops = operations(document)
    assert len(ops) > 50
    for (method, path), op in ops.items():
        where = f"{method} {path}"
        responses = op["responses"]
        assert "422" in responses, where
        if path.startswith("/v1/"):
            roles = op["x-roles"]
            assert "admin" in roles and set(roles) <= {r.value for r in Role}, where
            assert f"Roles: {', '.join(f'`{r}`' for r in roles)}." in op["description"], where
            assert "401" in responses, where
            assert ("403" in responses) == (len(roles) < len(Role)), where
        if "{" in path:
            assert "404" in responses, where
        for code, response in responses.items():
            if int(code) < 400 or path == "/readyz":
                continue
            schema = response["content"][PROBLEM_JSON]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, where
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"title", "status", "detail"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize("transport", ["postgres"], indirect=True)
async def test_each_operation_admits_exactly_the_roles_it_states(app_client: AppClient) -> None:
    """Every operation asked by every role with a request it cannot carry out (unknown ids,
    no body): a role the document does not list gets 403, a listed one gets past the door,
    and no token at all gets 401."""
    placeholders = {
        "period": "2999-12",
        "sku": "NO-SUCH-SKU",
        "name": "no-such-subscription",
    }
    async with app_client(run_workers=False) as client:
        for (method, path), op in operations(client.app.openapi()).items():
            if not path.startswith("/v1/"):
                continue
            url = re.sub(
                r"\{(\w+)\}", lambda m: placeholders.get(m.group(1), str(uuid.uuid4())), path
            )
            anonymous = await client.request(method, url)
            assert anonymous.status_code == 401, f"{method} {path}"
            assert anonymous.headers["content-type"] == PROBLEM_JSON
            for role in Role:
                answer = await client.request(method, url, headers=auth(role))
                refused = answer.status_code == 403
                assert refused == (role.value not in op["x-roles"]), (
                    f"{method} {path} as {role.value}: {answer.status_code} {answer.text}"
                )


def test_each_service_publishes_the_operations_it_serves() -> None:
    """In a distributed deployment (`salesbook serve <service>`) each service's document
    holds its own operations, and together they are the operations of `salesbook run`."""
    everything = set(operations(document_of()))
    seen: dict[tuple[str, str], str] = {}
    for service in SERVICES:
        ops = set(operations(document_of(service)))
        for op in ops:
            if op[1] in ("/healthz", "/readyz"):
                continue
            assert op not in seen, f"{op} published by {seen.get(op)} and {service}"
            seen[op] = service
        prefixes = {
            "orders": ("/v1/orders", "/v1/customers", "/v1/products"),
            "payments": ("/v1/payments",),
            "closing": ("/v1/closing",),
            "analytics": ("/v1/analytics",),
        }[service]
        assert all(p.startswith(prefixes) for _, p in ops if p.startswith("/v1/")), service
    assert set(seen) | {op for op in everything if op[1] in ("/healthz", "/readyz")} == everything


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)


@pytest.mark.parametrize("service", [None, *SERVICES])
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_what_the_service_serves(page: str, service: str | None) -> None:
    transport = httpx.ASGITransport(app=app_of(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://docs") as client:
        html = (await client.get(page)).text
        parser = _Assets()
        parser.feed(html)
        urls = parser.urls + re.findall(r"url: '([^']+)'", html)
        assert len(urls) >= 3, html
        assert not re.search(r"https?://|//cdn", html), html
        kinds = set()
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            answer = await client.get(url)
            assert answer.status_code == 200, url
            assert len(answer.content) > 100, url
            kinds.add(answer.headers["content-type"].split(";")[0])
        assert {"text/javascript", "application/json"} <= kinds, kinds
