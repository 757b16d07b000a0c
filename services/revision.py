"""Developer entry point: `python -m services.revision SERVICE "message"`.

Autogenerates an Alembic revision for one service against SALESBOOK_DATABASE_URL (a scratch
database already at head for that service). It lives beside the registry, not in
shared/migrations.py, because only here may code know which services exist.
"""

from __future__ import annotations

import argparse

from alembic import command

from services.registry import service_module
from shared.config import get_settings
from shared.migrations import alembic_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.revision", description=__doc__)
    parser.add_argument("service")
    parser.add_argument("message")
    args = parser.parse_args(argv)
    module = service_module(args.service)
    if module.migrations is None:
        raise SystemExit(f"{args.service} has no migrations folder")
    config = alembic_config(
        migrations=module.migrations, schema=module.name, url=get_settings().database_url
    )
    command.revision(config, message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()
