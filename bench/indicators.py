"""Indicator job benchmark: memory and time of one busy day at one site (issue 11).

    .venv/bin/python -m bench.indicators                  # 1.5 M readings a day, each kind
    .venv/bin/python -m bench.indicators --readings 300000 --kinds energy
    .venv/bin/python -m bench.indicators --worker         # also inside `smartby ingest`

A private PostgreSQL (TimescaleDB when installed) gets, per device kind, one site whose
devices write ``--readings`` readings in one local day (`bench.common.load_busy_day`:
binary COPY, rollups merged as ingest merges them), each kind on its own day.  Then,
per kind, ``smartby indicators update`` recomputes that day in a subprocess, and its
peak resident set (``ru_maxrss`` of that child alone, `bench.common.measure_process`)
and wall time are printed beside a baseline: the same command with nothing to do
(interpreter, imports, connection).

``--worker`` also runs the job where production runs it: a ``smartby ingest`` worker
with ``SMARTBY_INDICATORS_INTERVAL_S=1``, whose VmHWM is read from /proc before the
days are queued (idle) and after its indicator thread has done them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from bench.common import load_busy_day, measure_process, say, scratch_database, wait_until
from db.migrate import migrate
from stack.mosquitto import MosquittoBroker
from stack.ports import free_port

KINDS = ("air_quality", "energy", "traffic")
BUDGET_RSS_MB = 300.0
#: the first busy day (a Wednesday in winter: 24 hours); each kind takes the next
FIRST_DAY = datetime(2026, 1, 14, tzinfo=ZoneInfo("Europe/Oslo"))


@dataclass
class Run:
    what: str
    readings: int
    peak_rss_mb: float
    seconds: float


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env.update({"SMARTBY_DATABASE_URL": url, **extra})
    return env


def run_update(url: str, what: str, readings: int) -> Run:
    """``smartby indicators update`` in a child, with its own peak RSS."""
    done = measure_process([sys.executable, "-m", "smartby", "indicators", "update"], _env(url))
    if done.returncode != 0:
        raise RuntimeError(f"indicators update failed ({done.returncode}):\n{done.stderr[-2000:]}")
    if readings and "recomputed the indicators of 1 day(s)" not in done.stdout:
        raise RuntimeError(f"expected one day recomputed, got: {done.stdout!r}")
    return Run(what, readings, done.peak_rss_mb, done.seconds)


def _vmhwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_worker(url: str, broker: MosquittoBroker, days: list[datetime], readings: int) -> list[Run]:
    """A ``smartby ingest`` worker doing the queued days in its indicator thread."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM indicator_days_pending")
    env = _env(
        url,
        SMARTBY_MQTT_PORT=str(broker.port),
        SMARTBY_INGEST_METRICS_PORT=str(free_port()),
        SMARTBY_INDICATORS_INTERVAL_S="1",
    )
    log = Path(tempfile.mkstemp(prefix="bench-indicators-worker-", suffix=".log")[1])
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartby", "ingest", "--client-id", "bench-indicators"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: "consuming from" in log.read_text(), 60, "the worker to start")
            time.sleep(3)  # a few idle indicator passes (nothing queued)
            idle = _vmhwm_mb(proc.pid)
            started = time.perf_counter()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO indicator_days_pending (day) SELECT unnest(%s::timestamptz[])",
                    (days,),
                )

                def done() -> bool:
                    row = conn.execute("SELECT count(*) FROM indicator_days_pending").fetchone()
                    return row is not None and row[0] == 0 and _idle_indicators(conn)

                wait_until(done, 1800, "the worker's indicator thread")
            seconds = time.perf_counter() - started
            busy = _vmhwm_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    log.unlink()
    return [
        Run("worker, idle", 0, idle, float("nan")),
        Run(f"worker, {len(days)} busy days", readings, busy, seconds),
    ]


def _idle_indicators(conn: psycopg.Connection) -> bool:
    """No indicator transaction is still running (the queue row goes at its start)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'smartby-indicators'"
        " AND state <> 'idle'"
    ).fetchone()
    return row is not None and row[0] == 0


def table(runs: list[Run]) -> str:
    lines = [
        f"{'run':42} {'readings/day':>13} {'peak RSS MB':>12} {'time s':>8}",
        "-" * 78,
    ]
    for r in runs:
        lines.append(f"{r.what:42} {r.readings:>13,} {r.peak_rss_mb:>12.0f} {r.seconds:>8.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_500_000, help="per kind and day")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--worker", action="store_true", help="also inside an ingest worker")
    args = parser.parse_args()

    runs: list[Run] = []
    with scratch_database("indicators") as (root, url):
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        runs.append(run_update(url, "baseline: nothing to do", 0))
        days: list[datetime] = []
        total = 0
        for i, kind in enumerate(args.kinds):
            day = FIRST_DAY + timedelta(days=i)
            days.append(day)
            started = time.perf_counter()
            written = load_busy_day(url, kind, day, args.readings)
            total += written
            say(
                f"  {kind}: {written:,} readings on {day.date()} in"
                f" {time.perf_counter() - started:.0f} s; indicators…"
            )
            with psycopg.connect(url, autocommit=True) as conn:
                # only this day: the loads queued it, and nothing else is waiting
                conn.execute("DELETE FROM indicator_days_pending WHERE day <> %s", (day,))
                conn.execute("VACUUM ANALYZE readings")
            runs.append(run_update(url, f"smartby indicators update: {kind}", written))
            say(f"  {runs[-1]}")
        if args.worker:
            broker = MosquittoBroker(root / "mq", port=free_port())
            broker.start()
            try:
                runs += run_worker(url, broker, days, total)
            finally:
                broker.stop()
    print(table(runs))
    worst = max(r.peak_rss_mb for r in runs)
    print(
        f"\npeak RSS {worst:.0f} MB against a budget of {BUDGET_RSS_MB:.0f} MB"
        f" ({'within' if worst <= BUDGET_RSS_MB else 'OVER'})"
    )


if __name__ == "__main__":
    main()
