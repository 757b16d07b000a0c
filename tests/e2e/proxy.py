"""deploy/nginx.conf run by a real nginx in front of the test's services, and the name server
it asks for their addresses (Docker's embedded DNS in the compose deployment).

The config is the deployment's own file with only its addresses and ports swapped for the
test's: the resolver's address, the listening port, and the services' port. The services
keep their names (`orders`, `payments`, ...), which nginx must look up through the
resolver; each service listens on an address of its own in 127.0.0.0/8, so a service
started again on a new address is only reached if nginx looks the name up again.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.children import DIE_WITH_PARENT

NGINX = Path("/usr/sbin/nginx")
CONFIG = Path(__file__).parents[2] / "deploy" / "nginx.conf"
STARTUP_SECONDS = 30


class Addresses:
    """Distinct loopback addresses, away from 127.0.0.1 and from other test sessions'."""

    def __init__(self) -> None:
        self._random = random.SystemRandom()
        self._used: set[str] = set()

    def new(self) -> str:
        while True:
            address = ".".join(
                str(part)
                for part in (
                    127,
                    self._random.randint(1, 254),
                    self._random.randint(0, 255),
                    self._random.randint(1, 254),
                )
            )
            if address not in self._used:
                self._used.add(address)
                return address


def free_port(address: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


class NameServer:
    """Answers A queries for the names it was given, over UDP, until stopped. Names can be
    moved to another address at any time; unknown names get NXDOMAIN."""

    def __init__(self, address: str) -> None:
        self._records: dict[str, str] = {}
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((address, 0))
        self._socket.settimeout(0.2)
        self.address = f"{address}:{self._socket.getsockname()[1]}"
        self.queries: dict[str, int] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    def set(self, name: str, address: str) -> None:
        with self._lock:
            self._records[name] = address

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                query, sender = self._socket.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = self._answer(query)
            if answer is not None:
                self._socket.sendto(answer, sender)

    def _answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        (ident,) = struct.unpack("!H", query[:2])
        labels, offset = [], 12
        while offset < len(query) and query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode("ascii").lower())
            offset += 1 + length
        question_end = offset + 5  # the terminating zero, then type and class
        if question_end > len(query):
            return None
        qtype, _ = struct.unpack("!HH", query[offset + 1 : question_end])
        name = ".".join(labels)
        with self._lock:
            address = self._records.get(name)
            self.queries[name] = self.queries.get(name, 0) + 1
        question = query[12:question_end]
        if address is None:
            return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question
        if qtype != 1:  # not A: the name exists, with no record of that type
            return struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question
        record = struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(address)
        return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + record


def rendered_config(*, resolver: str, listen: str, service_port: int) -> str:
    """deploy/nginx.conf with the test's resolver, listening address and service port."""
    text = CONFIG.read_text()
    swaps = {
        "resolver 127.0.0.11 ": f"resolver {resolver} ",
        "listen 80;": f"listen {listen};",
        ":8000;": f":{service_port};",
    }
    for old, new in swaps.items():
        assert old in text, f"deploy/nginx.conf no longer has {old!r}: update tests/e2e/proxy.py"
        text = text.replace(old, new)
    return text


class Proxy:
    """A running nginx; `base_url` is where requests go."""

    def __init__(self, process: subprocess.Popen[bytes], folder: Path, base_url: str) -> None:
        self.process = process
        self.folder = folder
        self.base_url = base_url

    def errors(self) -> str:
        log = self.folder / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited early:\n{self.errors()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"nginx did not answer in time:\n{self.errors()}")


@contextmanager
def nginx_proxy(folder: Path, *, resolver: str, address: str, service_port: int) -> Iterator[Proxy]:
    """nginx in the foreground with deploy/nginx.conf as its only server; stopped after."""
    assert NGINX.is_file(), f"the end-to-end test needs {NGINX}: apt-get install nginx"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port(address)
    (folder / "default.conf").write_text(
        rendered_config(resolver=resolver, listen=f"{address}:{port}", service_port=service_port)
    )
    temp = {kind: folder / kind for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    # As root nginx would hand its workers to `nobody`, who cannot enter pytest's folders.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log info;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    access_log {folder}/access.log;\n"
        + "".join(f"    {kind}_temp_path {path};\n" for kind, path in temp.items())
        + f"    include {folder}/default.conf;\n"
        "}\n"
    )
    with (folder / "stderr.log").open("wb") as sink:
        process = subprocess.Popen(
            [str(NGINX), "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,
            # A test process killed mid-test must not leave nginx serving its port.
            preexec_fn=DIE_WITH_PARENT,
        )
    try:
        proxy = Proxy(process, folder, f"http://{address}:{port}")
        proxy.wait_until_up()
        yield proxy
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # fast shutdown, workers included
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
