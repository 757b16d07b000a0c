"""The README's configuration table names every setting there is."""

from __future__ import annotations

from pathlib import Path

from shared.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    table = [line for line in README.read_text().splitlines() if line.startswith("| `SALESBOOK_")]
    documented = {line.split("`")[1] for line in table}
    expected = {f"SALESBOOK_{name.upper()}" for name in Settings.model_fields}
    assert sorted(expected - documented) == [], "settings missing from the README table"
    assert sorted(documented - expected) == [], "README documents settings that do not exist"
