"""Schemathesis sends generated requests, valid and invalid, to every operation of
`salesbook run` over a real database, as admin and as low roles: no answer may be a 500,
and every answer must be one the OpenAPI document states, in its status, content type,
headers and body schema (SPEC §9).

The budget is small and the seed fixed so the suite stays quick and repeatable. For a longer
hunt: SALESBOOK_FUZZ_EXAMPLES=200 SALESBOOK_FUZZ_SEED=7 pytest tests/openapi/test_fuzz.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.registry import all_modules
from shared.app import create_app
from shared.config import Settings
from tests.cli.processes import Server, salesbook_server
from tests.conftest import TEST_SECRET, auth, migrate_all

EXAMPLES = int(os.environ.get("SALESBOOK_FUZZ_EXAMPLES", "6"))
SEED = int(os.environ.get("SALESBOOK_FUZZ_SEED", "20261106"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
async def fuzzed_database(own_database: str) -> str:
    """A database of the module's own: the fuzzer creates and closes what it likes."""
    return await migrate_all(own_database)


@pytest.fixture(scope="module")
def server(fuzzed_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    with salesbook_server(
        "run",
        data_dir=folder / "data",
        log_dir=folder / "logs",
        SALESBOOK_DATABASE_URL=fuzzed_database,
        SALESBOOK_SECRET_KEY=TEST_SECRET,
    ) as running:
        running.wait_until_healthy()
        yield running


def published_document() -> dict[str, Any]:
    """The document every `salesbook run` publishes, built without a server: the operations
    are collected as tests before the server starts."""
    app = create_app(
        all_modules(),
        settings=Settings(secret_key=TEST_SECRET, _env_file=None),
        database_url="postgresql://nobody@localhost/unused",
        run_workers=False,
    )
    return app.openapi()


def schema_to_fuzz(*, examples: int, coverage: bool) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(
        published_document(),
        config=schemathesis.Config.from_dict(
            {
                "seed": SEED,
                "generation": {"mode": "all", "max-examples": examples, "database": "none"},
                "phases": {
                    "examples": {"enabled": True},
                    # Every operation's boundary values and each kind of invalid input.
                    "coverage": {"enabled": coverage},
                    "fuzzing": {"enabled": True},
                },
            }
        ),
    )


# Admin reaches every operation's logic: the whole budget. A low role is refused most
# operations at the door, so a few cases each show that the refusal is documented, and the
# operations it may call are fuzzed past the door too.
as_admin = schema_to_fuzz(examples=EXAMPLES, coverage=True)
as_low_role = schema_to_fuzz(examples=max(2, EXAMPLES // 3), coverage=False)
quick = settings(deadline=None, suppress_health_check=list(HealthCheck))


def test_the_server_publishes_the_document_fuzzed(server: Server) -> None:
    assert httpx.get(f"{server.base_url}/openapi.json", timeout=10).json() == published_document()


def call_as(role: str, case: schemathesis.Case, server: Server) -> None:
    case.call_and_validate(
        base_url=server.base_url, headers=auth(role, subject="fuzzer"), checks=CHECKS
    )


@as_admin.parametrize()
@quick
def test_as_admin(case: schemathesis.Case, server: Server) -> None:
    call_as("admin", case, server)


@as_low_role.parametrize()
@quick
def test_as_pos(case: schemathesis.Case, server: Server) -> None:
    call_as("pos", case, server)


@as_low_role.parametrize()
@quick
def test_as_analyst(case: schemathesis.Case, server: Server) -> None:
    call_as("analyst", case, server)
