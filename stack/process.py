"""Child processes of the embedded stack: start, wait for, and stop a service.

A service runs in its own session (so Ctrl-C reaches only the supervisor, which then
stops children in order) and dies with its parent, even when the parent is killed
with ``kill -9`` (Linux ``PR_SET_PDEATHSIG``).  Readiness is polled (a real
connection, a real MQTT CONNECT), never slept for.

A process is named by its pid *and* its start time (`ProcessRef`), so that a record
left behind by a killed supervisor never makes us signal an unrelated process that
got the same pid later.  A service's log is private (0600): logs carry topics,
device ids and payload excerpts.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from core.errors import SmartbyError


class StackError(SmartbyError):
    """A local service could not be found, started or reached; the message says which."""


class MissingBinaryError(StackError):
    """PostgreSQL or Mosquitto is not installed; the message says how to install it."""


_PR_SET_PDEATHSIG = 1
#: resolved here, in the parent: the child, between fork and exec, should only call it
#: (loading a library there, while other threads of the parent may hold the loader's
#: lock, is how a ``preexec_fn`` deadlocks)
_prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child if its parent dies, even by ``kill -9``.

    Without it a crashed supervisor would leave a broker or postmaster holding ports.
    Runs in the child between fork and exec.  The signal is tied to the *thread* that
    forked (prctl(2)), so a supervisor spawns its children from its main thread only.
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    user: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    umask: int = -1,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session (so Ctrl-C reaches only the supervisor, which
    then stops children in order), writing its output to ``log_path`` (0600); with
    ``umask``, the child creates its files with it (-1: ours)."""
    log_file: IO[bytes] = open_private_log(log_path)
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
            umask=umask,
        )
    finally:
        log_file.close()


def open_private_log(path: Path) -> IO[bytes]:
    """``path`` opened for appending, readable only by its owner (also a log an older
    version left world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with contextlib.suppress(PermissionError):  # someone else's: its owner decides
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


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


def exit_description(returncode: int) -> str:
    """``exit code 1`` or ``killed by SIGKILL``, from a `subprocess.Popen` return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses):
    [0] state, [1] ppid, [2] process group, ..., [19] start time (proc(5))."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None if no such live process."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A process named so that a reused pid does not match: pid and start time."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        start = process_start(pid)
        return None if start is None else cls(pid, start)

    def alive(self) -> bool:
        return process_start(self.pid) == self.start


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``.

    A service runs in a session of its own whose id is its pid, so this finds what it
    left behind: PostgreSQL's backends outlive a postmaster killed with ``kill -9``
    for a moment, and a new postmaster refuses to start while they hold the old
    shared memory."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
