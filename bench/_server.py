"""The PostgreSQL server a benchmark runs on."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.embedded import EmbeddedPostgres


@contextmanager
def bench_server() -> Iterator[str]:
    """SALESBOOK_BENCH_DATABASE_URL (or SALESBOOK_TEST_DATABASE_URL), else an embedded server
    in a temporary folder, stopped and removed afterwards."""
    url = os.environ.get("SALESBOOK_BENCH_DATABASE_URL") or os.environ.get(
        "SALESBOOK_TEST_DATABASE_URL"
    )
    if url:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="salesbook-bench-"))
    server = EmbeddedPostgres(folder / "pgdata")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
