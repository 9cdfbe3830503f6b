"""Child processes of the embedded stack: start, wait for, and stop a service.

A service runs in its own session (so Ctrl-C reaches only the supervisor, which then
stops children in order) and dies with its parent, even when the parent is killed
with ``kill -9`` (Linux ``PR_SET_PDEATHSIG``).  Readiness is polled (a real
connection, a real MQTT CONNECT), never slept for.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from core.errors import SmartbyError


class StackError(SmartbyError):
    """A local service could not be found, started or reached; the message says which."""


class MissingBinaryError(StackError):
    """PostgreSQL or Mosquitto is not installed; the message says how to install it."""


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child if its parent dies, even by ``kill -9``.

    Without it a crashed supervisor would leave a broker or postmaster holding ports.
    Runs in the child between fork and exec.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    user: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session (so Ctrl-C reaches only the supervisor, which
    then stops children in order), writing its output to ``log_path``."""
    log_file: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            user=user,
            env=env,
            cwd=cwd,
        )
    finally:
        log_file.close()


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0
) -> None:
    """Signal, wait, and escalate to SIGKILL if the process will not go."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``check`` until true; fail early if ``alive`` says the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(f"{what} exited while starting")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(interval)


def await_ready(
    proc: subprocess.Popen[bytes],
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log_path: Path,
    on_failure: Callable[[], None],
) -> None:
    """Wait for a started service; on failure clean up and say what its log says."""
    try:
        wait_until(check, timeout=timeout, what=what, alive=lambda: proc.poll() is None)
    except StackError as exc:
        on_failure()
        raise StackError(f"{exc}; log {log_path}:\n{tail(log_path)}") from None


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
