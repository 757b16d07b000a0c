"""The shape of the imports: shared/ knows no particular service, and no module of shared/
imports itself back through others (function-local imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def shared_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SHARED.rglob("*.py")}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_shared_imports_no_service() -> None:
    offenders = {
        module_name(path): sorted(m for m in imports_of(path) if m.split(".")[0] == "services")
        for path in SHARED.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_shared_has_no_import_circle() -> None:
    graph = shared_graph()
    # A package's __init__ that only hands names on is not a circle of its modules.
    circles: list[list[str]] = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert circles == []


def test_the_check_sees_a_circle() -> None:
    """The walk above would find a circle if there were one: shared.db imports the outbox,
    which imports shared.tables; an import back from tables to db would close it."""
    graph = shared_graph()
    assert "shared.messaging.outbox" in graph["shared.db"]
    assert "shared.tables" in graph["shared.messaging.outbox"]
    assert "shared.db" not in graph["shared.tables"]
