"""The app's connection pool, and running the query builders' queries on it."""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow, TupleRow, dict_row
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from api.queries import Query

Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]

#: The API's connections never JIT-compile.  PostgreSQL compiles a query whose estimated
#: cost passes jit_above_cost (100,000), and a week of minutes over the readings'
#: hypertable is estimated chunk by chunk, hour by hour, far above what it costs: it runs
#: in milliseconds and compiled for 2-4 s (issue 17, bench/api.py --minutes).  Every
#: query of the API is short; compiling one never pays.
NO_JIT = "-c jit=off"
#: what the API's connections set (the benchmark connects with the same)
CONNECTION_OPTIONS = NO_JIT


def make_pool(database_url: str, *, min_size: int = 2, max_size: int = 8) -> Pool:
    """Autocommit connections (every route is one read, or one short write), opened
    by the app's lifespan.  A few connections are plenty: queries take a millisecond
    or two, and PostgreSQL on the same cores gains nothing from more in parallel.

    Each connection is checked before it is lent (`check_idle`): after a restart of
    PostgreSQL every pooled connection is dead, and without the check each would
    fail one request with 503 before the pool noticed.  A failed check makes the pool
    drop that connection and lend another, or open a new one."""
    return AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        timeout=10,
        name="smartby-api",
        kwargs={
            "autocommit": True,
            "application_name": "smartby-api",
            "options": CONNECTION_OPTIONS,
        },
        check=check_idle,
    )


async def check_idle(conn: AsyncConnection[Any]) -> None:
    """The pool's check of a connection before lending it, without a round trip when
    nothing happened to it.  An idle connection has nothing to read: a server that
    ends its session (a restart, pg_terminate_backend) sends an ErrorResponse and
    closes the socket (PostgreSQL protocol §55.2.8, "Termination"), which makes the
    socket readable.  Only then is it checked for real (an empty query), which
    raises and makes the pool drop it.  The empty query on every checkout cost a round
    trip per request (issue 17)."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        await AsyncConnectionPool.check_connection(conn)


#: the application_name of the export pool's connections (pg_stat_activity tells them apart)
EXPORT_APPLICATION = "smartby-api-export"


def make_export_pool(database_url: str, *, size: int) -> Pool:
    """The bulk exports' own connections, so that however many exports run, the
    requests of everyone else keep the main pool.  Each export holds one only while
    a page is queried (`api.export_fetch`), so a few serve many exports; one is kept
    open, the rest on demand."""
    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=size,
        open=False,
        timeout=10,
        name=EXPORT_APPLICATION,
        kwargs={
            "autocommit": True,
            "application_name": EXPORT_APPLICATION,
            "options": CONNECTION_OPTIONS,
        },
        check=check_idle,  # as in make_pool
    )


#: the application_name of the connections that check devices' secrets
DEVICE_APPLICATION = "smartby-api-devices"


def make_device_pool(database_url: str, *, size: int = 2) -> Pool:
    """Connections as the registrar, for devices proving their secret (`api.device_auth`):
    one short query each, apart from the open reads' pool.  Opened without waiting, so
    an API whose registrar login is missing still serves its reads."""
    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=size,
        open=False,
        timeout=10,
        name=DEVICE_APPLICATION,
        kwargs={"autocommit": True, "application_name": DEVICE_APPLICATION},
        check=check_idle,
    )


def pool_of(request: Request) -> Pool:
    pool: Pool = request.app.state.pool
    return pool


async def fetch_tuples(request: Request, query: Query) -> list[TupleRow]:
    async with pool_of(request).connection() as conn:
        cur = await conn.execute(query[0], query[1], binary=True)
        rows: list[TupleRow] = await cur.fetchall()
        return rows


async def fetch_dicts(request: Request, query: Query) -> list[DictRow]:
    async with pool_of(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row, binary=True)
        await cur.execute(query[0], query[1])
        rows: list[DictRow] = await cur.fetchall()
        return rows


async def fetch_json_page(request: Request, query: Query) -> tuple[int, bytes, tuple[Any, ...]]:
    """The one row of an `api.json_sql.page_json_query`: rows found, the page's JSON
    (bytes, no brackets), and the cursor keys of its last row (None without a next
    page)."""
    async with pool_of(request).connection() as conn:
        cur = await conn.execute(query[0], query[1], binary=True)
        row = await cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY has one row
    return int(row[0]), bytes(row[1]), tuple(row[2:])
