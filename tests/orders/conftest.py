"""One orders app (lifespan and payment consumer running) shared by the orders tests.

Starting an app per test would open a new connection pool each time, and connection set-up
dominated the suite's time. Tests stay independent because each works on customers,
products and orders it creates itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.orders.app import module
from shared.app import create_app
from shared.config import Settings
from tests.conftest import TEST_SECRET, AppHttpClient


@pytest.fixture(scope="session")
async def client(
    migrated: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        secret_key=TEST_SECRET,
        data_dir=tmp_path_factory.mktemp("orders"),
        consumer_poll_seconds=0.2,
        _env_file=None,
    )
    app = create_app([module()], settings=settings, database_url=migrated)
    async with app.router.lifespan_context(app):
        async with AppHttpClient(app) as client:
            yield client
