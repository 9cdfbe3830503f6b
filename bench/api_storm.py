"""API storm benchmark: is /v1/latest still fast while exports storm the API?

    .venv/bin/python -m bench.api_storm               # 30 days of Narvik, 40 s storm
    .venv/bin/python -m bench.api_storm --quick       # 3 days, 10 s storm (smoke test)
    .venv/bin/python -m bench.api_storm --fetch-only  # the export fetch strategies only

Issue 11's acceptance figure: with 8 slow readers (clients that open an export and
read a few bytes a second, or stop reading) and 64 clients exporting 30 days, a
concurrent ``/v1/latest`` gets 200 with p99 <= 250 ms.

Everything runs on this machine: a private PostgreSQL (TimescaleDB when installed)
loaded with ``--days`` of simulated Narvik history by `bench.api.load_month` (ingest's
own pipeline), and the API as deployed: ``smartby api`` in a subprocess (one uvicorn
worker, the production defaults for limits, pools and timeouts).  Then:

1. baseline: the /v1/latest probes alone for ``--baseline`` seconds;
2. storm: the same probes, while
   - 64 exporters, each from its own loopback address (127.0.1.n, so each is its own
     client to the per-client caps and rate limits), loop on
     ``GET /v1/export/readings?metric=pm25&from=<30 days ago>&to=<now>`` (raw CSV, every
     station) reading each answer in full; a refused one (429, 503) tries again after
     1 s, ignoring the 10 s its Retry-After asks (a client that does not play fair);
   - 8 slow readers (127.0.2.n) open the same export: 4 read 8 bytes a second, 4 read
     nothing; each opens a new one as soon as the server cuts it off;
   - a sampler reads pg_stat_activity every 0.2 s: the export pool's connections
     that are running a query or hold a transaction, and since when.

The probes send an API key (its higher rate limit: they are the well-behaved client
being measured) at a fixed pace, one pair of connections asking with and one without
``Cache-Control: no-cache`` (which skips the API's 5-second response cache, so every
such request runs its query on the main pool).  The table has p50/p95/p99/max of each,
baseline beside storm, and what the exporters and slow readers got.

`run_storm` is also what ``tests/api/test_storm.py`` runs, to assert the behaviour
(every probe 200, no export connection pinned by a slow reader), not the timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import ApiProcess, fetch, request

EXPORTERS = 64
SLOW_READERS = 8
BUDGET_P99_MS = 250.0
PROBE_KEY_CACHED = "storm-probe-cached-0123456789"
PROBE_KEY_NO_CACHE = "storm-probe-nocache-0123456789"
#: the application_name of the export pool (api.db.EXPORT_APPLICATION)
EXPORT_APPLICATION = "smartby-api-export"


def say(text: str, end: str = "\n") -> None:
    print(text, file=sys.stderr, end=end, flush=True)


# ------------------------------------------------------------------------ the API


# -------------------------------------------------------------------- the clients


async def connect(port: int, source: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking TCP connection to the API from ``source`` (any 127/8 address is
    this machine's, so each is a distinct client to the server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    sock.bind((source, 0))
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


class KeepAlive:
    """One HTTP/1.1 keep-alive connection for the probes (their answers carry
    Content-Length: /v1/latest is not streamed)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.port = port
        self.source = source
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str]) -> int:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, local_addr=(self.source, 0)
            )
        assert self.reader is not None
        self.writer.write(request(path, headers))
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            if name.lower() == "connection" and value.strip() == "close":
                self.writer = None
        await self.reader.readexactly(length)
        return int(lines[0].split(" ", 2)[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


@dataclass
class Probe:
    """Latencies (s) and statuses of one probe's requests."""

    name: str
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def probe(
    port: int, path: str, headers: dict[str, str], pace_s: float, until: float, into: Probe
) -> None:
    """Requests at a fixed pace (the next one as soon as a slow one returns)."""
    connection = KeepAlive(port)
    try:
        next_at = time.perf_counter()
        while (now := time.perf_counter()) < until:
            if now < next_at:
                await asyncio.sleep(next_at - now)
            next_at += pace_s
            t0 = time.perf_counter()
            try:
                status = await connection.get(path, headers)
            except (OSError, asyncio.IncompleteReadError):
                status = 0  # connection failed: counted, never hidden
                connection.writer = None
            into.latencies.append(time.perf_counter() - t0)
            into.statuses[status] += 1
    finally:
        await connection.close()


async def exporter(port: int, source: str, path: str, until: float, into: Counter[str]) -> None:
    """Export, read it all, and again; refused: try again after 1 s."""
    while time.perf_counter() < until:
        try:
            status, _, body = await fetch(port, path, source=source)
        except (OSError, asyncio.IncompleteReadError):
            into["connection failed"] += 1
            await asyncio.sleep(1)
            continue
        into[str(status)] += 1
        if status == 200:
            into["bytes"] += len(body)
        else:
            await asyncio.sleep(1)


async def slow_reader(
    port: int, source: str, path: str, trickle: bool, stop: asyncio.Event, into: Counter[str]
) -> None:
    """Open the export with a small receive buffer, read its status line, then 8 bytes
    a second (``trickle``) or nothing at all; when the server cuts the connection, open
    another (a refused one: after 1 s).  The reader learns of a cut from the socket's
    TCP state (what it has received it could still read, 8 bytes a second, long after)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        sock = await connect(port, source, rcvbuf=4096)
        try:
            await loop.sock_sendall(sock, request(path))
            head = b""
            while len(head) < 12:  # "HTTP/1.1 200"
                piece = await loop.sock_recv(sock, 12 - len(head))
                if not piece:
                    break
                head += piece
            if not head.startswith(b"HTTP/1.1 200"):
                into["refused"] += 1
                await asyncio.sleep(1)
                continue
            into["streaming"] += 1
            while not stop.is_set():
                await asyncio.sleep(1)
                if _peer_gone(sock):
                    into["cut off"] += 1
                    break
                if trickle:
                    with contextlib.suppress(TimeoutError, OSError):
                        await asyncio.wait_for(loop.sock_recv(sock, 8), 1)
        finally:
            sock.close()


def _peer_gone(sock: socket.socket) -> bool:
    """Whether the server has closed or reset the connection (Linux TCP_INFO state
    other than ESTABLISHED), without reading from it."""
    tcp_established = 1
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    return bool(state != tcp_established)


@dataclass
class Activity:
    """What the export pool's connections were doing, sampled from pg_stat_activity."""

    samples: int = 0
    connections: int = 0  # most export connections seen at once
    busy: int = 0  # most at once running a query or inside a transaction
    longest_busy_s: float = 0.0  # the longest any was seen busy
    idle_in_transaction: int = 0  # samples with one idle inside a transaction


_ACTIVITY = """
SELECT count(*),
       count(*) FILTER (WHERE state <> 'idle'),
       coalesce(max(extract(epoch FROM now() - state_change))
                FILTER (WHERE state <> 'idle'), 0),
       count(*) FILTER (WHERE state LIKE 'idle in transaction%%')
FROM pg_stat_activity WHERE application_name = %s
"""


async def sample_activity(database_url: str, done: Callable[[], bool], into: Activity) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while not done():
            cursor = await conn.execute(_ACTIVITY, (EXPORT_APPLICATION,))
            row = await cursor.fetchone()
            assert row is not None
            into.samples += 1
            into.connections = max(into.connections, int(row[0]))
            into.busy = max(into.busy, int(row[1]))
            into.longest_busy_s = max(into.longest_busy_s, float(row[2]))
            into.idle_in_transaction += int(row[3] > 0)
            await asyncio.sleep(0.2)


# ------------------------------------------------------------------------ a storm


@dataclass
class StormReport:
    baseline: list[Probe]
    storm: list[Probe]
    exports: Counter[str]
    slow_readers: Counter[str]
    activity: Activity
    stalled_activity: Activity  # while only the slow readers were connected


def probes_of(
    port: int, seconds: float, pace_s: float
) -> tuple[list[Probe], list[Callable[[], Awaitable[None]]]]:
    """Two probes of /v1/latest (as served, and with its cache skipped), each on two
    keep-alive connections, and the coroutines that run them for ``seconds``."""
    cached = Probe("/v1/latest")
    uncached = Probe("/v1/latest, no-cache")
    until = time.perf_counter() + seconds
    plain = {"X-API-Key": PROBE_KEY_CACHED}
    no_cache = {"X-API-Key": PROBE_KEY_NO_CACHE, "Cache-Control": "no-cache"}
    tasks: list[Callable[[], Awaitable[None]]] = [
        lambda: probe(port, "/v1/latest", plain, pace_s, until, cached),
        lambda: probe(port, "/v1/latest", plain, pace_s, until, cached),
        lambda: probe(port, "/v1/latest", no_cache, pace_s, until, uncached),
        lambda: probe(port, "/v1/latest", no_cache, pace_s, until, uncached),
    ]
    return [cached, uncached], tasks


def export_path(end: datetime, days: float) -> str:
    start = end - timedelta(days=days)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return f"/v1/export/readings?metric=pm25&from={start:{iso}}&to={end:{iso}}"


async def storm(
    port: int,
    database_url: str,
    export: str,
    *,
    baseline_s: float,
    storm_s: float,
    stalled_s: float,
    until_cut_s: float = 0,
    exporters: int = EXPORTERS,
    slow_readers: int = SLOW_READERS,
    pace_s: float = 0.05,
) -> StormReport:
    """The three phases: probes alone; slow readers alone (for ``stalled_s``, and up
    to ``until_cut_s`` more until the server has cut each of them once: they stall,
    the pool is watched); probes, slow readers and exporters together."""
    baseline, tasks = probes_of(port, baseline_s, pace_s)
    await asyncio.gather(*(task() for task in tasks))

    readers: Counter[str] = Counter()
    stop_readers = asyncio.Event()
    reader_tasks = [
        asyncio.create_task(
            slow_reader(port, f"127.0.2.{n + 1}", export, n % 2 == 0, stop_readers, readers)
        )
        for n in range(slow_readers)
    ]
    stalled = Activity()
    least = time.perf_counter() + stalled_s
    most = least + until_cut_s

    def stalled_done() -> bool:
        now = time.perf_counter()
        return now >= most or (
            now >= least and readers["cut off"] >= slow_readers * bool(until_cut_s)
        )

    await sample_activity(database_url, stalled_done, stalled)

    exports: Counter[str] = Counter()
    activity = Activity()
    storm_probes, tasks = probes_of(port, storm_s, pace_s)
    until = time.perf_counter() + storm_s
    try:
        await asyncio.gather(
            *(task() for task in tasks),
            *(exporter(port, f"127.0.1.{n + 1}", export, until, exports) for n in range(exporters)),
            sample_activity(database_url, lambda: time.perf_counter() >= until, activity),
        )
    finally:
        stop_readers.set()
        await asyncio.gather(*reader_tasks)
    return StormReport(baseline, storm_probes, exports, readers, activity, stalled)


# ------------------------------------------------------------------ fetch strategies


async def compare_fetching(database_url: str, days: float, rows_per_page: int = 10_000) -> str:
    """The ways an export could fetch raw PM2.5 of every station over ``days``: one
    named cursor in one transaction; keyset pages; keyset pages in a time window
    (what `api.export_fetch` does).  Rows/s and how long a connection is held."""
    from psycopg_pool import AsyncConnectionPool

    from api.export_datasets import Query, raw_readings_query
    from api.export_fetch import RawReadingsStep
    from api.export_formats import Row

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT id FROM series WHERE metric = 'pm25' ORDER BY id")
        ids = [row[0] for row in await cursor.fetchall()]
        cursor = await conn.execute("SELECT max(time) FROM readings")
        last = (await cursor.fetchone())[0]  # type: ignore[index]
    end = last + timedelta(seconds=1)
    start = end - timedelta(days=days)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        database_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    )
    await pool.open()
    lines = [
        f"{'way of fetching (raw pm25, ' + f'{days:g} days)':46} {'rows':>9} {'rows/s':>11}"
        f" {'pages':>6} {'held per page':>14}"
    ]
    try:
        started = time.perf_counter()
        rows = 0
        async with pool.connection() as named_conn, named_conn.transaction():
            query, params = raw_readings_query(ids, start, end)
            async with named_conn.cursor(name="bench_export") as named:
                await named.execute(query, params)
                while batch := await named.fetchmany(rows_per_page):
                    rows += len(batch)
        took = time.perf_counter() - started
        lines.append(
            f"{'one named cursor, one transaction':46} {rows:9,} {rows / took:11,.0f}"
            f" {'-':>6} {'whole stream':>14}"
        )

        held: list[float] = []

        async def run(query: Query) -> list[Row]:
            t0 = time.perf_counter()
            async with pool.connection() as page_conn:
                cursor = await page_conn.execute(query[0], query[1], binary=True)
                result: list[Row] = await cursor.fetchall()
            held.append(time.perf_counter() - t0)
            return result

        started = time.perf_counter()
        rows = 0
        after: tuple[datetime, int] | None = None
        while True:
            page = await run(raw_readings_query(ids, start, end, after=after, limit=rows_per_page))
            rows += len(page)
            if len(page) < rows_per_page:
                break
            after = (page[-1][0], page[-1][1])
        took = time.perf_counter() - started
        lines.append(
            f"{'keyset pages (time, series) > last LIMIT n':46} {rows:9,}"
            f" {rows / took:11,.0f} {len(held):6} {sum(held) / len(held) * 1000:11.1f} ms"
        )

        held.clear()
        started = time.perf_counter()
        rows = 0
        async for page in RawReadingsStep(ids, start, end).pages(run):
            rows += len(page)
        took = time.perf_counter() - started
        lines.append(
            f"{'keyset pages in a time window (the API)':46} {rows:9,}"
            f" {rows / took:11,.0f} {len(held):6} {sum(held) / len(held) * 1000:11.1f} ms"
        )
    finally:
        await pool.close()
    return "\n".join(lines)


# ---------------------------------------------------------------------- the report


def table(report: StormReport, exporters: int, slow_readers: int) -> str:
    lines = [
        f"{'phase':10} {'request':22} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
        f" {'max ms':>8}  statuses",
        "-" * 100,
    ]
    for phase, probes in (("baseline", report.baseline), ("storm", report.storm)):
        for p in probes:
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(p.statuses.items()))
            lines.append(
                f"{phase:10} {p.name:22} {len(p.latencies):6} {p.percentile(0.5):8.1f}"
                f" {p.percentile(0.95):8.1f} {p.percentile(0.99):8.1f}"
                f" {max(p.latencies, default=0) * 1000:8.1f}  {statuses}"
            )
    exports = report.exports
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(exports.items()) if k != "bytes")
    lines.append(
        f"storm      {exporters} exporters: {shown}; {exports['bytes'] / 1e6:,.0f} MB delivered"
    )
    readers = report.slow_readers
    lines.append(
        f"storm      {slow_readers} slow readers: {readers['streaming']} exports streaming"
        f" ({readers['refused']} more refused), {readers['cut off']} cut off by the server"
    )
    for name, activity in (("stalled", report.stalled_activity), ("storm", report.activity)):
        lines.append(
            f"{name:10} export pool ({activity.samples} samples): at most"
            f" {activity.connections} connections, {activity.busy} busy at once, longest busy"
            f" {activity.longest_busy_s * 1000:.0f} ms, idle in transaction in"
            f" {activity.idle_in_transaction} samples"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--days", type=float, default=30, help="days of history to load")
    parser.add_argument("--storm", type=float, default=40, help="seconds of storm")
    parser.add_argument("--baseline", type=float, default=10, help="seconds of baseline")
    parser.add_argument("--quick", action="store_true", help="3 days, 10 s storm")
    parser.add_argument("--fetch-only", action="store_true", help="only the fetch strategies")
    args = parser.parse_args()
    days = 3.0 if args.quick else args.days
    storm_s = 10.0 if args.quick else args.storm
    baseline_s = 5.0 if args.quick else args.baseline

    from bench.common import load_month, scratch_database

    with scratch_database("storm") as (root, url):
        _, end = load_month(url, days)
        fetching = asyncio.run(compare_fetching(url, days))
        if args.fetch_only:
            print(fetching)
            return
        keys = f"probe-cached:{PROBE_KEY_CACHED},probe-nocache:{PROBE_KEY_NO_CACHE}"
        server = ApiProcess(url, root / "api.log", api_keys=keys)
        try:
            export = export_path(datetime.fromtimestamp(end, UTC), days)
            say(f"API: smartby api, one worker, port {server.port}; export {export}")
            say(f"  baseline {baseline_s:g} s, slow readers alone 5 s, storm {storm_s:g} s …")
            report = asyncio.run(
                storm(server.port, url, export, baseline_s=baseline_s, storm_s=storm_s, stalled_s=5)
            )
        finally:
            server.stop()
        log_text = (root / "api.log").read_text(errors="replace")
    print(table(report, EXPORTERS, SLOW_READERS))
    p99 = max(p.percentile(0.99) for p in report.storm)
    all_200 = all(set(p.statuses) == {200} for p in report.storm)
    print(
        f"\nmachine: {os.cpu_count()} cores; {days:g} days of simulated Narvik; each probe"
        f" 2 keep-alive connections at one request per 50 ms each; API: one uvicorn worker,"
        f" default settings; server log: {log_text.count('Traceback')} tracebacks,"
        f" {log_text.count('cut off')} cut-off lines"
    )
    print(
        f"acceptance (every /v1/latest 200, p99 <= {BUDGET_P99_MS:g} ms during the storm): "
        f"{'met' if all_200 and p99 <= BUDGET_P99_MS else 'MISSED'} (p99 {p99:.0f} ms)"
    )
    print()
    print(fetching)


if __name__ == "__main__":
    main()
