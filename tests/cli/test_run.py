"""`salesbook run` as a user runs it: a real process over a data folder that answers with
tokens from `salesbook token`, stops on SIGINT or SIGTERM taking its embedded PostgreSQL
down with it, and finds its data again on the next run; backup and restore around it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from shared.auth import Actor, Role, decode_token
from tests.cli.processes import (
    Server,
    clean_env,
    kill_postmaster,
    postgres_gone,
    postgres_processes,
    salesbook,
    salesbook_run,
    until,
)


def bearer(role: str, env: dict[str, str]) -> dict[str, str]:
    token = salesbook("token", "--role", role, "--subject", f"a-{role}", env=env).strip()
    return {"Authorization": f"Bearer {token}"}


def create_customer(server: Server, headers: dict[str, str], name: str) -> str:
    response = httpx.post(
        f"{server.base_url}/v1/customers", json={"name": name}, headers=headers, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def customer_status(server: Server, headers: dict[str, str], customer_id: str) -> int:
    url = f"{server.base_url}/v1/customers/{customer_id}"
    return httpx.get(url, headers=headers, timeout=10).status_code


def ready(server: Server) -> bool:
    return httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200


def test_run_answers_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pgdata = (data / "pgdata").resolve()
    env = clean_env(data)
    backup_file = tmp_path / "ledger.dump"

    with salesbook_run(data, tmp_path / "logs") as server:
        server.wait_until_healthy()
        assert ready(server)

        # A token from the command, with no configuration, opens the server.
        admin = bearer("admin", env)
        secret = (data / "secret_key").read_text().strip()
        token = admin["Authorization"].removeprefix("Bearer ")
        assert decode_token(token, secret=secret) == Actor(subject="a-admin", role=Role.ADMIN)
        audit = f"{server.base_url}/v1/orders/audit"
        assert httpx.get(audit, headers=admin, timeout=10).status_code == 200
        assert httpx.get(audit, timeout=10).status_code == 401
        assert httpx.get(audit, headers=bearer("analyst", env), timeout=10).status_code == 403

        kept = create_customer(server, admin, "Kept Trading Co.")
        # The backup joins the running embedded server and must leave it running.
        salesbook("backup", str(backup_file), env=env)
        assert ready(server), server.output()
        dropped = create_customer(server, admin, "Created After The Backup Ltd.")

        assert server.stop(signal.SIGINT) == 0, server.output()
        assert "listening on" in server.output()
        assert postgres_gone(pgdata)
        assert not (pgdata / "postmaster.pid").exists()

    # With nothing running, the restore starts the embedded server for itself only.
    salesbook("restore", str(backup_file), env=env)
    assert postgres_gone(pgdata)

    with salesbook_run(data, tmp_path / "logs") as server:
        server.wait_until_healthy()
        assert customer_status(server, admin, kept) == 200
        assert customer_status(server, admin, dropped) == 404
        assert server.stop(signal.SIGTERM) == 0, server.output()
        assert postgres_gone(pgdata)


def test_run_starts_its_database_again_when_it_dies(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pgdata = (data / "pgdata").resolve()
    env = clean_env(data)

    with salesbook_run(data, tmp_path / "logs") as server:
        server.wait_until_healthy()
        admin = bearer("admin", env)
        kept = create_customer(server, admin, "Committed Before The Crash Ltd.")
        postmaster = kill_postmaster(pgdata)

        assert until(lambda: ready(server), within=60), server.output()
        assert customer_status(server, admin, kept) == 200
        create_customer(server, admin, "Created After The Crash Ltd.")
        assert "starting it again" in server.output()
        [again] = postgres_processes(pgdata)
        assert again.pid != postmaster.pid

        assert server.stop(signal.SIGTERM) == 0, server.output()
        assert postgres_gone(pgdata)


def test_run_starts_over_a_pid_file_its_crashed_server_left(tmp_path: Path) -> None:
    """After a crash the pid in postmaster.pid may belong to a zombie, or to another process
    by the time of the next run (after a reboot): the server is started all the same."""
    data = tmp_path / "data"
    pgdata = (data / "pgdata").resolve()
    env = clean_env(data)
    with salesbook_run(data, tmp_path / "logs") as server:
        server.wait_until_healthy()
        admin = bearer("admin", env)
        kept = create_customer(server, admin, "Kept Through The Power Cut Ltd.")
        server.process.kill()
        server.process.wait(10)
        kill_postmaster(pgdata)
    assert postgres_gone(pgdata)
    pid_file = pgdata / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")  # a live stranger

    with salesbook_run(data, tmp_path / "logs") as server:
        server.wait_until_healthy()
        assert until(lambda: ready(server), within=60), server.output()
        assert customer_status(server, admin, kept) == 200
        assert server.stop(signal.SIGTERM) == 0, server.output()
        assert postgres_gone(pgdata)
