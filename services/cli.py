"""The `salesbook` console command: run, serve, migrate, token, backup, restore, republish,
rebuild.

The web stack (FastAPI, SQLAlchemy, the services) takes a second or two to import, so each
command imports what it uses: `salesbook --help` answers at once and `salesbook token`
does not pay for a server it does not start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from services.registry import SERVICES
from shared.config import MAX_TOKEN_TTL_HOURS, Settings
from shared.logs import configure_logging

log = logging.getLogger("salesbook.cli")

# shared.auth.Role's values, spelled out so the parser does not import the web stack;
# tests/cli checks that the two agree.
ROLES = ("pos", "sales", "approver", "finance", "analyst", "admin")
# services.rebuild.MODELS' names, likewise.
READ_MODELS = ("closing", "analytics", "payments-replica")


class CommandError(Exception):
    """A command cannot do what was asked; the message says why and what to do."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `salesbook` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"salesbook: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    command: Callable[[argparse.Namespace, Settings], int] = args.command
    try:
        return command(args, settings)
    except CommandError as exc:
        print(f"salesbook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Interrupted before serving, or during a one-shot command; cleanup ran on the way out.
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salesbook",
        description="Salesbook, the backend of a sales ledger. Configured by SALESBOOK_* "
        "environment variables (see the README).",
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="all four services on one port, with the embedded PostgreSQL unless "
        "SALESBOOK_DATABASE_URL is set",
    )
    _listen_options(run)
    run.set_defaults(command=run_command)

    serve_one = sub.add_parser(
        "serve", help="one service, for a distributed deployment (needs SALESBOOK_DATABASE_URL)"
    )
    serve_one.add_argument("service", choices=SERVICES)
    _listen_options(serve_one)
    serve_one.set_defaults(command=serve_command)

    mig = sub.add_parser("migrate", help="bring every service schema to its newest revision")
    mig.set_defaults(command=migrate_command)

    tok = sub.add_parser("token", help="print a bearer token signed with the server's secret")
    tok.add_argument("--role", required=True, choices=ROLES)
    tok.add_argument("--subject", required=True, help="who the token speaks for")
    tok.add_argument(
        "--ttl-hours",
        type=_ttl_hours,
        default=None,
        help="lifetime in hours, at most ten years (default: SALESBOOK_TOKEN_TTL_HOURS, 720)",
    )
    tok.set_defaults(command=token_command)

    dump = sub.add_parser("backup", help="pg_dump the four service schemas into FILE")
    dump.add_argument("file", type=Path)
    dump.set_defaults(command=backup_command)

    load = sub.add_parser(
        "restore",
        help="restore FILE, replacing the schemas it holds; refused while anyone else is "
        "connected to the database",
    )
    load.add_argument("file", type=Path)
    load.set_defaults(command=restore_command)

    again = sub.add_parser(
        "republish",
        help="publish a service's outbox again to Kafka from an event id on, after a broker "
        "lost events it had acknowledged (consumers drop what they already have)",
    )
    again.add_argument("source", choices=[s for s in SERVICES if s != "analytics"])
    again.add_argument(
        "--from-id", type=_positive_int, required=True, help="the first outbox id to publish"
    )
    again.set_defaults(command=republish_command)

    build = sub.add_parser(
        "rebuild",
        help="rebuild a read model from the retained events, with a progress bar; the "
        "service answers from the old model until the new one is swapped in",
    )
    build.add_argument("model", choices=READ_MODELS)
    build.set_defaults(command=rebuild_command)
    return parser


def _listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: SALESBOOK_HOST)")
    parser.add_argument(
        "--port",
        type=_port,
        help="port to listen on, 0 for any free one (default: SALESBOOK_PORT, 8000)",
    )


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def _ttl_hours(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_TOKEN_TTL_HOURS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TOKEN_TTL_HOURS} (ten years)")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _with_listen_options(args: argparse.Namespace, settings: Settings) -> Settings:
    update = {key: getattr(args, key) for key in ("host", "port") if getattr(args, key) is not None}
    return settings.model_copy(update=update) if update else settings


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """The embedded default: database, migrations, all four services on one port."""
    from services.embedded_runner import database, migrate
    from services.registry import all_modules
    from services.serving import ShutdownSignals, serve
    from shared.app import create_app

    settings = _with_listen_options(args, settings)
    signals = ShutdownSignals().install()
    modules = all_modules()
    with database(settings, keep_up=lambda: not signals.stopping) as url:
        log.info("migrated schemas: %s", ", ".join(migrate(url, modules)))
        app = create_app(modules, settings=settings, database_url=url)
        serve(
            app,
            host=settings.host,
            port=settings.port,
            signals=signals,
            on_started=lambda port: _announce(settings, port),
        )
    return 0


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """One service with its own consumers (and relay, on kafka), for a distributed setup."""
    url = settings.database_url
    if not url:
        raise CommandError(
            "`salesbook serve` needs SALESBOOK_DATABASE_URL: in a distributed deployment "
            "every service connects to the shared PostgreSQL; on one machine use "
            "`salesbook run`, which starts an embedded server"
        )
    from services.embedded_runner import migrate
    from services.registry import service_module
    from services.serving import ShutdownSignals, serve
    from shared.app import create_app

    if not settings.secret_key:
        log.warning(
            "SALESBOOK_SECRET_KEY is unset: tokens are signed with %s; every service of a "
            "deployment must use the same secret",
            Path(settings.data_dir) / "secret_key",
        )
    settings = _with_listen_options(args, settings)
    signals = ShutdownSignals().install()
    module = service_module(args.service)
    # Each service migrates only its own schema, under a lock, so services start in any order.
    migrate(url, [module])
    app = create_app([module], settings=settings, title=f"Salesbook {module.name}")
    serve(
        app,
        host=settings.host,
        port=settings.port,
        signals=signals,
        on_started=lambda port: _announce(settings, port, service=module.name),
    )
    return 0


def migrate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate every service schema of the configured or embedded database."""
    from services.embedded_runner import database, migrate
    from services.registry import all_modules

    with database(settings) as url:
        schemas = migrate(url, all_modules())
    print(f"migrated: {', '.join(schemas) or 'nothing to migrate'}")
    return 0


def token_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print a token signed with the secret the server verifies with."""
    from shared.auth import Role, check_subject, issue_token, signing_secret

    hours = args.ttl_hours or settings.token_ttl_hours
    try:
        check_subject(args.subject)
    except ValueError as refused:
        print(f"salesbook token: {refused}", file=sys.stderr)
        return 2
    token = issue_token(
        secret=signing_secret(settings),
        subject=args.subject,
        role=Role(args.role),
        ttl=timedelta(hours=hours),
    )
    print(token)
    return 0


def backup_command(args: argparse.Namespace, settings: Settings) -> int:
    """pg_dump the service schemas of the configured or embedded database into a file."""
    from services import backup
    from services.embedded_runner import database, postgres_binaries

    with database(settings) as url:
        try:
            backup.backup(url=url, file=args.file, bin_dir=postgres_binaries())
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
    print(f"backed up {', '.join(backup.SCHEMAS)} to {args.file}")
    return 0


def restore_command(args: argparse.Namespace, settings: Settings) -> int:
    """Restore a backup file into the configured or embedded database."""
    from services import backup
    from services.embedded_runner import database, postgres_binaries

    if not args.file.is_file():
        raise CommandError(f"no backup file at {args.file}")
    with database(settings) as url:
        # A running service would go on writing between the restore's DROP and its CREATE,
        # or see its schema vanish mid-transaction: the restore waits for it to stop.
        try:
            connected = backup.other_clients(url)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        if connected:
            raise CommandError(
                "the database is in use; stop every service using it (`docker compose stop "
                "orders payments closing analytics`, or the `salesbook` processes) and run "
                "the restore again. Connected now:\n  " + "\n  ".join(connected)
            )
        try:
            backup.restore(url=url, file=args.file, bin_dir=postgres_binaries())
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
    print(f"restored {args.file}; `salesbook migrate` brings an older backup up to date")
    return 0


def republish_command(args: argparse.Namespace, settings: Settings) -> int:
    """Publish one source's outbox rows from --from-id on to its topic again."""
    import asyncio

    from services.embedded_runner import database
    from shared.db import Database
    from shared.messaging.kafka import republish

    if settings.effective_transport != "kafka" or not settings.kafka_bootstrap:
        raise CommandError("republish is for the kafka transport: set SALESBOOK_KAFKA_BOOTSTRAP")

    async def run(url: str) -> int:
        db = Database(url)
        try:
            return await republish(db, settings, source=args.source, from_id=args.from_id)
        finally:
            await db.dispose()

    with database(settings) as url:
        count = asyncio.run(run(url))
    print(f"republished {count} {args.source} events from outbox id {args.from_id}")
    return 0


def rebuild_command(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild one read model from its sources' outboxes and swap it in."""
    import asyncio
    import time

    from services.embedded_runner import database
    from services.rebuild import rebuild
    from shared.collector import tune_garbage_collection
    from shared.db import Database

    async def run(url: str) -> int:
        tune_garbage_collection()
        db = Database(url, pool_size=1, max_overflow=1)
        try:
            return await rebuild(db, args.model)
        finally:
            await db.dispose()

    started = time.perf_counter()
    with database(settings) as url:
        count = asyncio.run(run(url))
    seconds = time.perf_counter() - started
    print(
        f"rebuilt {args.model} from {count:,} events in {seconds:.1f}s "
        f"({count / max(seconds, 1e-9):,.0f} events/s)"
    )
    return 0


def _announce(settings: Settings, port: int, service: str | None = None) -> None:
    """Tell the person at the terminal where to go and how to get in."""
    base = f"http://{settings.host}:{port}"
    what = f"the {service} service" if service else f"Salesbook ({', '.join(SERVICES)})"
    database_text = (
        "the database at SALESBOOK_DATABASE_URL"
        if settings.database_url
        else f"embedded PostgreSQL, data in {Path(settings.data_dir).resolve()}"
    )
    print(
        f"\n{what} is listening on {base}\n"
        f"  API under {base}/v1, interactive docs at {base}/docs, health at {base}/healthz\n"
        f"  using {database_text}, events over {settings.effective_transport}\n"
        f"  get a token:  {_own_command()} token --role admin --subject me\n"
        f"  then:         curl -H 'Authorization: Bearer <token>' {base}/v1/...\n"
        f"  stop with Ctrl-C\n",
        flush=True,
    )


def _own_command() -> str:
    """How the user can call this command again: relative to the current folder if possible."""
    executable = Path(sys.argv[0])
    if executable.name != "salesbook":
        return "salesbook"
    try:
        return str(executable.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(executable)


if __name__ == "__main__":
    raise SystemExit(main())
