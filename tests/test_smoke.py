"""The app starts on a migrated database and answers its health checks."""

from tests.conftest import AppClient


async def test_health_and_readiness(app_client: AppClient) -> None:
    async with app_client() as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"] == "ok"


async def test_missing_token_is_401_problem(app_client: AppClient) -> None:
    async with app_client() as client:
        response = await client.get("/v1/orders/audit")
        assert response.status_code in (401, 404)
