"""The baseline of the order-entry benchmark: a bare FastAPI endpoint that inserts one row
with asyncpg, served by uvicorn as Salesbook is, on the same PostgreSQL.

    python -m bench._bare --port 8100   (database from SALESBOOK_DATABASE_URL)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel

from shared.db import plain_url

TABLE = "bench_bare_rows"
POOL_SIZE = 10


class Row(BaseModel):
    customer: int
    amount: str


def create_app(url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE)
        await pool.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, customer int NOT "
            "NULL, amount numeric(20,2) NOT NULL, at timestamptz NOT NULL DEFAULT now())"
        )
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/rows", status_code=201)
    async def insert_row(row: Row, request: Request) -> dict[str, int]:
        row_id = await request.app.state.pool.fetchval(
            f"INSERT INTO {TABLE} (customer, amount) VALUES ($1, $2::numeric) RETURNING id",
            row.customer,
            row.amount,
        )
        return {"id": row_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._bare")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(plain_url(os.environ["SALESBOOK_DATABASE_URL"]))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
