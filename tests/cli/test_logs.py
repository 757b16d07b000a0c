"""Log lines are JSON objects on one line, carrying the id of the request that wrote them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import APIRouter

from shared.app import ServiceModule, create_app
from shared.config import Settings
from shared.logs import JsonFormatter, configure_logging


@pytest.fixture
def probe_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("salesbook.test.probe")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_log_line_written_while_serving_carries_the_request_id(
    probe_log: io.StringIO,
) -> None:
    router = APIRouter()

    @router.get("/probe")
    async def probe() -> dict[str, str]:
        logging.getLogger("salesbook.test.probe").info("probing %s", "订单")
        return {}

    app = create_app(
        [ServiceModule(name="probe", routers=[router], produces_events=False)],
        settings=Settings(secret_key="unused-in-this-test", _env_file=None),
        database_url="postgresql://unused/never-connected",
        run_workers=False,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/v1/probe", headers={"X-Request-ID": "req-42"})
        # An id that is not printable ASCII is not echoed nor logged: the request gets one.
        odd = await client.get("/v1/probe", headers={"X-Request-ID": "req\x01\x1b[31m"})
        long = await client.get("/v1/probe", headers={"X-Request-ID": "r" * 500})
    assert response.headers["X-Request-ID"] == "req-42"
    assert re.fullmatch("[0-9a-f]{32}", odd.headers["X-Request-ID"])
    assert long.headers["X-Request-ID"] == "r" * 80

    logging.getLogger("salesbook.test.probe").info("between requests")
    during, *_, after = lines(probe_log)
    assert during["message"] == "probing 订单"
    assert during["request_id"] == "req-42"
    assert {"timestamp", "level", "logger"} <= during.keys()
    assert during["level"] == "INFO" and during["logger"] == "salesbook.test.probe"
    assert "request_id" not in after


def test_configure_logging_sends_every_logger_to_one_json_stream() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure_logging("warning", stream)
        logging.getLogger("anything.at.all").warning("careful")
        logging.getLogger("anything.at.all").info("not shown at WARNING")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("salesbook.x").exception("it failed")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.captureWarnings(False)
    careful, failed = lines(stream)
    assert careful["message"] == "careful" and careful["level"] == "WARNING"
    assert failed["level"] == "ERROR" and "ValueError: boom" in str(failed["exception"])
