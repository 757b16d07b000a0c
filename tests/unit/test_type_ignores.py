"""Every `type: ignore` names the error it silences and says why on the same line, so the
type checker's silence is never unexplained (mypy's warn_unused_ignores drops stale ones)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[a-z-, ]+\])?(?P<rest>.*)$")


def unexplained() -> list[str]:
    found = []
    for folder in ("services", "shared", "bench", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                match = IGNORE.search(line)
                if match and not (match["codes"] and re.match(r"\s*#\s*\w", match["rest"])):
                    found.append(f"{path.relative_to(ROOT)}:{number}")
    return found


def test_every_type_ignore_names_its_error_and_a_reason() -> None:
    assert unexplained() == []


def test_the_check_sees_a_bare_ignore() -> None:
    marker = "# type: " + "ignore"  # spelt apart, or this file would hold what it forbids
    assert IGNORE.search(f"x = f()  {marker}")
    bare = IGNORE.search(f"x = f()  {marker}[arg-type]")
    assert bare is not None and not re.match(r"\s*#\s*\w", bare["rest"])
    explained = IGNORE.search(f"x = f()  {marker}[arg-type]  # the library is untyped")
    assert explained is not None and re.match(r"\s*#\s*\w", explained["rest"])
