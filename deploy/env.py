"""Writes the secrets docker-compose.yml reads into `.env`, once: `make env`.

Compose reads `.env` beside docker-compose.yml for every command, so `up`, `exec`, `run`
and `down` all see the same values, and a second `up` keeps the signing secret (tokens
stay valid) and the passwords the database was initialised with. A value already in the
file is never changed; only missing ones are added. Plain Python, no project install.

    python3 deploy/env.py [PATH]        (default: .env in the current folder)
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

# Hex: safe inside a postgresql:// URL and a shell line without quoting.
GENERATED = {
    "SALESBOOK_SECRET_KEY": lambda: secrets.token_hex(32),
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(24),
    "ORDERS_DB_PASSWORD": lambda: secrets.token_hex(24),
    "PAYMENTS_DB_PASSWORD": lambda: secrets.token_hex(24),
    "CLOSING_DB_PASSWORD": lambda: secrets.token_hex(24),
    "ANALYTICS_DB_PASSWORD": lambda: secrets.token_hex(24),
    "BACKUP_DB_PASSWORD": lambda: secrets.token_hex(24),
}


def existing_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.lstrip().startswith("#") and value.strip():
            names.add(name.strip())
    return names


def write_env(path: Path) -> list[str]:
    """Add every missing secret to `path` (created readable by its owner only); the names
    added."""
    text = path.read_text() if path.exists() else ""
    have = existing_names(text)
    added = [name for name in GENERATED if name not in have]
    if not added:
        return []
    lines = [f"{name}={GENERATED[name]()}" for name in added]
    if text and not text.endswith("\n"):
        text += "\n"
    if not text:
        text = "# Secrets of docker-compose.yml, made by `make env`. Never commit this file.\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n".join(lines) + "\n")
    return added


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else ".env")
    added = write_env(path)
    if added:
        print(f"{path}: wrote {', '.join(added)}")
    else:
        print(f"{path}: every secret is already set; nothing changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
