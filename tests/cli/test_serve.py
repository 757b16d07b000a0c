"""`salesbook serve SERVICE`: one service alone, over a configured database."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.cli.processes import salesbook_server
from tests.cli.sql import query
from tests.support.database import fresh_database


def test_serve_runs_one_service_with_its_own_schema(pg_server: str, tmp_path: Path) -> None:
    with fresh_database(pg_server) as url:
        with salesbook_server(
            "serve",
            "orders",
            data_dir=tmp_path / "data",
            log_dir=tmp_path / "logs",
            SALESBOOK_DATABASE_URL=url,
            SALESBOOK_SECRET_KEY="a-deployment-wide-secret-for-this-test",
        ) as server:
            server.wait_until_healthy()
            assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200
            paths = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()["paths"]
            assert "/v1/orders" in paths
            assert not any(path.startswith("/v1/payments") for path in paths)
            docs = httpx.get(f"{server.base_url}/docs", timeout=10).text
            assert "/docs/assets/swagger-ui-bundle.js" in docs
            assets = httpx.get(f"{server.base_url}/docs/assets/swagger-ui-bundle.js", timeout=10)
            assert assets.status_code == 200
            assert "the orders service is listening" in server.output()
            assert server.stop(signal.SIGTERM) == 0, server.output()

        # It migrated its own schema and no other.
        rows = query(url, "SELECT schema_name FROM information_schema.schemata")
        schemas = {row[0] for row in rows}
        assert "orders" in schemas
        assert "payments" not in schemas
        # With a configured secret nothing is written to the data folder.
        assert not (tmp_path / "data" / "secret_key").exists()
