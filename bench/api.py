"""API benchmark: the read budget of DESIGN.md, with the same queries in plain SQL.

    .venv/bin/python -m bench.api              # a month of Narvik, 10 s per scenario
    .venv/bin/python -m bench.api --quick      # two days, 3 s per scenario (smoke test)

Everything runs on this machine: a private PostgreSQL (TimescaleDB when installed)
loaded with `--days` of simulated Narvik history through ingest's own pipeline
(`smartby.load`), indicators computed; the API in a uvicorn subprocess with one
worker; then, per scenario, 32 concurrent clients for `--seconds`:

  a. latest value of all series:      GET /v1/latest
  b. 30 days hourly of one series:    GET /v1/series/{id}/data?bucket=1h&from=…&to=…
  c. 1 day raw of one series:         GET /v1/series/{id}/data?bucket=raw&from=…&to=…
     (a once-a-minute station: 1,440 readings)
  d. 1,000 SensorThings Observations: GET /sta/v1.1/Datastreams({id})/Observations?$top=1000
     (a harvest of one Datastream, oldest first: the first page)

each with the response cache (as served) and without it (``Cache-Control: no-cache``:
every request runs its query), and the same SQL the API runs (its query builders'
rows, with the JSON PostgreSQL writes of them) run directly with 32 concurrent
psycopg connections, in the same run, so the API's own overhead shows as a ratio.
``--url`` measures a database already loaded (``--days`` is then ignored).
The clients are lean HTTP/1.1 keep-alive connections over asyncio streams (an HTTP
library would cost more CPU than the server on two cores).  The per-client
rate limit is lifted for the run; everything else is the production app.

    .venv/bin/python -m bench.api --minutes    # bucket=1m reads instead (issue 17)

measures bucket=1m: 1 day and 7 days of one series and of a site, for Narvik's
once-a-minute stations and for a building whose two meters report every second, each
through the API without its cache, as the API's SQL, and as the SQL of the option
not taken (every minute computed from the readings, even where minute rows exist).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.common import bench_settings, load_month, say, scratch_database
from stack.ports import free_port

CLIENTS = 32
BUDGET_P99_MS = 50.0


def pick_series(url: str) -> tuple[int, str]:
    """The series of scenario (b): PM2.5 of the first air-quality station."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT s.id, s.device_id || '/' || s.metric FROM series s"
            " JOIN devices d ON d.id = s.device_id"
            " WHERE s.metric = 'pm25' ORDER BY d.site_id, s.id LIMIT 1"
        ).fetchone()
    if row is None:
        raise RuntimeError("no pm25 series loaded")
    return int(row[0]), str(row[1])


def read_scenarios(url: str, days: float, span_end: datetime) -> list[tuple[str, str, Any]]:
    """(name, path, the SQL the API runs for it) of scenarios (a) to (d): the query
    builders' rows wrapped as the routes wrap them, for PostgreSQL to write the JSON
    (`api.json_sql`, `api.sensorthings.page_json`)."""
    from psycopg.sql import SQL

    from api import json_sql, queries
    from api.sensorthings import page_json
    from api.sensorthings.compile import entity_query, exclude_failed
    from api.sensorthings.model import OBSERVATION
    from api.sensorthings.odata import parse_options
    from api.sensorthings.routes import resolve

    series_id, series_name = pick_series(url)
    hours = min(days, 30.0)
    span_start = span_end - timedelta(days=hours)
    raw_start = span_end - timedelta(days=1)
    with psycopg.connect(url) as conn:
        n_series = conn.execute("SELECT count(*) FROM series").fetchone()[0]  # type: ignore[index]
    say(f"API: uvicorn, one worker; {n_series} series; series {series_id} = {series_name}")

    def iso(moment: datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    data = f"/v1/series/{series_id}/data"
    latest = json_sql.page_json_query(
        queries.latest_query(), json_sql.LATEST, page_size=None, order=SQL("q.id")
    )
    hourly = json_sql.page_json_query(
        queries.rollup_page_query(
            [series_id], "1h", span_start, span_end, after=None, limit=1001, tz="Europe/Oslo"
        ),
        json_sql.AGGREGATE_POINT,
        page_size=1000,
        keys=(SQL("q.bucket"),),
        order=SQL("q.bucket"),
    )
    raw = json_sql.page_json_query(
        queries.raw_page_query([series_id], raw_start, span_end, after=None, limit=10001),
        json_sql.RAW_POINT,
        page_size=10000,
        keys=(SQL("q.time"), SQL("q.series_id")),
        order=SQL("q.time, q.series_id"),
    )
    # the STA query as the route compiles it (FAIL-flagged Observations left out)
    base = "http://bench/sta/v1.1"
    sta = resolve(f"Datastreams({series_id})/Observations", base)
    exclude_failed(sta.where)
    rows, layout = entity_query(OBSERVATION, parse_options({"$top": "1000"}), sta.where, sta.params)
    return [
        (f"(a) latest of all {n_series} series", "/v1/latest", latest),
        (
            f"(b) {hours:g} days hourly of one series",
            f"{data}?bucket=1h&from={iso(span_start)}&to={iso(span_end)}&limit=1000",
            hourly,
        ),
        (
            "(c) 1 day raw of one series",
            f"{data}?bucket=raw&from={iso(raw_start)}&to={iso(span_end)}&limit=10000",
            raw,
        ),
        (
            "(d) 1,000 STA Observations of a Datastream",
            f"/sta/v1.1/Datastreams({series_id})/Observations?$top=1000",
            page_json.page_query(rows, layout, base, 1000),
        ),
    ]


# ------------------------------------------------------------------------ the API


def serve(url: str, port: int) -> None:
    """The API as deployed (`api.server.serve`: one uvicorn worker on uvloop and
    httptools), run in a subprocess by the bench."""
    from api.server import serve as serve_api

    serve_api(bench_settings(url, port), host="127.0.0.1", port=port)


class ApiServer:
    def __init__(self, url: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.out = open(log, "ab")  # noqa: SIM115 - the child keeps it
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.api", "--serve", url, str(self.port)],
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = asyncio.run(one_request(self.port, "/v1"))
                if status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


# -------------------------------------------------------------- lean HTTP clients


class HttpConnection:
    """One HTTP/1.1 keep-alive connection: GET, read the headers, read
    Content-Length bytes (the API's reads are not chunked)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self, path: str, extra: str = "") -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
            f"{extra}\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value:
                raise RuntimeError("chunked response: the bench client reads Content-Length")
        body = await self.reader.readexactly(length)
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def one_request(port: int, path: str) -> tuple[int, bytes]:
    connection = HttpConnection(port)
    await connection.open()
    try:
        return await connection.get(path)
    finally:
        await connection.close()


@dataclass
class Result:
    scenario: str
    requests: int
    seconds: float
    latencies: list[float]
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _drive(scenario: str, workers, seconds: float, warmup: float) -> Result:
    """Run the ``workers`` (coroutine functions doing one request each call) in a loop,
    concurrently, for warmup + seconds; count what finished in the measured window."""
    latencies: list[float] = []
    errors = 0
    t_start = time.perf_counter() + warmup
    t_stop = t_start + seconds

    async def loop(do_one) -> None:
        nonlocal errors
        while True:
            t0 = time.perf_counter()
            if t0 >= t_stop:
                return
            ok = await do_one()
            t1 = time.perf_counter()
            if t0 >= t_start and t1 <= t_stop:
                latencies.append(t1 - t0)
                if not ok:
                    errors += 1

    await asyncio.gather(*(loop(w) for w in workers))
    return Result(scenario, len(latencies), seconds, latencies, errors)


async def api_scenario(
    port: int, path: str, name: str, seconds: float, warmup: float, *, cached: bool = True
) -> Result:
    """32 clients on one path.  ``cached=False`` sends ``Cache-Control: no-cache``, which
    makes the API skip its 5-second response cache: every request runs its query."""
    extra = "" if cached else "Cache-Control: no-cache\r\n"
    connections = [HttpConnection(port) for _ in range(CLIENTS)]
    await asyncio.gather(*(c.open() for c in connections))
    status, body = await connections[0].get(path, extra)
    if status != 200:
        raise RuntimeError(f"{path}: HTTP {status}: {body[:500]!r}")

    def worker(connection: HttpConnection):
        async def do_one() -> bool:
            status, _ = await connection.get(path, extra)
            return status == 200

        return do_one

    try:
        return await _drive(name, [worker(c) for c in connections], seconds, warmup)
    finally:
        await asyncio.gather(*(c.close() for c in connections))


async def sql_scenario(url: str, query, name: str, seconds: float, warmup: float) -> Result:
    from api.db import CONNECTION_OPTIONS

    # connected as the API's pool connects (no JIT, api.db)
    connections = [
        await psycopg.AsyncConnection.connect(url, autocommit=True, options=CONNECTION_OPTIONS)
        for _ in range(CLIENTS)
    ]
    text, params = query

    def worker(conn: psycopg.AsyncConnection):
        async def do_one() -> bool:
            cursor = await conn.execute(text, params, binary=True)
            await cursor.fetchall()
            return True

        return do_one

    try:
        return await _drive(name, [worker(c) for c in connections], seconds, warmup)
    finally:
        for conn in connections:
            await conn.close()


# ---------------------------------------------------------------------- the report


def table(pairs: list[tuple[Result, Result]]) -> str:
    lines = [
        f"{'scenario (32 clients)':46} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f"  {'API/SQL p50':>11} {'API/SQL p99':>11}  budget p99 <= 50 ms",
        "-" * 122,
    ]
    for number, (api, direct) in enumerate(pairs):
        met = api.percentile(0.99) <= BUDGET_P99_MS and api.errors == 0
        lines.append(
            f"{api.scenario:46} {api.rate:8,.0f} {api.percentile(0.5):8.1f}"
            f" {api.percentile(0.99):8.1f}  {api.percentile(0.5) / direct.percentile(0.5):10.1f}x"
            f" {api.percentile(0.99) / direct.percentile(0.99):10.1f}x"
            f"  {'met' if met else 'MISSED'}" + (f" ({api.errors} errors)" if api.errors else "")
        )
        if number + 1 < len(pairs) and pairs[number + 1][1] is direct:
            continue  # the baseline is printed once, after the last API row it serves
        lines.append(
            f"{direct.scenario:46} {direct.rate:8,.0f} {direct.percentile(0.5):8.1f}"
            f" {direct.percentile(0.99):8.1f}  {'':>11} {'':>11}  (SQL baseline,"
            f" API/SQL req/s {api.rate / direct.rate:.2f})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--days", type=float, default=30, help="days of history to load")
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds a scenario")
    parser.add_argument("--quick", action="store_true", help="2 days, 3 s a scenario")
    parser.add_argument("--minutes", action="store_true", help="bucket=1m reads instead")
    parser.add_argument("--url", help="a database already loaded (by an earlier load_month)")
    parser.add_argument("--only", default="abcd", help="the scenarios to run, e.g. ab")
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if args.minutes:
        minutes_main(3.0 if args.quick else args.seconds, 1.0 if args.quick else 2.0)
        return
    days = 2.0 if args.quick else args.days
    seconds = 3.0 if args.quick else args.seconds
    warmup = 1.0 if args.quick else 2.0

    pairs: list[tuple[Result, Result]] = []
    with contextlib.ExitStack() as stack:
        if args.url:
            root, url = Path(tempfile.mkdtemp(prefix="smartby-bench-api-")), args.url
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            with psycopg.connect(url) as conn:
                # load_month loads up to the last whole hour
                last = conn.execute(
                    "SELECT date_trunc('hour', max(time)) + interval '1 hour' FROM readings"
                ).fetchone()[0]  # type: ignore[index]
            end = last.timestamp()
            days = 30.0
        else:
            root, url = stack.enter_context(scratch_database("api"))
            _, end = load_month(url, days)
        server: ApiServer | None = None
        try:
            scenarios = read_scenarios(url, days, datetime.fromtimestamp(end, UTC))
            server = ApiServer(url, root / "api.log")
            for name, path, query in scenarios:
                if name[1] not in args.only:
                    continue
                say(f"  {name}: API for {seconds:g} s …")
                api = asyncio.run(api_scenario(server.port, path, f"{name}, API", seconds, warmup))
                say(f"  {name}: API without its response cache for {seconds:g} s …")
                uncached = asyncio.run(
                    api_scenario(
                        server.port, path, f"{name}, API no-cache", seconds, warmup, cached=False
                    )
                )
                say(f"  {name}: SQL for {seconds:g} s …")
                direct = asyncio.run(sql_scenario(url, query, f"{name}, SQL", seconds, warmup))
                pairs.append((api, direct))
                pairs.append((uncached, direct))
        finally:
            if server is not None:
                server.stop()
    print(table(pairs))
    print(
        f"\nmachine: {os.cpu_count()} cores; {days:g} days of simulated Narvik; "
        f"{CLIENTS} concurrent clients on keep-alive connections, {seconds:g} s measured "
        f"per scenario after {warmup:g} s warm-up; API: one uvicorn worker; "
        "SQL: the API's own SQL on 32 psycopg connections"
    )
    met = all(
        a.percentile(0.99) <= BUDGET_P99_MS and a.errors == 0
        for a, _ in pairs
        if not a.scenario.endswith("no-cache")
    )
    uncached_met = all(
        a.percentile(0.99) <= BUDGET_P99_MS and a.errors == 0
        for a, _ in pairs
        if a.scenario.endswith("no-cache")
    )
    print(
        f"budget (p99 <= {BUDGET_P99_MS:g} ms at {CLIENTS} clients, one worker): "
        f"{'met' if met else 'MISSED'} as served (5-second response cache); "
        f"{'met' if uncached_met else 'MISSED'} with every request running its query"
    )


# ------------------------------------------------------------------- bucket=1m reads

#: option (b) of issue 17, measured beside what the API serves: every minute computed
#: from the readings at read time, minute rows or not
MINUTES_FROM_READINGS = """
    SELECT date_bin('1 minute', time, timestamptz 'epoch') AS bucket, count(*),
           count(*) FILTER (WHERE quality IN (1, 2)), sum(value), sum(value * value),
           min(value), max(value), (array_agg(value ORDER BY time, value))[1],
           (array_agg(value ORDER BY time DESC, value DESC))[1]
    FROM readings
    WHERE series_id = ANY(%(series)s) AND time >= %(start)s AND time < %(end)s
      AND quality NOT IN (4, 9) AND value <> 'NaN'
    GROUP BY 1 ORDER BY 1 LIMIT %(limit)s"""

#: the building whose two meters report every second (bench.common.load_busy_day)
BUSY_SITE = "busy-energy"


def minute_scenarios(url: str, end: datetime) -> list[tuple[str, str, Any, Any]]:
    """(name, path, the API's query, option (b)'s query) for 1 and 7 days of: one
    once-a-minute series, a site, and a series reporting every second."""
    from api import queries

    with psycopg.connect(url) as conn:
        # PM2.5 of Narvik sentrum: a station reporting once a minute (devices/narvik.yaml)
        row = conn.execute(
            "SELECT s.id, s.device_id || '/' || s.metric, d.site_id FROM series s"
            " JOIN devices d ON d.id = s.device_id"
            " WHERE s.device_id = 'aq-sentrum' AND s.metric = 'pm25'"
        ).fetchone()
        if row is None:
            raise RuntimeError("no pm25 series of aq-sentrum loaded")
        minute_series, minute_name, site = int(row[0]), str(row[1]), str(row[2])
        site_series = [
            int(i)
            for (i,) in conn.execute(
                "SELECT s.id FROM series s JOIN devices d ON d.id = s.device_id"
                " WHERE d.site_id = %s AND s.metric = 'power' ORDER BY s.id",
                (BUSY_SITE,),
            )
        ]
    scenarios = []
    for days, limit in ((1, 1440), (7, 10_000)):
        start = end - timedelta(days=days)
        span = f"from={start.isoformat()}&to={end.isoformat()}".replace("+00:00", "Z")
        for what, series, path in (
            (f"series {minute_name} (1/min)", [minute_series], f"/v1/series/{minute_series}/data"),
            (
                f"site {site} pm25 (1 series, 1/min)",
                [minute_series],
                f"/v1/sites/{site}/metrics/pm25/data",
            ),
            (
                f"site {BUSY_SITE} power (2 meters, 1/s)",
                site_series,
                f"/v1/sites/{BUSY_SITE}/metrics/power/data",
            ),
            ("series of one meter (1/s)", site_series[:1], f"/v1/series/{site_series[0]}/data"),
        ):
            served = queries.rollup_page_query(
                series, "1m", start, end, after=None, limit=limit + 1, tz="Europe/Oslo"
            )
            option_b = (
                MINUTES_FROM_READINGS,
                {"series": series, "start": start, "end": end, "limit": limit + 1},
            )
            scenarios.append(
                (
                    f"{days}d of {what}",
                    f"{path}?bucket=1m&{span}&limit={limit}",
                    served,
                    option_b,
                )
            )
    return scenarios


def minutes_main(seconds: float, warmup: float) -> None:
    """Load 8 days of Narvik and 7 days of a building metered every second, then
    measure bucket=1m reads (see the module docstring)."""
    from bench.common import load_busy_day
    from core.rollups import from_epoch_us, local_days

    rows: list[tuple[str, Result, Result, Result]] = []
    with scratch_database("api") as (root, url):
        server: ApiServer | None = None
        try:
            _, end_s = load_month(url, 8)
            end = datetime.fromtimestamp(end_s, UTC)
            days = local_days(int((end_s - 7 * 86400) * 1e6), int(end_s * 1e6))
            for day in days:
                say(f"  a day of the busy building from {from_epoch_us(day).isoformat()}")
                load_busy_day(url, "energy", from_epoch_us(day), 2 * 2 * 86_400, site=BUSY_SITE)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
                stored = conn.execute(
                    "SELECT resolution, count(*) FROM rollups GROUP BY 1 ORDER BY 1"
                ).fetchall()
            say(f"  rollup rows: {stored}")
            server = ApiServer(url, root / "api.log")
            # the SQL cells connect as the API does: without JIT (api.db.NO_JIT)
            sql_url = f"{url}{'&' if '?' in url else '?'}options=-c%20jit%3Doff"
            for name, path, served, option_b in minute_scenarios(url, end):
                say(f"  {name}: API without its cache, SQL, option (b)'s SQL ({seconds:g} s each)")
                api = asyncio.run(
                    api_scenario(server.port, path, name, seconds, warmup, cached=False)
                )
                direct = asyncio.run(sql_scenario(sql_url, served, name, seconds, warmup))
                other = asyncio.run(sql_scenario(sql_url, option_b, name, seconds, warmup))
                rows.append((name, api, direct, other))
        finally:
            if server is not None:
                server.stop()
    print(
        f"{'bucket=1m, 32 clients':52} {'API no-cache':>19} {'SQL as served':>19}"
        f" {'(b): from readings':>19}"
    )
    print(f"{'':52} {'p50 / p99 ms':>19} {'p50 / p99 ms':>19} {'p50 / p99 ms':>19}")
    print("-" * 112)
    for name, api, direct, other in rows:
        cells = [
            f"{r.percentile(0.5):7.1f} / {r.percentile(0.99):7.1f}" + ("!" if r.errors else " ")
            for r in (api, direct, other)
        ]
        print(f"{name:52} {cells[0]:>19} {cells[1]:>19} {cells[2]:>19}")
    print(
        f"\nmachine: {os.cpu_count()} cores; API: one uvicorn worker, Cache-Control: no-cache;"
        f" SQL: 32 psycopg connections; {seconds:g} s measured per cell after {warmup:g} s;"
        f" budget p99 <= {BUDGET_P99_MS:g} ms; ! = errors"
    )


if __name__ == "__main__":
    main()
