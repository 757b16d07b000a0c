"""The `salesbook` command as a real process: started with a clean environment, watched
until it answers, and always stopped, along with any PostgreSQL it left behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import psutil

STARTUP_SECONDS = 90
STOP_SECONDS = 60
LISTENING = re.compile(r"is listening on (http://\S+)")


def salesbook_command() -> list[str]:
    """The installed console script of this environment, or the module behind it."""
    script = Path(sys.executable).with_name("salesbook")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "services.cli"]


def clean_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment without any SALESBOOK_* setting, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESBOOK_")}
    env["SALESBOOK_DATA_DIR"] = str(data_dir)
    env.update(settings)
    return env


def salesbook(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    """Run a one-shot command; its stdout, or a failure showing what it said."""
    result = subprocess.run(
        [*salesbook_command(), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"salesbook {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Postmasters serving `pgdata` (their workers exit with them)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(proc)
    return found


def until(check: Callable[[], bool], *, within: float, every: float = 0.1) -> bool:
    """Whether `check` holds within `within` seconds, asked every `every` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def postgres_gone(pgdata: Path, within: float = 30) -> bool:
    """No postmaster serves `pgdata`, allowing the moment between the server removing its
    pid file (where `pg_ctl stop` stops waiting) and the process ending."""
    return until(
        lambda: not any(_running(proc) for proc in postgres_processes(pgdata)), within=within
    )


def kill_postmaster(pgdata: Path) -> psutil.Process:
    """SIGKILL the one postmaster of `pgdata` (no shutdown of its own) and wait until it has
    ended; a zombie (not yet reaped by a parent that is not ours) counts as ended."""
    [postmaster] = postgres_processes(pgdata)
    postmaster.kill()
    assert until(lambda: not _running(postmaster), within=10), postmaster
    return postmaster


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_postgres(pgdata: Path) -> None:
    for proc in postgres_processes(pgdata):
        # SIGQUIT is PostgreSQL's immediate shutdown: it takes its workers down with it.
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(10)
            except psutil.TimeoutExpired:
                proc.kill()


class Server:
    """A running `salesbook run` or `salesbook serve`, on the port it chose and announced."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.base_url = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"salesbook exited early:\n{self.output()}")
            announced = LISTENING.search(self.output())
            if announced:
                self.base_url = announced.group(1)
                if httpx.get(f"{self.base_url}/healthz", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"salesbook did not answer in time:\n{self.output()}")

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Send `sig` and wait for the exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"salesbook ignored {sig.name}:\n{self.output()}") from None


@contextmanager
def salesbook_server(
    *args: str, data_dir: Path, log_dir: Path, **settings: str
) -> Iterator[Server]:
    """`salesbook <args> --port 0` (port 0: nothing else can take the port between choosing
    and binding it); killed, with any PostgreSQL of `data_dir`, if the test did not stop it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{args[0]}-{time.monotonic_ns()}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*salesbook_command(), *args, "--port", "0"],
            env=clean_env(data_dir, **settings),
            stdout=sink,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C at the test's terminal is not also sent to it.
            start_new_session=True,
        )
    try:
        yield Server(process, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_postgres((data_dir / "pgdata").resolve())


def salesbook_run(data_dir: Path, log_dir: Path) -> AbstractContextManager[Server]:
    """`salesbook run` over `data_dir`, with the embedded PostgreSQL."""
    return salesbook_server("run", data_dir=data_dir, log_dir=log_dir)
