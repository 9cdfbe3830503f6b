"""Scale benchmark: 1, 2 and 3 ingest workers on one shared subscription, and what each
part of the pipeline costs per reading — the measured base of the scale model in
bench/README.md.

    .venv/bin/python -m bench.scale            # full run (a few minutes)
    .venv/bin/python -m bench.scale --quick    # smaller counts, same table

One process tree on this machine, as `bench.ingest`: a private durable PostgreSQL
(TimescaleDB when installed), one Mosquitto, N `smartby ingest` workers started with
``SMARTBY_INGEST_SUBSCRIPTION=shared`` (MQTT 5 §4.8.2: the broker hands each message to
one member of ``$share/…``), and two lean QoS 1 publisher processes.  For each N and each
stream (single-reading JSON messages; 10-record SenML packs) it prints:

- the rate, first publish → last commit (PostgreSQL's commit timestamps), after
  checking that every reading is stored, once;
- how the readings split between the workers (the broker's round robin);
- the CPU time each part spent per 100,000 readings — the workers together, PostgreSQL
  (every backend), Mosquitto — measured from /proc around the run.  These, not the
  rates, carry the projection: on 2 cores the publishers, the broker, PostgreSQL and the
  workers share the same two cores, so the rate is bounded by the machine, while the
  CPU per reading is what a bigger or separate machine would need.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from bench.common import (
    Stack,
    Worker,
    cpu_snapshot,
    last_commit,
    pack_messages,
    process_cpu,
    publish_parallel,
    say,
    single_messages,
    start_stack,
    stop_stack,
    wait_until,
)

WRITTEN = "smartby_ingest_readings_written_total"


@dataclass
class Run:
    workers: int
    stream: str
    messages: int
    readings: int
    seconds: float
    #: readings each worker stored
    split: list[float]
    #: CPU seconds of the workers together, PostgreSQL, Mosquitto
    cpu: tuple[float, float, float]
    #: deadlocks PostgreSQL detected during the run (each costs deadlock_timeout, 1 s)
    deadlocks: int

    def per_100k(self, part: int) -> float:
        return self.cpu[part] / self.readings * 100_000


def run(
    stack: Stack,
    n_workers: int,
    stream: str,
    make: Callable[[str, int, float], list[tuple[str, bytes]]],
    n_messages: int,
    per_message: int,
    publishers: int,
) -> Run:
    """One measured run: fresh prefix and empty readings, N workers sharing it."""
    with psycopg.connect(stack.url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings")
        deadlocks_before = deadlocks(conn)
    prefix = f"s{uuid.uuid4().hex[:6]}"
    messages = make(prefix, n_messages, time.time() - 3600)
    readings = n_messages * per_message
    workers = [
        Worker(stack, prefix, f"bench-scale-{n_workers}-{stream}-{i}") for i in range(n_workers)
    ]
    try:
        before = [cpu_snapshot(stack, w) for w in workers]
        say(f"{n_workers} worker(s), {stream}: publishing {n_messages:,} messages")
        first = publish_parallel(stack.broker.port, messages, publishers)
        wait_until(
            lambda: sum(w.metric(WRITTEN) for w in workers) >= readings,
            600,
            f"{readings:,} readings committed by {n_workers} worker(s)",
        )
        after = [cpu_snapshot(stack, w) for w in workers]
        split = [w.metric(WRITTEN) for w in workers]
        with psycopg.connect(stack.url) as conn:
            last = last_commit(conn, "d%")
            run_deadlocks = deadlocks(conn) - deadlocks_before
            stored = conn.execute("SELECT count(*) FROM readings").fetchone()
        if stored != (readings,):
            raise RuntimeError(f"{readings:,} readings published, {stored} stored")
    finally:
        for w in workers:
            w.stop()
    worker_cpu = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    # PostgreSQL and Mosquitto are counted once, from the first worker's snapshots
    pg_cpu = after[0][1] - before[0][1]
    broker_cpu = after[0][2] - before[0][2]
    seconds = last - first
    say(f"{n_workers} worker(s), {stream}: {seconds:.2f} s")
    return Run(
        n_workers,
        stream,
        n_messages,
        readings,
        seconds,
        split,
        (worker_cpu, pg_cpu, broker_cpu),
        run_deadlocks,
    )


def deadlocks(conn: psycopg.Connection) -> int:  # type: ignore[type-arg]
    row = conn.execute(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else 0


def table(runs: list[Run]) -> str:
    head = (
        f"{'workers':>7} {'stream':<8} {'msg/s':>9} {'readings/s':>11} {'x 1 worker':>10}"
        f" {'split of readings':<22} {'CPU s per 100k readings: workers':>33}"
        f" {'PostgreSQL':>10} {'Mosquitto':>9} {'deadlocks':>9}"
    )
    lines = [head, "-" * len(head)]
    base: dict[str, float] = {}
    for r in runs:
        rate = r.readings / r.seconds
        base.setdefault(r.stream, rate)
        total = sum(r.split) or 1.0
        split = "/".join(f"{part / total:.0%}" for part in r.split)
        lines.append(
            f"{r.workers:>7} {r.stream:<8} {r.messages / r.seconds:>9,.0f} {rate:>11,.0f}"
            f" {rate / base[r.stream]:>9.2f}x {split:<22} {r.per_100k(0):>33.2f}"
            f" {r.per_100k(1):>10.2f} {r.per_100k(2):>9.2f} {r.deadlocks:>9}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--max-workers", type=int, default=3)
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    n_single = int(150_000 * scale)
    n_packs = int(25_000 * scale)
    # every worker of the run joins the one shared subscription
    os.environ["SMARTBY_INGEST_SUBSCRIPTION"] = "shared"
    stack = start_stack()
    runs: list[Run] = []
    try:
        for n in range(1, args.max_workers + 1):
            runs.append(run(stack, n, "single", single_messages, n_single, 1, args.publishers))
            runs.append(run(stack, n, "packs", pack_messages, n_packs, 10, args.publishers))
        assert stack.broker.proc is not None
        broker_total = process_cpu(stack.broker.proc.pid)
    finally:
        stop_stack(stack)
    runs.sort(key=lambda r: (r.stream != "single", r.workers))
    print(table(runs))
    print(
        f"\nmachine: {os.cpu_count()} cores shared by the publishers ({args.publishers}"
        " processes), Mosquitto, PostgreSQL (durable: fsync on) and the workers;"
        f" single: {n_single:,} one-reading JSON messages, packs: {n_packs:,} 10-record"
        f" SenML packs per run; Mosquitto's CPU over the whole run {broker_total:.1f} s"
    )


if __name__ == "__main__":
    main()
