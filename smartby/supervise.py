"""Keeping ``smartby up``'s processes up: restart with backoff, give up on a crash loop,
stop in order, and clean up after a supervisor that was killed.

The restart policy is systemd's ``Restart=on-failure`` with ``RestartSec`` growing,
and its ``StartLimitBurst``/``StartLimitIntervalSec``:

- every exit the supervisor did not ask for is a failure, a clean exit code 0
  included (a service meant to run until stopped has failed when it stops; a
  broker stopped with SIGTERM by hand exits 0 and is started again);
- the first restart comes after 0.5 s, each further one waits twice as long, up
  to 30 s; a service that then stays up for 30 s starts again from 0.5 s;
- the 5th failure of one service within 60 s gives up: smartby stops everything
  and exits 1.  With the backoff, that means a service that dies within seconds
  of every start (a crash loop), not one that fails now and then.

Everything here runs on the supervisor's main thread: ``PR_SET_PDEATHSIG`` is tied to
the thread that forked (`stack.process`), and the loop is a plain poll (`tick`) that
a signal handler only interrupts by setting a flag.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stack.process import (
    ProcessRef,
    StackError,
    exit_description,
    group_members,
    kill_group,
    stop_process,
    tail,
)

#: how long what a dead service left in its process group (PostgreSQL's backends after
#: a ``kill -9`` of the postmaster) may take to go before it is killed
LEFTOVER_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart a failed service, and when to stop trying (see the module)."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    #: a service up this long counts as healthy again: its next restart is quick
    stable_after: float = 30.0
    #: this many failures within ``interval`` seconds give up
    burst: int = 5
    interval: float = 60.0

    def describe(self) -> str:
        return (
            f"restart after {self.first_delay:g} s, doubling to {self.max_delay:g} s;"
            f" give up at {self.burst} failures within {self.interval:g} s"
        )


class RestartBudget:
    """One service's failures: the delay before its next restart, or None once it has
    failed too often.  Pure bookkeeping over the times it is given, for tests."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.delay = policy.first_delay
        self.failures: deque[float] = deque()

    def failed(self, now: float, uptime: float) -> float | None:
        """Record a failure at ``now`` of a run that lasted ``uptime`` seconds."""
        policy = self.policy
        if uptime >= policy.stable_after:
            self.delay = policy.first_delay
        self.failures.append(now)
        while self.failures and self.failures[0] <= now - policy.interval:
            self.failures.popleft()
        if len(self.failures) >= policy.burst:
            return None
        delay = self.delay
        self.delay = min(self.delay * 2, policy.max_delay)
        return delay


@dataclass(eq=False)
class Service:
    """One supervised process: how to start it, how to know it serves, how to stop it."""

    name: str
    #: starts the process and returns at once
    launch: Callable[[], subprocess.Popen[bytes]]
    log_path: Path
    #: a line it logs once it serves (looked for in what it logged since its start) ...
    ready_text: str | None = None
    #: ... or a check that passes once it serves (a real connection)
    ready_check: Callable[[], bool] | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0
    ready_timeout: float = 60.0

    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: "stopped", "starting" (launched, not yet serving), "running", "waiting" (to restart)
    state: str = "stopped"
    launched_at: float = 0.0
    restart_at: float = 0.0
    log_offset: int = 0
    #: the process group of the run that failed, until it is empty
    leftover_group: int | None = None
    budget: RestartBudget | None = field(default=None, repr=False)

    def ready(self) -> bool:
        if self.ready_text is not None:
            return self.ready_text in self.log_since_launch()
        return self.ready_check() if self.ready_check is not None else True

    def log_since_launch(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def ref(self) -> ProcessRef | None:
        return None if self.proc is None else ProcessRef.of(self.proc.pid)


class Supervision:
    """The services of one ``smartby up``, in start order."""

    def __init__(
        self,
        say: Callable[[str], None],
        policy: RestartPolicy | None = None,
        on_launch: Callable[[Service], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.say = say
        self.policy = policy or RestartPolicy()
        self.on_launch = on_launch
        self.clock = clock
        self.services: list[Service] = []

    def add(self, service: Service) -> Service:
        service.budget = RestartBudget(self.policy)
        self.services.append(service)
        return service

    def launch(self, service: Service) -> None:
        try:
            service.log_offset = service.log_path.stat().st_size
        except OSError:
            service.log_offset = 0
        service.launched_at = self.clock()
        service.proc = service.launch()
        service.state = "starting"
        if self.on_launch is not None:
            self.on_launch(service)

    def wait_ready(self, service: Service, cancelled: Callable[[], bool]) -> None:
        """Block until a just-launched service serves (the first start: a service that
        cannot start then is a setup problem, reported in one error, not retried)."""
        proc = service.proc
        assert proc is not None
        deadline = self.clock() + service.ready_timeout
        while not service.ready():
            if proc.poll() is not None:
                raise StackError(
                    f"{service.name} exited while starting ({exit_description(proc.returncode)});"
                    f" last lines of {service.log_path}:\n{tail(service.log_path, 5)}"
                )
            if cancelled():
                return
            if self.clock() > deadline:
                raise StackError(
                    f"{service.name} not ready after {service.ready_timeout:.0f} s;"
                    f" last lines of {service.log_path}:\n{tail(service.log_path, 5)}"
                )
            time.sleep(0.05)
        service.state = "running"

    def start(self, service: Service, cancelled: Callable[[], bool]) -> None:
        self.launch(service)
        self.wait_ready(service, cancelled)

    # ------------------------------------------------------------------ the loop

    def tick(self) -> Service | None:
        """One pass over every service; the service given up on, if any."""
        for service in self.services:
            if service.state in ("starting", "running"):
                assert service.proc is not None
                code = service.proc.poll()
                if code is not None:
                    alive = self._failed(service, exit_description(code))
                elif service.state == "starting":
                    alive = self._check_start(service)
                else:
                    alive = True
            elif service.state == "waiting" and self.clock() >= service.restart_at:
                alive = self._restart(service)
            else:
                alive = True
            if not alive:
                return service
        return None

    def _check_start(self, service: Service) -> bool:
        assert service.proc is not None
        if service.ready():
            service.state = "running"
            self.say(f"{service.name} is back (pid {service.proc.pid})")
        elif self.clock() - service.launched_at > service.ready_timeout:
            stop_process(service.proc, signal.SIGKILL, timeout=10)
            return self._failed(service, f"not serving after {service.ready_timeout:.0f} s")
        return True

    def _failed(self, service: Service, what: str) -> bool:
        """Log the failure and schedule the restart; False when the service is given up."""
        now = self.clock()
        uptime = now - service.launched_at
        assert service.proc is not None
        assert service.budget is not None
        service.leftover_group = service.proc.pid  # a session of its own: pgid == pid
        delay = service.budget.failed(now, uptime)
        log_tail = "\n".join(f"  | {line}" for line in tail(service.log_path, 5).splitlines())
        if delay is None:
            policy = self.policy
            self.say(
                f"{service.name} failed ({what}) after {uptime:.1f} s: {policy.burst} failures"
                f" within {policy.interval:g} s, giving up and stopping smartby."
                f" Last lines of {service.log_path}:\n{log_tail}"
            )
            service.state = "stopped"
            return False
        self.say(
            f"{service.name} failed ({what}) after {uptime:.1f} s; restarting it in"
            f" {delay:g} s. Last lines of {service.log_path}:\n{log_tail}"
        )
        service.state = "waiting"
        service.restart_at = now + delay
        return True

    def _restart(self, service: Service) -> bool:
        """Start a failed service again once what it left behind is gone."""
        group = service.leftover_group
        if group is not None:
            if group_members(group):
                if self.clock() - service.restart_at > LEFTOVER_GRACE_S:
                    kill_group(group)
                return True  # next tick
            service.leftover_group = None
        try:
            self.launch(service)
        except (OSError, StackError) as exc:
            service.launched_at = self.clock()
            service.state = "starting"
            return self._failed_to_launch(service, str(exc))
        assert service.proc is not None
        self.say(f"restarted {service.name} (pid {service.proc.pid})")
        return True

    def _failed_to_launch(self, service: Service, reason: str) -> bool:
        assert service.budget is not None
        now = self.clock()
        delay = service.budget.failed(now, 0.0)
        if delay is None:
            self.say(f"{service.name} could not be started ({reason}): giving up, stopping smartby")
            service.state = "stopped"
            return False
        self.say(f"{service.name} could not be started ({reason}); trying again in {delay:g} s")
        service.state = "waiting"
        service.restart_at = now + delay
        return True

    # ------------------------------------------------------------------- stopping

    def stop(self, names: Iterable[str]) -> None:
        """Stop these services, one after the other, each with its own signal."""
        by_name = {s.name: s for s in self.services}
        for name in names:
            service = by_name.get(name)
            if service is None:
                continue
            if service.proc is not None:
                stop_process(service.proc, service.stop_signal, timeout=service.stop_timeout)
            service.state = "stopped"


# ----------------------------------------------------- after a killed supervisor


@dataclass(frozen=True, slots=True)
class Leftover:
    """A process of an earlier ``up`` still alive: how to stop it if it does not go."""

    name: str
    ref: ProcessRef
    stop_signal: int
    stop_timeout: float


def reap_leftovers(
    leftovers: Iterable[Leftover], say: Callable[[str], None], cancelled: Callable[[], bool]
) -> None:
    """Wait for an earlier ``up``'s processes, in stop order, to finish; stop them with
    their own signal if they do not, and kill them past their timeout.

    They were told to stop when their supervisor died (SIGTERM, ``PR_SET_PDEATHSIG``),
    all at once; each finishes on its own (the worker its batch, without acknowledging
    what it did not commit).  Waiting here keeps the next ``up`` from colliding with
    them: a postmaster still running locks its data folder, and a broker still
    listening would push the new one to another port.
    """
    for leftover in leftovers:
        if not leftover.ref.alive():
            continue
        say(
            f"{leftover.name} (pid {leftover.ref.pid}) of an earlier `smartby up` is still"
            " running; stopping it first"
        )
        _stop_ref(leftover.ref, leftover.stop_signal, leftover.stop_timeout, cancelled)
        members = group_members(leftover.ref.pid)
        deadline = time.monotonic() + LEFTOVER_GRACE_S
        while members and time.monotonic() < deadline and not cancelled():
            time.sleep(0.05)
            members = group_members(leftover.ref.pid)
        if members:
            kill_group(leftover.ref.pid)


def _stop_ref(ref: ProcessRef, sig: int, timeout: float, cancelled: Callable[[], bool]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(ref.pid, sig)
    deadline = time.monotonic() + timeout
    while ref.alive() and time.monotonic() < deadline:
        if cancelled():
            return
        time.sleep(0.05)
    if ref.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while ref.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
