"""Child processes that cannot outlive the test process."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, the kernel terminates the child when the
    thread that started it dies, even by SIGKILL, when no fixture teardown gets to stop it."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


DIE_WITH_PARENT: Callable[[], None] | None = _die_with_parent if sys.platform == "linux" else None
"""`preexec_fn` for a server a test starts from its main thread (not from a worker thread,
whose end would stop the server)."""
