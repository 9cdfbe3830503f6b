"""How an export's rows leave the database: page by page, each page on a connection
of the export pool held only while its query runs.

Why pages and not one server-side cursor.  A cursor lives in a transaction on one
connection, and the stream is read as fast as the client reads: a client that stops
reading holds that connection for as long as it likes.  Eight of them held all
eight connections of the API (issue 11).  Timing such streams out would only bound
the harm (a connection held for the whole timeout, per slow client); buffering the
whole result would trade connections for memory.  So each page is its own query,
its rows are read in full, the connection goes back to the pool, and only then are
they encoded and sent: a connection never waits on a client's socket.  (A client
that reads nothing is still cut off, by the edge's send timeout, `api.edge`, which
frees its export slot; it holds no connection meanwhile.)

Measured on 30 days of simulated Narvik (``python -m bench.api_storm --fetch-only``
repeats it), exporting raw PM2.5 of all stations (363 k rows) in 10 000-row pages,
once with the machine quiet and once busy with other work:

=============================================  ===============  ==================
way of fetching                                rows/s           connection held
=============================================  ===============  ==================
one named cursor, one transaction              0.82 M / 0.28 M  the whole stream
keyset pages, ``(time, series) > last LIMIT``  0.21 M / 0.09 M  46 / 108 ms a page
keyset pages inside a time window              1.15 M / 0.54 M  6 / 13 ms a page
=============================================  ===============  ==================

Plain keyset pages over raw readings are slow because ``ORDER BY time, series_id``
over many series has no matching index (the key is ``(series_id, time)``): every
page sorts the rest of the range.  Bounding each page to a time window that adapts
to the data's density lets TimescaleDB open only the chunks of that window and sort
a page's worth of rows, so paging costs nothing over the cursor.  Aggregates, the
indicator tables and the catalogue tables page on their primary keys (one ordered
index scan per page), which is the right order already.

What paging gives up: one snapshot for the whole file.  Each page sees the data as
it is when it runs, so a reading committed meanwhile appears if it falls after the
page boundary and not if it falls before; no row appears twice, and none that
existed throughout is missed (keyset order is strict).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from api.export_datasets import Query, raw_readings_query
from api.export_formats import Row

#: rows per page, per chunk handed to the encoder, and per Parquet row group
CHUNK_ROWS = 10_000
#: rows shaped between two turns of the event loop
SHAPE_ROWS = 1_000
#: the first time window of raw readings, and how far the window may grow or shrink
FIRST_WINDOW = timedelta(hours=1)
MIN_WINDOW = timedelta(seconds=1)
MAX_WINDOW = timedelta(days=31)

RunQuery = Callable[[Query], Awaitable[list[Row]]]


@dataclass(frozen=True, slots=True)
class KeysetStep:
    """Rows paged on a unique key in query order: ``page(after, limit)`` is the query of
    the rows after the key ``after`` (None: from the first), ``key(row)`` the key of a
    row; ``row`` reshapes each row (None: as is)."""

    page: Callable[[Any, int], Query]
    key: Callable[[Row], Any]
    row: Callable[[Row], Row] | None = None

    async def pages(self, run: RunQuery) -> AsyncIterator[list[Row]]:
        after: Any = None
        while True:
            rows = await run(self.page(after, CHUNK_ROWS))
            if rows:
                yield rows
            if len(rows) < CHUNK_ROWS:
                return
            after = self.key(rows[-1])


@dataclass(frozen=True, slots=True)
class RawReadingsStep:
    """Raw readings of some series in ``[start, end)``, in (time, series) order, paged
    by keyset inside a time window that doubles while pages come back less than half
    full and halves when one is full (see the module docstring for why)."""

    series_ids: Sequence[int]
    start: datetime
    end: datetime
    row: Callable[[Row], Row] | None = None

    async def pages(self, run: RunQuery) -> AsyncIterator[list[Row]]:
        low, after, window = self.start, None, FIRST_WINDOW
        while low < self.end:
            high = self.end if self.end - low <= window else low + window
            query = raw_readings_query(self.series_ids, low, high, after=after, limit=CHUNK_ROWS)
            rows = await run(query)
            if rows:
                yield rows
            if len(rows) == CHUNK_ROWS:  # more in this window: go on after the last row
                after = (rows[-1][0], rows[-1][1])
                low = after[0]
                window = max(window / 2, MIN_WINDOW)
            else:
                low, after = high, None
                if len(rows) < CHUNK_ROWS // 2:
                    window = min(window * 2, MAX_WINDOW)


@dataclass(frozen=True, slots=True)
class MergedStep:
    """The rows of several keyset steps merged into one order (``order(row)``, ties by
    step), each step still paged on its own key: at most a page of each is held.  The
    wide export of a device's buckets reads its series this way, by time, so that a
    bucket's values of every metric come together (`api.export_shape.pivot`)."""

    steps: Sequence[KeysetStep]
    order: Callable[[Row], Any]
    row: Callable[[Row], Row] | None = None

    async def pages(self, run: RunQuery) -> AsyncIterator[list[Row]]:
        sources = [step.pages(run) for step in self.steps]
        buffers: list[deque[Row]] = [deque() for _ in self.steps]
        live = [True] * len(self.steps)
        out: list[Row] = []
        while True:
            for i, step in enumerate(self.steps):
                if live[i] and not buffers[i]:
                    page = await anext(sources[i], None)
                    if page is None:
                        live[i] = False
                    else:
                        buffers[i].extend(page if step.row is None else map(step.row, page))
            heads = [(self.order(buffer[0]), i) for i, buffer in enumerate(buffers) if buffer]
            if not heads:
                break
            least = min(key for key, _ in heads)
            for key, i in heads:
                if key == least:
                    out.append(buffers[i].popleft())
            if len(out) >= CHUNK_ROWS:
                yield out
                out = []
        if out:
            yield out


Step = KeysetStep | RawReadingsStep | MergedStep


def _forget(task: asyncio.Future[list[Row]]) -> None:
    """The result of a page whose client left: nobody's (retrieved, so that asyncio
    does not report an exception as never retrieved)."""
    if not task.cancelled():
        task.exception()


async def fetch_chunks(
    pool: AsyncConnectionPool[Any], steps: Sequence[Step]
) -> AsyncGenerator[list[Row], None]:
    """The rows of the steps, in order, in chunks of at most `CHUNK_ROWS` (small pages,
    as of consecutive series, are joined), each page's connection given back before
    its rows are yielded."""

    async def page(query: Query) -> list[Row]:
        async with pool.connection() as conn:
            cursor = await conn.execute(query[0], query[1], binary=True)
            rows: list[Row] = await cursor.fetchall()
            return rows

    async def run(query: Query) -> list[Row]:
        # A client that leaves cancels its stream; the page query it was waiting for
        # finishes on its own (milliseconds) and gives its connection back whole.
        # Cancelled mid-query, psycopg would close the connection, and clients that
        # come and go could make the pool reconnect all the time.
        task = asyncio.ensure_future(page(query))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_forget)
            raise

    buffer: list[Row] = []
    for step in steps:
        async for rows in step.pages(run):
            if buffer and len(buffer) + len(rows) > CHUNK_ROWS:
                yield buffer
                buffer = []
            if step.row is None:
                buffer.extend(rows)
            else:
                # shaping (`api.export_shape`) costs about 1 µs a row: a page's worth
                # at once would hold the shared event loop for 10 ms, so it goes in
                # slices, as the encoders do, letting other requests run in between
                for start in range(0, len(rows), SHAPE_ROWS):
                    buffer.extend(map(step.row, rows[start : start + SHAPE_ROWS]))
                    await asyncio.sleep(0)
            if len(buffer) >= CHUNK_ROWS:
                yield buffer
                buffer = []
    if buffer:
        yield buffer
