"""An orders-only app per test, on the session's migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.orders.app import module
from tests.conftest import AppClient


@pytest.fixture
async def client(app_client: AppClient) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client([module()]) as client:
        yield client
