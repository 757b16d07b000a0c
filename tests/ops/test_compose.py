"""docker-compose.yml, the Dockerfile and the proxy config agree with the code: every service
runs with the settings it reads, starts after what it needs, and the proxy sends every path
prefix the apps mount to the app that mounts it. (No container engine is needed: the files
are read, not run.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.registry import SERVICES, all_modules
from shared.app import API_PREFIX, create_app
from shared.config import Settings

ROOT = Path(__file__).parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES_OF_COMPOSE: dict[str, Any] = COMPOSE["services"]
NGINX = (ROOT / "deploy" / "nginx.conf").read_text()
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
    """A value with compose's ${VAR:-default} / ${VAR:?message} written as a test value."""
    return re.sub(
        r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}",
        lambda m: m.group(2) if m.group(2) is not None else f"test-{m.group(1).lower()}",
        value,
    )


def settings_of(service: str) -> Settings:
    values = {k.removeprefix("SALESBOOK_").lower(): resolved(v) for k, v in env(service).items()}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES_OF_COMPOSE) == {
        "postgres",
        "kafka",
        "kafka-init",
        "migrate",
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
    # Its own role, on the bootstrapped database, with the bootstrap's password.
    url = urlsplit(settings.database_url or "")
    assert (url.username, url.password) == (f"salesbook_{service}", f"salesbook_{service}")
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
    secrets = {env(s)["SALESBOOK_SECRET_KEY"] for s in (*SERVICES, "migrate")}
    assert len(secrets) == 1
    (secret,) = secrets
    assert ":?" in secret, "compose must refuse to start without a real secret"


def test_migrate_runs_once_as_the_administrator_before_the_services() -> None:
    spec = SERVICES_OF_COMPOSE["migrate"]
    assert spec["command"] == ["migrate"]
    assert spec["restart"] == "no"
    assert spec["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    url = urlsplit(resolved(env("migrate")["SALESBOOK_DATABASE_URL"]))
    assert url.username == env("postgres")["POSTGRES_USER"]
    assert url.path == "/" + env("postgres")["POSTGRES_DB"]


def test_postgres_runs_the_bootstrap_on_first_start() -> None:
    postgres = SERVICES_OF_COMPOSE["postgres"]
    mounts = [v.split(":") for v in postgres["volumes"]]
    assert any(
        source == "./deploy/bootstrap.sql" and target.startswith("/docker-entrypoint-initdb.d/")
        for source, target, *_ in mounts
    )
    assert BOOTSTRAP.is_file()
    assert "pg_isready" in postgres["healthcheck"]["test"]


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
    assert f"--partitions {defaults['kafka_partitions'].default}" in script


UPSTREAM = r"upstream\s+(\w+)\s*\{\s*server\s+([\w.-]+):(\d+);"
LOCATION = r"location\s+(/\S*)\s*\{\s*proxy_pass\s+http://(\w+);"


def nginx_routes() -> dict[str, tuple[str, int]]:
    """location prefix -> (host, port) of the upstream it proxies to."""
    upstreams = {name: (host, int(port)) for name, host, port in re.findall(UPSTREAM, NGINX)}
    return {prefix: upstreams[name] for prefix, name in re.findall(LOCATION, NGINX)}


def route_prefixes() -> dict[str, str]:
    """/v1/<first segment> -> the service whose app mounts paths under it."""
    owners: dict[str, set[str]] = {}
    for module in all_modules():
        # Built, never started: the database URL is only parsed.
        app = create_app(
            [module],
            settings=Settings(secret_key="x", _env_file=None),  # type: ignore[call-arg]
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
    assert "RUN pip install ." in dockerfile
    assert 'ENTRYPOINT ["salesbook"]' in dockerfile
    for package in ("shared", "services"):
        assert f"COPY {package} ./{package}" in dockerfile
