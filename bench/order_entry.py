"""Order entry over HTTP: wrk posting 3-line orders with `"submit": true` (and drafts) for 64
customers over 32 connections, against the full app as `salesbook run` serves it, and, in
the same run on the same PostgreSQL, against a bare FastAPI endpoint that inserts one row
with asyncpg (the baseline). Then one `salesbook serve orders` process against two on the
same database. Every figure is printed with its ratio to the baseline of its round.

Needs wrk (`make bench` installs Debian's package when it is missing). Settings:
SALESBOOK_BENCH_SECONDS (per wrk run, default 10), SALESBOOK_BENCH_ROUNDS (default 3),
SALESBOOK_BENCH_CONNECTIONS (default 32), SALESBOOK_BENCH_CUSTOMERS (default 64). The
database is a fresh one on the server of SALESBOOK_BENCH_DATABASE_URL (or
SALESBOOK_TEST_DATABASE_URL), else an embedded server.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from bench._bare import POOL_SIZE as bare_pool
from bench._server import bench_server
from shared.auth import Role, issue_token
from shared.db import plain_url

SECRET = "bench-secret-key-for-order-entry-0123456789"
PRODUCTS = 20
ROOT = Path(__file__).resolve().parent.parent

# wrk's script: every request a new order of three random lines for a random customer;
# done() prints one JSON line the benchmark reads.
LUA = """
local customers = {%(customers)s}
local skus = {%(skus)s}
local token = "%(token)s"
local path = "%(path)s"
local submit = %(submit)s
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local c = customers[math.random(#customers)]
  local body
  if path == "/rows" then
    body = string.format('{"customer": %%d, "amount": "%%d.50"}', math.random(64),
                         math.random(1000))
  else
    local lines = {}
    for i = 1, 3 do
      lines[i] = string.format('{"sku": "%%s", "quantity": "%%d"}',
                               skus[math.random(#skus)], math.random(5))
    end
    body = string.format('{"customer_id": "%%s", "channel": "pos", "salesperson": "wang", '
      .. '"lines": [%%s], "submit": %%s}', c, table.concat(lines, ", "), submit)
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                   ["Authorization"] = "Bearer " .. token}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "seconds": %%f, "non2xx": %%d, '
    .. '"errors": %%d, "p50_ms": %%f, "p99_ms": %%f}\\n',
    summary.requests, summary.duration / 1e6, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass
class Run:
    rate: float
    requests: int
    bad: int
    p50_ms: float
    p99_ms: float
    cpu_ms: float | None = None  # the servers' CPU time per request
    busy: float | None = None  # the share of the machine's CPU time in use while wrk ran


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on {port} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server on {port} did not start:\n{log.read_text()[-3000:]}")


@contextmanager
def _server(args: list[str], *, env: dict[str, str], log: Path) -> Iterator[tuple[int, int]]:
    """Starts `args --port P`, waits for /healthz, yields (port, pid); SIGTERM afterwards."""
    port = _free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*args, "--port", str(port)], env=env, cwd=ROOT, stdout=out, stderr=out
        )
    try:
        _wait_healthy(port, process, log)
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wrk(
    port: int, script: Path, *, connections: int, seconds: int, threads: int = 2
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _result(process: subprocess.Popen[str]) -> Run:
    output, _ = process.communicate()
    for line in output.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT ") :])
            return Run(
                rate=r["requests"] / r["seconds"],
                requests=r["requests"],
                bad=r["non2xx"] + r["errors"],
                p50_ms=r["p50_ms"],
                p99_ms=r["p99_ms"],
            )
    raise SystemExit(f"wrk printed no result:\n{output}")


def _load(
    ports: list[int], script: Path, *, connections: int, seconds: int, pids: list[int]
) -> Run:
    """wrk against every port at once, the connections split between them; rates add up.
    The CPU the server processes `pids` spend meanwhile is counted per request."""
    each = connections // len(ports)
    cpu = _cpu_seconds(pids)
    busy_before, total_before = _machine_ticks()
    threads = 2 if len(ports) == 1 else 1
    running = [
        _wrk(port, script, connections=each, seconds=seconds, threads=threads) for port in ports
    ]
    for process in running:
        process.wait()
    busy_after, total_after = _machine_ticks()
    runs = [_result(p) for p in running]
    requests = sum(r.requests for r in runs)
    return Run(
        rate=sum(r.rate for r in runs),
        requests=requests,
        bad=sum(r.bad for r in runs),
        p50_ms=max(r.p50_ms for r in runs),
        p99_ms=max(r.p99_ms for r in runs),
        cpu_ms=(_settle(pids) - cpu) * 1000 / max(requests, 1),
        busy=(busy_after - busy_before) / max(total_after - total_before, 1),
    )


class _Backends:
    """Samples the database's backends every 50 ms while a run lasts: how many connections
    the servers held open at most, and how many of them were busy in a request at once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened = self.busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()))

    async def _sample(self) -> None:
        connection = await asyncpg.connect(self.url)
        try:
            while not self._stop.is_set():
                opened, busy = await connection.fetchrow(
                    "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
                self.opened, self.busy = max(self.opened, opened), max(self.busy, busy)
                await asyncio.sleep(0.05)
        finally:
            await connection.close()

    def __enter__(self) -> _Backends:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _settle(pids: list[int]) -> float:
    """Waits until the servers are idle again (requests wrk gave up on are still being
    answered, `salesbook run`'s consumers are still applying the events), then returns
    their CPU time: what the run cost them in all."""
    used = _cpu_seconds(pids)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _cpu_seconds(pids)
        if now - used < 0.05 * len(pids):
            return now
        used = now
    return used


def _script(folder: Path, name: str, *, path: str, customers: list[str], submit: bool) -> Path:
    token = issue_token(secret=SECRET, subject="bench-till", role=Role.POS, ttl=timedelta(hours=12))
    script = folder / f"{name}.lua"
    script.write_text(
        LUA
        % {
            "customers": ", ".join(f'"{c}"' for c in customers),
            "skus": ", ".join(f'"BENCH-{i:03d}"' for i in range(PRODUCTS)),
            "token": token,
            "path": path,
            "submit": "true" if submit else "false",
        }
    )
    return script


def _seed(port: int, customers: int) -> list[str]:
    token = issue_token(secret=SECRET, subject="bench", role=Role.ADMIN, ttl=timedelta(hours=1))
    headers = {"Authorization": f"Bearer {token}"}
    ids = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", headers=headers) as client:
        for i in range(PRODUCTS):
            client.post(
                "/products",
                json={
                    "sku": f"BENCH-{i:03d}",
                    "name": f"Product {i}",
                    "category": f"cat-{i % 4}",
                    "unit_price": f"{random.randint(1, 500)}.{random.randint(0, 99):02d}",
                    "tax_rate": "0.13",
                },
            ).raise_for_status()
        for i in range(customers):
            answer = client.post(
                "/customers",
                json={
                    "name": f"Customer {i}",
                    "region": ("east", "north", "south")[i % 3],
                    "segment": "retail",
                    "payment_terms_days": 30,
                },
            )
            answer.raise_for_status()
            ids.append(answer.json()["id"])
    return ids


async def _create_database(server: str) -> str:
    admin = plain_url(server)
    name = f"salesbook_bench_orders_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return urlunsplit(urlsplit(admin)._replace(path="/" + name))


async def _drop_database(server: str, url: str) -> None:
    connection = await asyncpg.connect(plain_url(server))
    try:
        name = urlsplit(url).path.lstrip("/")
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _statuses(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT status, count(*) FROM orders.orders GROUP BY 1")
    finally:
        await connection.close()
    return {r["status"]: r["count"] for r in rows}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _span(values: list[float], fmt: str = "{:.0f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    low, high, middle = (
        fmt.format(v) for v in (min(values), max(values), statistics.median(values))
    )
    return f"{low}–{high} (median {middle})"


def _print(label: str, run: Run, baseline: float | None, rss: float | None = None) -> None:
    ratio = f"  {run.rate / baseline:.3f}× bare" if baseline else ""
    memory = f"  peak RSS {rss:.0f} MB" if rss is not None else ""
    print(
        f"  {label:<30} {run.rate:7.1f}/s  p50 {run.p50_ms:6.1f} ms  p99 {run.p99_ms:7.1f} ms"
        f"  server CPU {run.cpu_ms:5.2f} ms/request  machine CPU busy {run.busy:4.0%}"
        f"  non-2xx/errors {run.bad}{ratio}{memory}",
        flush=True,
    )


async def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("order_entry needs wrk: apt-get install wrk (make bench does it)")
    seconds = int(os.environ.get("SALESBOOK_BENCH_SECONDS", "10"))
    rounds = int(os.environ.get("SALESBOOK_BENCH_ROUNDS", "3"))
    connections = int(os.environ.get("SALESBOOK_BENCH_CONNECTIONS", "32"))
    customer_count = int(os.environ.get("SALESBOOK_BENCH_CUSTOMERS", "64"))
    folder = Path(tempfile.mkdtemp(prefix="salesbook-bench-orders-"))
    results: dict[str, list[float]] = {}
    with bench_server() as server:
        url = await _create_database(server)
        env = {
            **os.environ,
            "SALESBOOK_DATABASE_URL": url,
            "SALESBOOK_SECRET_KEY": SECRET,
            "SALESBOOK_DATA_DIR": str(folder / "data"),
            "SALESBOOK_LOG_LEVEL": "WARNING",
        }
        env.pop("SALESBOOK_KAFKA_BOOTSTRAP", None)
        salesbook = [str(Path(sys.executable).parent / "salesbook")]
        try:
            print(f"load before: {_uptime()}", flush=True)
            with ExitStack() as stack:
                bare, bare_pid = stack.enter_context(
                    _server([sys.executable, "-m", "bench._bare"], env=env, log=folder / "bare.log")
                )
                full, full_pid = stack.enter_context(
                    _server([*salesbook, "run"], env=env, log=folder / "run.log")
                )
                customers = _seed(full, customer_count)
                bare_script = _script(
                    folder, "bare", path="/rows", customers=customers, submit=False
                )
                submit_script = _script(
                    folder, "submit", path="/v1/orders", customers=customers, submit=True
                )
                draft_script = _script(
                    folder, "draft", path="/v1/orders", customers=customers, submit=False
                )
                # A short warm-up of each, so no round pays for first connections and caches.
                for port, pid, script in (
                    (bare, bare_pid, bare_script),
                    (full, full_pid, submit_script),
                ):
                    _load([port], script, connections=connections, seconds=2, pids=[pid])
                for n in range(1, rounds + 1):
                    print(
                        f"round {n}/{rounds} (salesbook run, {connections} connections, "
                        f"{seconds}s each; {_uptime()})",
                        flush=True,
                    )
                    base = _load(
                        [bare],
                        bare_script,
                        connections=connections,
                        seconds=seconds,
                        pids=[bare_pid],
                    )
                    _print("bare FastAPI + asyncpg insert", base, None)
                    with _Backends(url) as backends:
                        submitted = _load(
                            [full],
                            submit_script,
                            connections=connections,
                            seconds=seconds,
                            pids=[full_pid],
                        )
                    _print("orders, submit: true", submitted, base.rate, _peak_rss_mb(full_pid))
                    print(
                        f"    database backends: {backends.opened} open at most (the bare "
                        f"endpoint's {bare_pool} included), {backends.busy} busy at once at most",
                        flush=True,
                    )
                    drafts = _load(
                        [full],
                        draft_script,
                        connections=connections,
                        seconds=seconds,
                        pids=[full_pid],
                    )
                    _print("orders, drafts", drafts, base.rate, _peak_rss_mb(full_pid))
                    results.setdefault("bare", []).append(base.rate)
                    results.setdefault("submitted", []).append(submitted.rate)
                    results.setdefault("submitted ÷ bare", []).append(submitted.rate / base.rate)
                    results.setdefault("drafts", []).append(drafts.rate)
                    results.setdefault("drafts ÷ bare", []).append(drafts.rate / base.rate)
                results.setdefault("run peak RSS MB", []).append(_peak_rss_mb(full_pid))
            print(f"orders in the database: {await _statuses(url)}", flush=True)
            serve = [*salesbook, "serve", "orders"]
            for n in range(1, rounds + 1):
                print(f"round {n}/{rounds} (salesbook serve orders; {_uptime()})", flush=True)
                with _server(serve, env=env, log=folder / "serve-1.log") as (one, pid):
                    single = _load(
                        [one],
                        submit_script,
                        connections=connections,
                        seconds=seconds,
                        pids=[pid],
                    )
                    _print("1 process, submit: true", single, None, _peak_rss_mb(pid))
                with ExitStack() as stack:
                    first, pid_1 = stack.enter_context(
                        _server(serve, env=env, log=folder / "serve-2a.log")
                    )
                    second, pid_2 = stack.enter_context(
                        _server(serve, env=env, log=folder / "serve-2b.log")
                    )
                    double = _load(
                        [first, second],
                        submit_script,
                        connections=connections,
                        seconds=seconds,
                        pids=[pid_1, pid_2],
                    )
                    rss = max(_peak_rss_mb(pid_1), _peak_rss_mb(pid_2))
                    _print("2 processes, submit: true", double, None, rss)
                results.setdefault("serve 1 process", []).append(single.rate)
                results.setdefault("serve 2 processes", []).append(double.rate)
                results.setdefault("2 processes ÷ 1", []).append(double.rate / single.rate)
            print(f"load after: {_uptime()}")
            print("summary over rounds (min–max):")
            for label, values in results.items():
                fmt = "{:.2f}" if "÷" in label else "{:.0f}"
                print(f"  {label:<22} {_span(values, fmt)}")
        finally:
            await _drop_database(server, url)
            shutil.rmtree(folder, ignore_errors=True)
