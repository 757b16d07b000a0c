"""Running the `salesbook` command in this process (fast) with its own environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from services import cli


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


RunCli = Callable[..., Outcome]


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> RunCli:
    """`run_cli("token", "--role", "admin", env={...})`: main() under only the given
    SALESBOOK_* variables, with the data folder in tmp_path unless `env` says otherwise."""
    # The command configures process-wide logging; in the test process pytest owns it.
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)

    def run(*argv: str, env: dict[str, str] | None = None) -> Outcome:
        for name in os.environ:
            if name.startswith("SALESBOOK_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("SALESBOOK_DATA_DIR", str(tmp_path / "data"))
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run
