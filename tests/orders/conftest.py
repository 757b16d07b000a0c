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
from tests.conftest import serving


@pytest.fixture(scope="session")
async def client(
    migrated: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    data_dir = tmp_path_factory.mktemp("orders")
    async with serving([module()], database_url=migrated, data_dir=data_dir) as client:
        yield client
