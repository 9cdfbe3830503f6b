"""Live data for third parties: new readings and AQI hours as they are committed,
pushed as Server-Sent Events at /v1/stream (WHATWG HTML §9.2), and to the broker as
SensorThings Observations (`api.sensorthings.mqtt`).

How it hears of them: the ingest writer and the AQI job NOTIFY inside their
transactions (`db.stream`), so an event exists only once its data has committed.
Each API process holds one LISTEN connection (`StreamHub.run`); on a notification it
reads the new readings back with one query — only while someone is listening — and
hands each event to every client whose filter wants it.

Memory stays bounded whatever the clients do: each client has a queue of at most
``SMARTBY_API_STREAM_QUEUE_SIZE`` events, and a client that falls that far behind is
dropped (its queue emptied, its stream ended; it may reconnect with
``Last-Event-ID``).  The number of clients is bounded too
(``SMARTBY_API_STREAM_MAX_CLIENTS``): beyond it a 503 problem says so.  An idle stream
carries a comment every ``SMARTBY_API_STREAM_HEARTBEAT_S`` so proxies keep it open.

Privacy and quality as everywhere: raw readings of the aggregate-only domains
(traffic) are never streamed, and FAIL-flagged readings only with
``include_failed=true``.

Resuming: each reading event's id is ``<time in µs>.<series id>``.  A client that
reconnects with ``Last-Event-ID`` first gets the readings its filter wants after that
position (at most `REPLAY_LIMIT`, none older than `REPLAY_WINDOW`), then the live
stream; AQI events carry no id (browsers keep the last reading's).  Readings that
arrive late, older than the position, are not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol

import psycopg
from fastapi import APIRouter, Header, Query, Request
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.problems import Problem
from api.queries import AGGREGATE_ONLY_DOMAINS
from api.responses import dumps
from core.indicators import AQI_LEVEL_NAMES
from core.settings import Settings
from db.stream import AQI_CHANNEL, READINGS_CHANNEL, SeriesRange, decode_aqi, decode_readings

log = logging.getLogger(__name__)

router = APIRouter(tags=["stream"])

EVENT_STREAM = "text/event-stream"
FAIL = 4
QUALITY_NAMES = {1: "good", 2: "not_evaluated", 3: "suspect", 4: "fail", 9: "missing"}
#: how far back a resume reaches, and how many readings it replays at most
REPLAY_WINDOW = timedelta(hours=1)
REPLAY_LIMIT = 10_000
#: how often a stream looks up from its queue (to notice a shutdown or a heartbeat due)
_TICK_S = 1.0
#: the reconnect delay a client is told (SSE ``retry:``), milliseconds
RETRY_MS = 3000
#: the advisory lock the STA publisher of one API process holds (one publishes)
PUBLISHER_LOCK = 0x736D_6172_7473_7461
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Reading:
    series_id: int
    micros: int  # time, µs since the epoch
    value: float
    quality: int
    metric: str
    unit: str
    device_id: str
    site_id: str | None

    @property
    def time(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.micros)

    @property
    def event_id(self) -> str:
        return f"{self.micros}.{self.series_id}"

    def document(self) -> dict[str, Any]:
        return {
            "series_id": self.series_id,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "value": self.value,
            "quality": self.quality,
            "quality_name": QUALITY_NAMES.get(self.quality, "unknown"),
            "metric": self.metric,
            "unit": self.unit,
            "device_id": self.device_id,
            "site_id": self.site_id,
        }


@dataclass(frozen=True, slots=True)
class AqiHour:
    site_id: str
    hour: datetime
    level: int
    dominant: str
    means: tuple[float | None, ...]  # pm25, pm10, no2, o3, so2

    def document(self) -> dict[str, Any]:
        pm25, pm10, no2, o3, so2 = self.means
        return {
            "site_id": self.site_id,
            "hour": self.hour.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "level": self.level,
            "label": AQI_LEVEL_NAMES[self.level - 1],
            "dominant": self.dominant,
            "pm25": pm25,
            "pm10": pm10,
            "no2": no2,
            "o3": o3,
            "so2": so2,
        }


Event = Reading | AqiHour


def sse(event: Event) -> bytes:
    """One event in the text/event-stream format (HTML §9.2.5)."""
    data = dumps(event.document()).decode()
    if isinstance(event, Reading):
        return f"id: {event.event_id}\nevent: reading\ndata: {data}\n\n".encode()
    return f"event: aqi\ndata: {data}\n\n".encode()


# ---------------------------------------------------------------------- subscribers


@dataclass(eq=False)
class Subscriber:
    """One stream client: what it wants, and its bounded queue (None ends it)."""

    metrics: frozenset[str] | None
    sites: frozenset[str] | None
    include_failed: bool
    aqi: bool
    size: int
    queue: asyncio.Queue[Event | None] = field(init=False)
    dropped: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.size + 1)  # one more place: the end

    def wants(self, event: Event) -> bool:
        if self.sites is not None and event.site_id not in self.sites:
            return False
        if isinstance(event, AqiHour):
            return self.aqi
        if self.metrics is not None and event.metric not in self.metrics:
            return False
        return self.include_failed or event.quality != FAIL

    def offer(self, event: Event | None) -> None:
        """Queue the event; a client this far behind is dropped: its queue is emptied
        (memory back) and ends with None."""
        if self.dropped:
            return
        if self.queue.qsize() >= self.size:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(event)


class ReadingSink(Protocol):
    """Where new readings go besides the stream clients (the STA MQTT publisher)."""

    def start(self) -> None:
        """This process took the publisher lock: connect."""

    def publish(self, readings: list[Reading]) -> None: ...

    def stop(self) -> None:
        """This process lost the lock (with its database connection): disconnect."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------- queries

_COLUMNS = (
    "SELECT s.id, (extract(epoch FROM r.time) * 1000000)::int8, r.value, r.quality,"
    " s.metric, m.unit, s.device_id, d.site_id"
)
_RANGES = (
    _COLUMNS + " FROM unnest(%(series)s::int4[], %(first)s::int8[], %(last)s::int8[])"
    " AS q (series_id, first_us, last_us)"
    " JOIN series s ON s.id = q.series_id JOIN devices d ON d.id = s.device_id"
    " JOIN metrics m ON m.key = s.metric"
    " CROSS JOIN LATERAL (SELECT time, value, quality FROM readings r"
    "  WHERE r.series_id = q.series_id"
    "  AND r.time >= 'epoch'::timestamptz + q.first_us * interval '1 microsecond'"
    "  AND r.time <= 'epoch'::timestamptz + q.last_us * interval '1 microsecond'"
    # the whole payload's bounds as constants too: TimescaleDB excludes chunks at plan time
    "  AND r.time >= %(lo)s AND r.time <= %(hi)s) r"
    " WHERE m.domain <> ALL(%(private)s)"
    " ORDER BY r.time, s.id"
)
_REPLAY = (
    _COLUMNS + " FROM series s JOIN devices d ON d.id = s.device_id"
    " JOIN metrics m ON m.key = s.metric"
    " CROSS JOIN LATERAL (SELECT time, value, quality FROM readings r"
    "  WHERE r.series_id = s.id AND r.time >= %(after)s AND r.time >= %(oldest)s"
    "  ORDER BY r.time LIMIT %(limit)s) r"
    " WHERE m.domain <> ALL(%(private)s)"
    " AND (%(metrics)s::text[] IS NULL OR s.metric = ANY(%(metrics)s))"
    " AND (%(sites)s::text[] IS NULL OR d.site_id = ANY(%(sites)s))"
    " AND (%(failed)s OR r.quality <> 4)"
    " AND (r.time > %(after)s OR s.id > %(after_series)s)"
    " ORDER BY r.time, s.id LIMIT %(limit)s"
)
_AQI = (
    "SELECT site_id, hour, level, dominant, pm25, pm10, no2, o3, so2 FROM aqi_hourly"
    " WHERE hour >= %s AND hour < %s ORDER BY hour, site_id"
)


def _readings(rows: Iterable[TupleRow]) -> list[Reading]:
    return [
        Reading(int(s), int(t), float(v), int(q), metric, unit, device, site)
        for s, t, v, q, metric, unit, device, site in rows
    ]


# ---------------------------------------------------------------------- the hub


class StreamHub:
    """The one LISTEN connection of an API process and the clients it feeds."""

    def __init__(
        self,
        url: str,
        pool: AsyncConnectionPool[AsyncConnection[TupleRow]],
        settings: Settings,
        *,
        sink: ReadingSink | None = None,
    ) -> None:
        self.url = url
        self.pool = pool
        self.max_clients = settings.api_stream_max_clients
        self.queue_size = settings.api_stream_queue_size
        self.heartbeat_s = settings.api_stream_heartbeat_s
        self.sink = sink
        self.publishing = False  # this process holds the publisher lock
        self.subscribers: set[Subscriber] = set()
        self.listening = asyncio.Event()
        self.dropped = 0
        self._aqi_seen: dict[tuple[str, datetime], tuple[Any, ...]] = {}
        self.closing = False
        #: set by `api.server` to the running uvicorn server, whose shutdown ends streams
        self.shutting_down: Callable[[], bool] = lambda: False

    # -- clients

    def register(
        self,
        metrics: frozenset[str] | None,
        sites: frozenset[str] | None,
        include_failed: bool,
        aqi: bool,
    ) -> Subscriber | None:
        """A new client, or None when the bound is reached."""
        if len(self.subscribers) >= self.max_clients:
            return None
        subscriber = Subscriber(metrics, sites, include_failed, aqi, self.queue_size)
        self.subscribers.add(subscriber)
        return subscriber

    def unregister(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def deliver(self, events: list[Event]) -> None:
        for subscriber in list(self.subscribers):
            for event in events:
                if subscriber.wants(event):
                    subscriber.offer(event)
            if subscriber.dropped:
                self.subscribers.discard(subscriber)
                self.dropped += 1
                log.info("dropped a stream client %d events behind", self.queue_size)

    @property
    def wanted(self) -> bool:
        return bool(self.subscribers) or self.publishing

    # -- listening

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a failure (with backoff)."""
        delay = 1.0
        while not self.closing:
            try:
                await self._listen()
                delay = 1.0
            except (psycopg.OperationalError, OSError) as exc:
                self.listening.clear()
                if self.publishing and self.sink is not None:
                    self.sink.stop()  # the lock went with the connection
                self.publishing = False
                log.warning("stream listener lost the database (%s); retry in %g s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _listen(self) -> None:
        async with await AsyncConnection.connect(
            self.url, autocommit=True, application_name="smartby-api-stream"
        ) as conn:
            await conn.execute(f"LISTEN {READINGS_CHANNEL}")
            await conn.execute(f"LISTEN {AQI_CHANNEL}")
            await self._prime_aqi()
            self.listening.set()
            while not self.closing:
                if self.sink is not None and not self.publishing:
                    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (PUBLISHER_LOCK,))
                    row = await cur.fetchone()
                    self.publishing = bool(row and row[0])
                    if self.publishing:
                        log.info("this API process publishes SensorThings Observations")
                        self.sink.start()
                async for notify in conn.notifies(timeout=10.0):
                    if notify.channel == READINGS_CHANNEL:
                        await self._on_readings(decode_readings(notify.payload))
                    elif notify.channel == AQI_CHANNEL:
                        await self._on_aqi(notify.payload)

    async def _on_readings(self, ranges: list[SeriesRange]) -> None:
        if not ranges or not self.wanted:
            return
        params = {
            "series": [r.series_id for r in ranges],
            "first": [r.first_us for r in ranges],
            "last": [r.last_us for r in ranges],
            "lo": _EPOCH + timedelta(microseconds=min(r.first_us for r in ranges)),
            "hi": _EPOCH + timedelta(microseconds=max(r.last_us for r in ranges)),
            "private": list(AGGREGATE_ONLY_DOMAINS),
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(_RANGES, params, prepare=False)
            readings = _readings(await cur.fetchall())
        if readings:
            self.deliver(list(readings))
            if self.publishing and self.sink is not None:
                self.sink.publish(readings)

    async def _prime_aqi(self) -> None:
        now = datetime.now(UTC)
        await self._aqi_changes(now - timedelta(days=2), now + timedelta(days=1))

    async def _on_aqi(self, payload: str) -> None:
        span = decode_aqi(payload)
        if span is None:
            return
        changed = await self._aqi_changes(*span)
        if changed and self.subscribers:
            self.deliver(list(changed))

    async def _aqi_changes(self, start: datetime, end: datetime) -> list[AqiHour]:
        """AQI hours in [start, end) that are new or changed since last seen."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_AQI, (start, end))
            rows = await cur.fetchall()
        changed: list[AqiHour] = []
        for site, hour, level, dominant, *means in rows:
            key = (site, hour)
            state = (level, dominant, *means)
            if self._aqi_seen.get(key) != state:
                self._aqi_seen[key] = state
                changed.append(AqiHour(site, hour, int(level), dominant, tuple(means)))
        if len(self._aqi_seen) > 50_000:  # keep the last two days' hours only
            oldest = datetime.now(UTC) - timedelta(days=2)
            self._aqi_seen = {k: v for k, v in self._aqi_seen.items() if k[1] >= oldest}
        return changed

    async def replay(self, subscriber: Subscriber, after: tuple[int, int]) -> list[Reading]:
        """The readings a resuming client missed (bounded; see the module docstring)."""
        micros, series = after
        params = {
            "after": _EPOCH + timedelta(microseconds=micros),
            "after_series": series,
            "oldest": datetime.now(UTC) - REPLAY_WINDOW,
            "limit": REPLAY_LIMIT,
            "private": list(AGGREGATE_ONLY_DOMAINS),
            "metrics": sorted(subscriber.metrics) if subscriber.metrics is not None else None,
            "sites": sorted(subscriber.sites) if subscriber.sites is not None else None,
            "failed": subscriber.include_failed,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(_REPLAY, params, prepare=False)
            return _readings(await cur.fetchall())

    def close(self) -> None:
        self.closing = True
        for subscriber in list(self.subscribers):
            subscriber.offer(None)
        if self.sink is not None:
            self.sink.close()


# ---------------------------------------------------------------------- the route

_NAMES = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LAST_EVENT = re.compile(r"^(-?[0-9]{1,19})\.([0-9]{1,10})$")


def _names(text: str | None, parameter: str) -> frozenset[str] | None:
    if text is None or not text.strip():
        return None
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if not _NAMES.match(name):
            raise Problem(
                400,
                "Bad request parameter",
                f"{name!r} in {parameter} is not a {parameter[:-1]} id",
                parameter=parameter,
            )
    if len(names) > 200:
        raise Problem(400, "Bad request parameter", f"at most 200 {parameter}", parameter=parameter)
    return names


async def _check_known(
    request: Request, metrics: frozenset[str] | None, sites: frozenset[str] | None
) -> None:
    """A metric or site that does not exist is a 400 naming it (a typo would
    otherwise be a silent, empty stream)."""
    pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = request.app.state.pool
    async with pool.connection() as conn:
        for names, table, column, parameter in (
            (metrics, "metrics", "key", "metrics"),
            (sites, "sites", "id", "sites"),
        ):
            if names is None:
                continue
            wanted = sorted(names - {"aqi"} if parameter == "metrics" else names)
            cur = await conn.execute(
                f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)",
                (wanted,),
            )
            found = {row[0] for row in await cur.fetchall()}
            unknown = sorted(set(wanted) - found)
            if unknown:
                raise Problem(
                    400,
                    "Bad request parameter",
                    f"no such {parameter[:-1]}: {', '.join(unknown)} (see /v1/{parameter})",
                    parameter=parameter,
                )
            if parameter == "metrics":
                cur = await conn.execute(
                    "SELECT key FROM metrics WHERE key = ANY(%s) AND domain = ANY(%s)",
                    (wanted, list(AGGREGATE_ONLY_DOMAINS)),
                )
                private = sorted(row[0] for row in await cur.fetchall())
                if private:
                    raise Problem(
                        400,
                        "Aggregate too fine",
                        f"{', '.join(private)}: traffic data is published only in aggregates "
                        "of at least 15 minutes (the privacy rule), never as live readings",
                        parameter="metrics",
                    )


def _resume_position(last_event_id: str | None) -> tuple[int, int] | None:
    if last_event_id is None:
        return None
    found = _LAST_EVENT.match(last_event_id.strip())
    if found is None or int(found.group(2)) > 2**31 - 1:
        return None  # not one of ours (an AQI event has none): start live
    return int(found.group(1)), int(found.group(2))


STREAM_DESCRIPTION = """\
New readings and new or changed hourly AQI values, pushed as they are committed, as
[Server-Sent Events](https://html.spec.whatwg.org/multipage/server-sent-events.html)
(`text/event-stream`; in a browser, `new EventSource(url)`).

Events:

* `reading` — one reading: `series_id`, `time`, `value` (canonical unit), `quality`
  (QARTOD flag) and `quality_name`, `metric`, `unit`, `device_id`, `site_id`. Its
  `id` is `<time in µs>.<series_id>`.
* `aqi` — one station-hour of the European Air Quality Index: `site_id`, `hour`,
  `level` (1 Good … 6 Extremely poor), `label`, `dominant`, and the hourly means used.

Comments (lines starting with `:`) keep idle connections open. Reconnecting with the
`Last-Event-ID` header (browsers do it themselves) first replays the readings missed
since that event (up to {limit:,}, from the last hour), then continues live.

Traffic readings are never streamed (only aggregates of 15 minutes or more are
published); FAIL-flagged readings only with `include_failed=true`. A client that
falls {queue:,} events behind is disconnected; at most {clients} clients are served
at once by one server (beyond: 503 with `Retry-After`).
"""


@router.get(
    "/stream",
    summary="Live readings and AQI hours (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "An endless `text/event-stream` of `reading` and `aqi` events.",
            "content": {
                EVENT_STREAM: {
                    "schema": {"type": "string"},
                    "example": "retry: 3000\n\nid: 1767225600000000.12\nevent: reading\n"
                    'data: {"series_id":12,"time":"2026-01-01T00:00:00Z","value":7.5,'
                    '"quality":1,"quality_name":"good","metric":"pm25","unit":"ug/m3",'
                    '"device_id":"aq-sentrum","site_id":"narvik-sentrum"}\n\n',
                }
            },
        },
        503: {"description": "Too many stream clients, or the stream is turned off."},
    },
)
async def stream(
    request: Request,
    metrics: Annotated[
        str | None,
        Query(
            description="Comma-separated metric keys to stream (`aqi` for the AQI events); "
            "default: every metric and the AQI.",
            examples=["pm25,no2,aqi"],
        ),
    ] = None,
    sites: Annotated[
        str | None,
        Query(
            description="Comma-separated site ids; default: every site.",
            examples=["narvik-sentrum"],
        ),
    ] = None,
    include_failed: Annotated[
        bool, Query(description="Also stream readings flagged FAIL by quality control.")
    ] = False,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this event (set by browsers)."),
    ] = None,
) -> StreamingResponse:
    """New readings (with their QC flag) and new or changed AQI hours, each pushed once
    its transaction has committed, as Server-Sent Events (WHATWG HTML §9.2).  Raw
    traffic readings are never streamed; FAIL-flagged readings only when asked for.
    A client that reconnects with ``Last-Event-ID`` first gets the readings it missed
    (up to an hour back); one that falls too far behind is dropped and may resume so."""
    hub: StreamHub | None = getattr(request.app.state, "stream", None)
    wanted_metrics = _names(metrics, "metrics")
    wanted_sites = _names(sites, "sites")
    if hub is None or hub.max_clients == 0:
        raise Problem(503, "Service unavailable", "the live stream is turned off on this server")
    await _check_known(request, wanted_metrics, wanted_sites)
    aqi = wanted_metrics is None or "aqi" in wanted_metrics
    reading_metrics = None if wanted_metrics is None else wanted_metrics - {"aqi"}
    subscriber = hub.register(reading_metrics, wanted_sites, include_failed, aqi)
    if subscriber is None:
        raise Problem(
            503,
            "Service unavailable",
            f"this server streams to at most {hub.max_clients} clients at once; retry later",
            headers={"retry-after": "30"},
            limit=hub.max_clients,
        )
    position = _resume_position(last_event_id)
    try:
        replayed = await hub.replay(subscriber, position) if position is not None else []
    except BaseException:
        hub.unregister(subscriber)
        raise
    return EventStreamResponse(
        _events(hub, subscriber, replayed),
        on_close=lambda: hub.unregister(subscriber),
        media_type=EVENT_STREAM,
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


class EventStreamResponse(StreamingResponse):
    """A stream that lets its client's place go however it ends: a client that hangs
    up cancels the response task, and an async generator cancelled mid-iteration is
    not closed (its ``finally`` does not run) until the garbage collector gets to it."""

    def __init__(
        self, content: AsyncIterator[bytes], *, on_close: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self.events = content
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


async def _events(
    hub: StreamHub, subscriber: Subscriber, replayed: list[Reading]
) -> AsyncIterator[bytes]:
    """The response body: the retry hint, the replay, then live events and heartbeats,
    until the client goes, is dropped, or the server shuts down."""
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        sent = {r.event_id for r in replayed}
        for reading in replayed:
            yield sse(reading)
        last_sent = time.monotonic()
        while not hub.closing and not hub.shutting_down():
            try:
                async with asyncio.timeout(_TICK_S):
                    event = await subscriber.queue.get()
            except TimeoutError:
                if time.monotonic() - last_sent >= hub.heartbeat_s:
                    yield b": keep-alive\n\n"
                    last_sent = time.monotonic()
                continue
            if event is None:
                return
            if sent and isinstance(event, Reading) and event.event_id in sent:
                continue  # replayed already
            yield sse(event)
            last_sent = time.monotonic()
    finally:
        hub.unregister(subscriber)


@contextlib.asynccontextmanager
async def running_hub(hub: StreamHub) -> AsyncIterator[StreamHub]:
    """Run the hub's listener for the app's lifetime."""
    task = asyncio.create_task(hub.run(), name="stream-listener")
    try:
        yield hub
    finally:
        hub.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
