"""The restart policy (`smartby.supervise`): backoff, reset, start limit; a failed
process restarted and logged; a crash loop given up; leftovers of a killed
supervisor stopped.  Real processes, small delays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smartby.supervise import (
    Leftover,
    RestartBudget,
    RestartPolicy,
    Service,
    Supervision,
    reap_leftovers,
)
from stack.process import ProcessRef, group_members, spawn
from tests.fixtures.ingest import wait_for


def test_the_delay_doubles_to_its_cap_and_starts_over_after_a_stable_run() -> None:
    budget = RestartBudget(RestartPolicy(first_delay=0.5, max_delay=4, stable_after=30, burst=99))
    delays = [budget.failed(now=100.0 * n, uptime=1.0) for n in range(6)]
    assert delays == [0.5, 1, 2, 4, 4, 4]
    assert budget.failed(now=700.0, uptime=30.0) == 0.5  # it had stayed up: quick again
    assert budget.failed(now=800.0, uptime=1.0) == 1


def test_the_fifth_failure_within_the_interval_gives_up() -> None:
    budget = RestartBudget(RestartPolicy(burst=5, interval=60))
    assert [budget.failed(now=t, uptime=1.0) is not None for t in (0, 10, 20, 30)] == [True] * 4
    assert budget.failed(now=40, uptime=1.0) is None


def test_failures_spread_wider_than_the_interval_never_give_up() -> None:
    budget = RestartBudget(RestartPolicy(burst=5, interval=60))
    assert all(budget.failed(now=20.0 * n, uptime=19.0) is not None for n in range(20))


FAST = RestartPolicy(first_delay=0.05, max_delay=0.2, stable_after=5, burst=3, interval=30)


def python_service(tmp_path: Path, name: str, code: str) -> Service:
    log = tmp_path / f"{name}.log"
    return Service(
        name,
        lambda: spawn([sys.executable, "-c", code], log_path=log),
        log,
        ready_text="serving",
        stop_timeout=5,
    )


def supervise_until(supervision: Supervision, done: object, timeout: float = 20) -> Service | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        given_up = supervision.tick()
        if given_up is not None or (callable(done) and done()):
            return given_up
        time.sleep(0.02)
    raise AssertionError("supervision never got there")


def test_a_killed_service_is_restarted_and_the_restart_is_logged(tmp_path: Path) -> None:
    said: list[str] = []
    supervision = Supervision(said.append, FAST)
    service = supervision.add(
        python_service(
            tmp_path, "worker", "import time; print('serving', flush=True); time.sleep(60)"
        )
    )
    supervision.start(service, cancelled=lambda: False)
    first = service.proc
    assert first is not None
    try:
        os.kill(first.pid, signal.SIGKILL)
        given_up = supervise_until(
            supervision, lambda: service.state == "running" and service.proc is not first
        )
        assert given_up is None
        failure = next(line for line in said if line.startswith("worker failed"))
        assert failure.startswith("worker failed (killed by SIGKILL) after ")
        assert "restarting it in 0.05 s" in failure
        assert "  | serving" in failure  # the log's tail
        assert any(line.startswith("restarted worker (pid ") for line in said)
        assert said[-1] == f"worker is back (pid {service.proc.pid})"  # type: ignore[union-attr]
    finally:
        supervision.stop(["worker"])
    assert service.proc is not None
    assert service.proc.poll() is not None


def test_a_crash_loop_is_given_up_after_the_burst(tmp_path: Path) -> None:
    said: list[str] = []
    supervision = Supervision(said.append, FAST)
    service = supervision.add(
        python_service(tmp_path, "api", "print('serving', flush=True); raise SystemExit(3)")
    )
    supervision.launch(service)
    given_up = supervise_until(supervision, done=None)
    assert given_up is service
    failures = [line for line in said if line.startswith("api failed")]
    assert len(failures) == FAST.burst
    assert all("(exit code 3)" in line for line in failures)
    assert ": 3 failures within 30 s, giving up and stopping smartby." in failures[-1]


def test_a_clean_exit_is_a_failure_too(tmp_path: Path) -> None:
    """A service meant to run until stopped has failed when it stops (a broker stopped
    by hand with SIGTERM exits 0)."""
    said: list[str] = []
    supervision = Supervision(said.append, FAST)
    service = supervision.add(python_service(tmp_path, "broker", "print('serving')"))
    supervision.launch(service)
    supervise_until(supervision, lambda: any("broker failed (exit code 0)" in s for s in said))
    supervision.stop(["broker"])


def test_what_a_dead_service_left_in_its_group_goes_before_it_restarts(tmp_path: Path) -> None:
    """Like PostgreSQL's backends after a kill -9 of the postmaster: the restart waits for
    them (and kills them past a grace time), so the new one does not collide."""
    said: list[str] = []
    supervision = Supervision(said.append, FAST)
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(2)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(c.pid))\n"
        "print('serving', flush=True)\n"
        "time.sleep(60)\n"
    )
    service = supervision.add(python_service(tmp_path, "postmaster", code))
    supervision.start(service, cancelled=lambda: False)
    first = service.proc
    assert first is not None
    try:
        wait_for(pid_file.exists, what="the child's pid")
        orphan = int(pid_file.read_text())
        os.kill(first.pid, signal.SIGKILL)
        supervise_until(
            supervision, lambda: service.state == "starting" and service.proc is not first
        )
        assert ProcessRef.of(orphan) is None, "restarted while its orphan still ran"
    finally:
        supervision.stop(["postmaster"])


def test_leftovers_of_a_killed_supervisor_are_stopped_in_order(tmp_path: Path) -> None:
    """One stops at its signal; one ignores it and is killed after its timeout."""
    obedient = spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "a.log"
    )
    stubborn = spawn(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)",
        ],
        log_path=tmp_path / "b.log",
    )
    wait_for(lambda: "ready" in (tmp_path / "b.log").read_text(), what="the stubborn one")
    refs = [ProcessRef.of(p.pid) for p in (obedient, stubborn)]
    assert refs[0] is not None
    assert refs[1] is not None
    said: list[str] = []
    started = time.monotonic()
    reap_leftovers(
        [
            Leftover("ingest", refs[0], signal.SIGTERM, 5),
            Leftover("Mosquitto", refs[1], signal.SIGTERM, 0.5),
        ],
        said.append,
        cancelled=lambda: False,
    )
    assert time.monotonic() - started < 5
    assert [p.wait(5) for p in (obedient, stubborn)] == [-signal.SIGTERM, -signal.SIGKILL]
    assert said == [
        f"ingest (pid {obedient.pid}) of an earlier `smartby up` is still running;"
        " stopping it first",
        f"Mosquitto (pid {stubborn.pid}) of an earlier `smartby up` is still running;"
        " stopping it first",
    ]
    assert not group_members(stubborn.pid)


def test_a_reused_pid_is_not_taken_for_a_leftover() -> None:
    """The record names a process by pid and start time: another process that got the
    pid later is left alone."""
    me = ProcessRef.of(os.getpid())
    assert me is not None
    impostor = ProcessRef(me.pid, me.start + 1)
    assert not impostor.alive()
    reap_leftovers(
        [Leftover("ingest", impostor, signal.SIGKILL, 1)], pytest.fail, cancelled=lambda: False
    )


def test_group_members_sees_a_session_and_not_its_zombies(tmp_path: Path) -> None:
    proc = spawn([sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "z")
    try:
        assert group_members(proc.pid) == [proc.pid]
    finally:
        proc.kill()
    wait_for(lambda: not group_members(proc.pid), what="the group to empty")
    proc.wait()
    assert isinstance(proc, subprocess.Popen)
