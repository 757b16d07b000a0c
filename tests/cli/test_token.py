"""`salesbook token`: a token signed with the secret the server verifies with, with no
configuration (the secret made once in the data folder) or with a configured one."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import APIRouter, Depends

from services import cli
from shared.app import ServiceModule, create_app
from shared.auth import ALGORITHM, Actor, Role, decode_token, require
from shared.config import Settings
from shared.errors import Unauthorized
from tests.cli.conftest import RunCli

SECRET = "a-configured-secret-long-enough-for-hs256"


def issue(run_cli: RunCli, *args: str, env: dict[str, str] | None = None) -> str:
    outcome = run_cli("token", *args, env=env)
    assert outcome.code == 0, outcome.err
    return outcome.out.strip()


def test_token_without_configuration_uses_the_secret_made_once_in_the_data_folder(
    run_cli: RunCli, tmp_path: Path
) -> None:
    first = issue(run_cli, "--role", "finance", "--subject", "alice")
    secret_file = tmp_path / "data" / "secret_key"
    secret = secret_file.read_text().strip()
    assert decode_token(first, secret=secret) == Actor(subject="alice", role=Role.FINANCE)

    second = issue(run_cli, "--role", "pos", "--subject", "till-3")
    assert secret_file.read_text().strip() == secret
    assert decode_token(second, secret=secret) == Actor(subject="till-3", role=Role.POS)


def test_token_with_a_configured_secret_leaves_the_data_folder_alone(
    run_cli: RunCli, tmp_path: Path
) -> None:
    token = issue(
        run_cli, "--role", "admin", "--subject", "ops", env={"SALESBOOK_SECRET_KEY": SECRET}
    )
    assert decode_token(token, secret=SECRET) == Actor(subject="ops", role=Role.ADMIN)
    assert not (tmp_path / "data" / "secret_key").exists()


def test_token_lifetime(run_cli: RunCli) -> None:
    env = {"SALESBOOK_SECRET_KEY": SECRET}
    short = issue(run_cli, "--role", "sales", "--subject", "bo", "--ttl-hours", "2", env=env)
    claims = jwt.decode(short, SECRET, algorithms=[ALGORITHM], issuer="salesbook")
    assert claims["exp"] - claims["iat"] == 2 * 3600

    default = issue(run_cli, "--role", "sales", "--subject", "bo", env=env)
    claims = jwt.decode(default, SECRET, algorithms=[ALGORITHM], issuer="salesbook")
    assert claims["exp"] - claims["iat"] == Settings(_env_file=None).token_ttl_hours * 3600


def test_the_command_offers_exactly_the_roles_there_are() -> None:
    assert set(cli.ROLES) == {role.value for role in Role}


async def test_token_authenticates_against_an_app_using_the_data_folder(
    run_cli: RunCli, tmp_path: Path
) -> None:
    finance = issue(run_cli, "--role", "finance", "--subject", "alice")
    analyst = issue(run_cli, "--role", "analyst", "--subject", "bob")

    router = APIRouter()

    @router.get("/probe")
    async def probe(actor: Actor = Depends(require(Role.FINANCE))) -> dict[str, str]:
        return {"subject": actor.subject, "role": actor.role.value}

    # The app finds its secret the way the server does: no SALESBOOK_SECRET_KEY, same folder.
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    app = create_app(
        [ServiceModule(name="probe", routers=[router], produces_events=False)],
        settings=settings,
        database_url="postgresql://unused/never-connected",
        run_workers=False,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def status(token: str) -> int:
            response = await client.get("/v1/probe", headers={"Authorization": f"Bearer {token}"})
            return response.status_code

        response = await client.get("/v1/probe", headers={"Authorization": f"Bearer {finance}"})
        assert response.status_code == 200
        assert response.json() == {"subject": "alice", "role": "finance"}
        assert await status(analyst) == 403
        assert await status(finance + "x") == 401


def test_a_lifetime_past_ten_years_is_refused(
    run_cli: RunCli, capsys: pytest.CaptureFixture[str]
) -> None:
    """A usage error naming the option, not an overflow's traceback."""
    for hours in ("100000000", "87601", "0"):
        with pytest.raises(SystemExit) as exited:
            run_cli("token", "--role", "admin", "--subject", "me", "--ttl-hours", hours)
        assert exited.value.code == 2
        assert "--ttl-hours" in capsys.readouterr().err
    issue(run_cli, "--role", "admin", "--subject", "me", "--ttl-hours", "87600")


def test_a_subject_no_column_could_hold_is_refused(run_cli: RunCli) -> None:
    outcome = run_cli("token", "--role", "admin", "--subject", "x" * 101)
    assert outcome.code == 2 and "1 to 100 characters" in outcome.err
    too_long = jwt.encode(
        {"sub": "x" * 101, "role": "admin", "iss": "salesbook", "exp": 4102444800},
        SECRET,
        algorithm=ALGORITHM,
    )
    with pytest.raises(Unauthorized, match="subject"):
        decode_token(too_long, secret=SECRET)
