"""The README's configuration table names every setting there is."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from shared.config import Settings
from tests.cli.processes import clean_env, salesbook_server
from tests.support.database import fresh_database

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    table = [line for line in README.read_text().splitlines() if line.startswith("| `SALESBOOK_")]
    documented = {line.split("`")[1] for line in table}
    expected = {f"SALESBOOK_{name.upper()}" for name in Settings.model_fields}
    assert sorted(expected - documented) == [], "settings missing from the README table"
    assert sorted(documented - expected) == [], "README documents settings that do not exist"


WALKTHROUGH = ("## Your first order", "## The `salesbook` command")
SCRIPT_BLOCK = re.compile(r"```(?:sh|bash)\n(.*?)```", re.S)


def walkthrough_script(base_url: str) -> str:
    """The README's shell examples from the first order to analytics, in order, with the
    documented address swapped for the test server's."""
    text = README.read_text()
    section = text[text.index(WALKTHROUGH[0]) : text.index(WALKTHROUGH[1])]
    blocks = SCRIPT_BLOCK.findall(section)
    return "set -eu -o pipefail\n" + "".join(blocks).replace("http://127.0.0.1:8000", base_url)


def test_the_walkthrough_runs_as_written(pg_server: str, tmp_path: Path) -> None:
    """Every example from "Your first order" on, run as written in one shell against
    `salesbook run`: each variable is set before it is used, no answer is an error, and the
    figures the README shows are the ones the server answers."""
    repository = README.parent
    with fresh_database(pg_server) as url:
        with salesbook_server(
            "run", data_dir=tmp_path / "data", log_dir=tmp_path / "logs", SALESBOOK_DATABASE_URL=url
        ) as server:
            server.wait_until_healthy()
            script = walkthrough_script(server.base_url)
            result = subprocess.run(
                ["bash", "-c", script],
                cwd=repository,
                env=clean_env(tmp_path / "data"),
                capture_output=True,
                text=True,
                timeout=240,
            )
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "about:blank" not in said, said  # every error is a problem document
    for shown in (
        '"net":"374.00","tax":"48.62","gross":"422.62"',
        '"status":"confirmed","channel":"phone"',
        '"gross":"2892.80"',
        '"invoice_number":"INV-2026-000003"',
        '"status":"rejected"',
        '"status":"cancelled"',
        '"net":"1280.00","tax":"166.40","gross":"1446.40"',
        '"allocated":"7500.00","unapplied":"2500.00"',
        '"unapplied":"2400.00","refunded":"100.00"',
        '"status":"closed"',
        '"account":"accounts_receivable"',
        '"account":"cash:bank_transfer"',
        '"account":"cash:wechat"',
        '"balanced":true',
        '"closing":"6010.40"',
        '"status":"disputed"',
    ):
        # Document numbers carry the year of their business date.
        assert re.search(re.escape(shown).replace("2026", "[0-9]{4}"), said), (
            f"{shown} not in:\n{said}"
        )
