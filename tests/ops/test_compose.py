"""docker-compose.yml, the Dockerfile and the proxy config agree with the code: every service
runs with the settings it reads, starts after what it needs, and the proxy sends every path
prefix the apps mount to the app that mounts it. (No container engine is needed: the files
are read, not run.)"""

from __future__ import annotations

import os
import re
import tomllib
from importlib.metadata import distribution
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy.env import GENERATED, write_env
from services.registry import SERVICES, all_modules
from shared.app import API_PREFIX, SHUTDOWN_SECONDS, create_app
from shared.config import Settings

ROOT = Path(__file__).parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES_OF_COMPOSE: dict[str, Any] = COMPOSE["services"]
# The proxy config's directives, without its comments.
NGINX = re.sub(r"#.*", "", (ROOT / "deploy" / "nginx.conf").read_text())
BOOTSTRAP = ROOT / "deploy" / "bootstrap.sql"
# What `salesbook serve` needs to run distributed (SPEC §8) and safely (production secret).
REQUIRED = {
    "SALESBOOK_DATABASE_URL",
    "SALESBOOK_KAFKA_BOOTSTRAP",
    "SALESBOOK_SECRET_KEY",
    "SALESBOOK_ENVIRONMENT",
    "SALESBOOK_HOST",
    "SALESBOOK_PORT",
}


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES_OF_COMPOSE[service]["environment"].items()}


def resolved(value: str) -> str:
    """A value with compose's ${VAR:-default} / ${VAR:?message} written as a test value (as
    long as what `make env` generates)."""
    return re.sub(
        r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}",
        lambda m: m.group(2) if m.group(2) is not None else f"test-{m.group(1).lower():0<40}",
        value,
    )


def interpolated(value: object) -> set[str]:
    """The ${VAR...} names a value interpolates."""
    return set(re.findall(r"\$\{(\w+)", str(value)))


def settings_of(service: str) -> Settings:
    values: dict[str, Any] = {
        k.removeprefix("SALESBOOK_").lower(): resolved(v) for k, v in env(service).items()
    }
    return Settings(_env_file=None, **values)


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES_OF_COMPOSE) == {
        "postgres",
        "kafka",
        "kafka-init",
        "migrate",
        "backup",
        "restore",
        "proxy",
        *SERVICES,
    }


@pytest.mark.parametrize("service", SERVICES)
def test_each_app_serves_its_service_with_the_settings_the_code_reads(service: str) -> None:
    spec = SERVICES_OF_COMPOSE[service]
    assert spec["command"] == ["serve", service]
    assert spec["build"] == "."
    variables = env(service)
    assert REQUIRED <= set(variables)
    # Only settings that exist: a misspelt variable would be silently ignored.
    assert {k.removeprefix("SALESBOOK_").lower() for k in variables} <= set(Settings.model_fields)
    settings = settings_of(service)
    assert settings.environment == "production"
    assert settings.effective_transport == "kafka"
    assert settings.host == "0.0.0.0"
    assert settings.kafka_partitions == Settings.model_fields["kafka_partitions"].default
    # Its own role, on the bootstrapped database, with the password .env gives that role.
    assert interpolated(env(service)["SALESBOOK_DATABASE_URL"]) == {
        f"{service.upper()}_DB_PASSWORD"
    }
    url = urlsplit(settings.database_url or "")
    assert url.username == f"salesbook_{service}"
    assert (url.hostname, url.port, url.path) == ("postgres", 5432, "/salesbook")
    # The broker address is the one the broker advertises.
    advertised = env("kafka")["KAFKA_ADVERTISED_LISTENERS"]
    assert settings.kafka_bootstrap == advertised.split("://", 1)[1]
    # Healthy means /healthz answers on the port the service listens on.
    probe = " ".join(spec["healthcheck"]["test"])
    assert f"127.0.0.1:{settings.port}/healthz" in probe
    assert spec["restart"] == "unless-stopped"
    assert spec["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "kafka-init": {"condition": "service_completed_successfully"},
        "migrate": {"condition": "service_completed_successfully"},
    }


def test_every_app_shares_one_signing_secret_and_refuses_a_placeholder() -> None:
    secrets = {env(s)["SALESBOOK_SECRET_KEY"] for s in SERVICES}
    assert len(secrets) == 1
    (secret,) = secrets
    assert ":?" in secret, "compose must refuse to start without a real secret"
    # What compose would pass with a too short value is refused by the services themselves.
    values: dict[str, Any] = {
        k.removeprefix("SALESBOOK_").lower(): resolved(v) for k, v in env("orders").items()
    }
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(_env_file=None, **(values | {"secret_key": "x" * 31}))


def test_secrets_are_named_only_by_the_services_that_use_them() -> None:
    """Each secret comes from .env (compose reads it for every command, so `exec` and a
    second `up` see the same values) and appears only where it is used."""
    used = {
        name: {s for s, spec in SERVICES_OF_COMPOSE.items() if name in interpolated(spec)}
        for name in GENERATED
    }
    assert used == {
        "SALESBOOK_SECRET_KEY": set(SERVICES),
        "POSTGRES_PASSWORD": {"postgres", "migrate", "restore"},
        "ORDERS_DB_PASSWORD": {"postgres", "orders"},
        "PAYMENTS_DB_PASSWORD": {"postgres", "payments"},
        "CLOSING_DB_PASSWORD": {"postgres", "closing"},
        "ANALYTICS_DB_PASSWORD": {"postgres", "analytics"},
        "BACKUP_DB_PASSWORD": {"postgres", "backup"},
    }
    # No secret has a default: a missing .env stops compose with a message, never starts
    # the stack with a well-known password.
    text = (ROOT / "docker-compose.yml").read_text()
    for name in GENERATED:
        assert not re.search(rf"\$\{{{name}:-", text), name
    assert set(interpolated(text)) == set(GENERATED)
    # .env stays out of git and out of the image.
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_make_env_generates_every_secret_once(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    assert write_env(dotenv) == list(GENERATED)
    first = dotenv.read_text()
    values = dict(
        line.split("=", 1) for line in first.splitlines() if line and not line.startswith("#")
    )
    assert set(values) == set(GENERATED)
    assert all(len(v) >= 32 for v in values.values())
    assert len(set(values.values())) == len(values)
    assert dotenv.stat().st_mode & 0o077 == 0, "readable by its owner only"
    assert Settings(
        _env_file=None, environment="production", secret_key=values["SALESBOOK_SECRET_KEY"]
    )
    # Run again it keeps every value: tokens and database passwords stay valid.
    assert write_env(dotenv) == []
    assert dotenv.read_text() == first
    assert "env:\n\t$(PYTHON) deploy/env.py .env" in (ROOT / "Makefile").read_text()


def test_connection_budget_fits_max_connections() -> None:
    """What every replica may open (HTTP pool and overflow, the consumers' pool, a LISTEN
    per consumer or relay) for three replicas of each service, plus migrate, a backup and
    the superuser reserve, fits the server's max_connections."""
    command = SERVICES_OF_COMPOSE["postgres"]["command"]
    (setting,) = [c for c in command if c.startswith("max_connections=")]
    max_connections = int(setting.split("=", 1)[1])
    replicas = 3
    total = 0
    for module in all_modules():
        settings = settings_of(module.name)
        workers = len(module.subscriptions) + (1 if module.produces_events else 0)
        pool = settings.consumer_pool_size or workers
        total += replicas * (settings.db_pool_size + settings.db_max_overflow + pool + workers)
    migrate = settings_of("migrate")
    total += migrate.db_pool_size + migrate.db_max_overflow + 2 + 3  # backup, reserve
    assert total <= max_connections, (total, max_connections)
    # The budget is the settings', not the engine's defaults.
    assert {"SALESBOOK_DB_POOL_SIZE", "SALESBOOK_DB_MAX_OVERFLOW"} <= set(env("orders"))


def test_stops_wait_longer_than_the_services_take() -> None:
    def seconds(text: str) -> int:
        return int(text.removesuffix("s"))

    # Requests, then the workers and the pool get SHUTDOWN_SECONDS each (shared/app.py).
    for service in SERVICES:
        assert seconds(SERVICES_OF_COMPOSE[service]["stop_grace_period"]) > 2 * SHUTDOWN_SECONDS
    for service in ("postgres", "kafka", "proxy"):
        assert seconds(SERVICES_OF_COMPOSE[service]["stop_grace_period"]) > 10


def test_migrate_runs_once_as_the_administrator_before_the_services() -> None:
    spec = SERVICES_OF_COMPOSE["migrate"]
    assert spec["command"] == ["migrate"]
    assert spec["restart"] == "no"
    assert spec["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    url = urlsplit(resolved(env("migrate")["SALESBOOK_DATABASE_URL"]))
    assert url.username == env("postgres")["POSTGRES_USER"]
    assert url.path == "/" + env("postgres")["POSTGRES_DB"]
    settings_of("migrate")  # valid without a signing secret: it signs nothing


def test_postgres_runs_the_bootstrap_and_the_passwords_on_first_start() -> None:
    postgres = SERVICES_OF_COMPOSE["postgres"]
    mounts = {target: source for source, target, *_ in (v.split(":") for v in postgres["volumes"])}
    init = sorted(t for t in mounts if t.startswith("/docker-entrypoint-initdb.d/"))
    assert [mounts[t] for t in init] == ["./deploy/bootstrap.sql", "./deploy/role-passwords.sh"]
    assert BOOTSTRAP.is_file()
    assert os.access(ROOT / "deploy" / "role-passwords.sh", os.X_OK), "the image runs it"
    assert mounts["/var/lib/postgresql/data"] == "pgdata"


def test_postgres_is_healthy_only_once_it_listens_on_tcp() -> None:
    """The image runs the init scripts on a server listening on its socket only; a check
    over the socket passes then, and migrate starts too early (tests/ops/test_bootstrap_sql
    runs this command against real servers)."""
    test = SERVICES_OF_COMPOSE["postgres"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1] == "pg_isready"
    assert test[test.index("-h") + 1] == "127.0.0.1"
    assert test[test.index("-d") + 1] == env("postgres")["POSTGRES_DB"]


def test_kafka_keeps_its_data_on_its_volume_for_ever() -> None:
    kafka = SERVICES_OF_COMPOSE["kafka"]
    settings = env("kafka")
    (volume,) = kafka["volumes"]
    name, target = volume.split(":")
    assert name in COMPOSE["volumes"]
    assert settings["KAFKA_LOG_DIRS"] == target, "the broker must write where the volume is"
    assert settings["CLUSTER_ID"], "a fixed id, so the formatted log dir is reused"
    assert settings["KAFKA_LOG_RETENTION_MS"] == "-1"
    assert settings["KAFKA_LOG_RETENTION_BYTES"] == "-1"
    assert int(settings["KAFKA_OFFSETS_RETENTION_MINUTES"]) >= 10 * 365 * 24 * 60
    script = " ".join(SERVICES_OF_COMPOSE["kafka-init"]["command"])
    assert "--config retention.ms=-1" in script
    assert "--add-config retention.ms=-1" in script, "topics made before keep a retention"


def test_backup_and_restore_run_in_the_stack() -> None:
    volumes = COMPOSE["volumes"]
    for name in ("backup", "restore"):
        spec = SERVICES_OF_COMPOSE[name]
        assert spec["profiles"] == ["tools"], "started only when asked"
        assert spec["build"] == "."
        (mount,) = spec["volumes"]
        volume, target = mount.split(":")
        assert volume in volumes and target == "/var/lib/salesbook/backups"
    assert urlsplit(resolved(env("backup")["SALESBOOK_DATABASE_URL"])).username == (
        "salesbook_backup"
    )
    assert urlsplit(resolved(env("restore")["SALESBOOK_DATABASE_URL"])).username == "postgres"
    # The folder exists in the image, owned by the user the image runs as, so the volume
    # mounted there starts writable.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "install -d -o salesbook -g salesbook /var/lib/salesbook/backups" in dockerfile


def test_kafka_init_creates_the_topics_with_the_partitions_the_code_expects() -> None:
    defaults = Settings.model_fields
    kafka = SERVICES_OF_COMPOSE["kafka"]
    assert "broker,controller" in env("kafka")["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert kafka["image"].startswith("apache/kafka:")
    init = SERVICES_OF_COMPOSE["kafka-init"]
    assert init["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert init["restart"] == "no"
    script = " ".join(init["command"])
    prefix = defaults["kafka_topic_prefix"].default
    for source in ("orders", "payments", "closing"):
        assert f"{prefix}{source}" in script
    # The count is written once (an anchor in the services' settings) and read from there.
    assert '--partitions "$$SALESBOOK_KAFKA_PARTITIONS"' in script
    assert (
        init["environment"]["SALESBOOK_KAFKA_PARTITIONS"]
        == env("orders")["SALESBOOK_KAFKA_PARTITIONS"]
    )
    assert env("orders")["SALESBOOK_KAFKA_PARTITIONS"] == str(defaults["kafka_partitions"].default)
    assert len(re.findall(r"partitions\D*3\b", (ROOT / "docker-compose.yml").read_text())) == 1


UPSTREAM = r"set\s+\$(\w+)\s+http://([\w.-]+):(\d+);"
LOCATION = r"location\s+(/\S*)\s*\{\s*proxy_pass\s+\$(\w+);"


def nginx_routes() -> dict[str, tuple[str, int]]:
    """location prefix -> (host, port) of the upstream it proxies to."""
    upstreams = {name: (host, int(port)) for name, host, port in re.findall(UPSTREAM, NGINX)}
    return {prefix: upstreams[name] for prefix, name in re.findall(LOCATION, NGINX)}


def test_the_proxy_looks_service_names_up_again() -> None:
    """nginx resolves a proxy_pass host once at start unless the address is a variable and a
    resolver is set: replicas added later, or a service recreated elsewhere, would get no
    traffic (tests/e2e runs this file with a real nginx and moves services)."""
    (resolver,) = re.findall(r"^resolver\s+([^;]+);", NGINX, re.MULTILINE)
    address, *options = resolver.split()
    assert address == "127.0.0.11", "Docker's embedded DNS"
    valid = [o for o in options if o.startswith("valid=")]
    assert valid and int(valid[0].removeprefix("valid=").removesuffix("s")) <= 30
    assert not re.search(r"^\s*upstream\s", NGINX, re.MULTILINE), "resolved once, at start"
    assert re.findall(r"proxy_pass\s+([^;]+);", NGINX)
    assert all(t.startswith("$") for t in re.findall(r"proxy_pass\s+([^;]+);", NGINX))


def route_prefixes() -> dict[str, str]:
    """/v1/<first segment> -> the service whose app mounts paths under it."""
    owners: dict[str, set[str]] = {}
    for module in all_modules():
        # Built, never started: the database URL is only parsed.
        app = create_app(
            [module],
            settings=Settings(secret_key="x", _env_file=None),
            database_url="postgresql://nobody@nowhere/none",
            run_workers=False,
        )
        for path in app.openapi()["paths"]:
            if path.startswith(API_PREFIX + "/"):
                segment = path.removeprefix(API_PREFIX + "/").split("/")[0]
                owners.setdefault(f"{API_PREFIX}/{segment}", set()).add(module.name)
    assert all(len(o) == 1 for o in owners.values()), f"a prefix has two owners: {owners}"
    return {prefix: next(iter(o)) for prefix, o in owners.items()}


def test_the_proxy_routes_every_mounted_prefix_to_its_service() -> None:
    routes = nginx_routes()
    prefixes = route_prefixes()
    assert set(routes) == set(prefixes)
    for prefix, service in prefixes.items():
        assert routes[prefix] == (service, settings_of(service).port), prefix
    proxy = SERVICES_OF_COMPOSE["proxy"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert set(proxy["depends_on"]) == set(SERVICES)
    assert all(d["condition"] == "service_healthy" for d in proxy["depends_on"].values())


def test_the_image_installs_the_project_and_runs_salesbook() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "\nFROM python:3.11-slim\n" in dockerfile
    assert "RUN pip install -c constraints.txt ." in dockerfile
    assert 'ENTRYPOINT ["salesbook"]' in dockerfile
    for package in ("shared", "services"):
        assert f"COPY {package} ./{package}" in dockerfile
    # Dependencies are installed, pinned, before any source is copied: a source change
    # reuses that layer.
    deps = dockerfile.index("RUN pip install -c constraints.txt -r constraints.txt")
    assert dockerfile.index("COPY deploy/constraints.txt ./constraints.txt") < deps
    assert deps < min(
        dockerfile.index(f"COPY {p} ") for p in ("shared", "services", "pyproject.toml")
    )


def test_the_image_pins_every_package_it_installs() -> None:
    pins = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"not pinned: {line}"
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in deploy/constraints.txt"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
        # And what it needs, all the way down (as installed here).
        for needed in distribution(requirement.name).requires or []:
            dependency = Requirement(needed)
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                assert canonicalize_name(dependency.name) in pins, (name, dependency.name)
