"""What every request passes through before the routes: the request limits
(`api.request_limits`), request metrics, a deadline on every piece of the response
a client must accept and, for the open data (/v1 and the SensorThings view at
/sta/v1.1), the per-client rate limit, the licence headers and answers from the
micro-cache (the licence headers also on the documents that describe the data,
`api.licence.carries_licence`).  Paths are read as the routes see them, without a
root path (`api.root_path`).

One plain ASGI middleware rather than three `BaseHTTPMiddleware`s: those cost a task
and a stream per request each, and the latency budget is tight (DESIGN.md).

The client a limit counts is an API key's name when a valid key is presented, else
the address (the one a trusted proxy forwarded, `api.forwarded`; an IPv6 client by
its /64, which one subscriber gets whole, RFC 6177).  A wrong key counts against the
address like any other request, so guessing keys runs into the same 429.

A client that accepts nothing of a response for ``SMARTBY_API_SEND_TIMEOUT_S`` is
cut off: the connection is reset mid-response (through the server's
`ABORT_EXTENSION`, `api.server`), so a cut export can never look complete, and the
export slot it held goes back (`api.export_gate`).  Responses are handed to the
server in pieces of at most `SEND_PIECE_BYTES`, so the deadline asks for that much
progress, not for a whole page of an export.  A cut is one warning line (under a
server without the extension, uvicorn's error line for the unfinished response is
filtered out, `CutOffFilter`, since the edge has said why).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any

import psycopg
from limits import RateLimitItem, parse
from prometheus_client import CollectorRegistry, Counter, Histogram
from psycopg_pool import PoolTimeout
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.cache import ResponseCache
from api.licence import carries_licence, is_open_data, licence_headers
from api.problems import Problem, problem_response
from api.request_limits import refusal
from api.root_path import route_path
from api.security import API_KEY_HEADER, invalid_key, key_name
from core.settings import Settings, SettingsError

log = logging.getLogger(__name__)

_API_KEY = API_KEY_HEADER.lower().encode()
#: route labels of requests that matched no route, and of requests refused before
#: routing (rate limit, invalid key)
UNMATCHED = "<unmatched>"
REFUSED = "<refused>"


#: the most of a response body handed to the server in one piece (see the docstring)
SEND_PIECE_BYTES = 64 * 1024
#: frames of a logged traceback kept, innermost first: enough to find a bug, and a
#: RecursionError's thousand frames do not fill the log
TRACEBACK_FRAMES = 30
#: uvicorn's words for a response the app left unfinished (uvicorn/protocols/http)
_UNFINISHED = frozenset(
    {
        "ASGI callable returned without completing response.",
        "ASGI callable returned without starting response.",
    }
)

_cut_off: ContextVar[bool] = ContextVar("smartby_api_cut_off", default=False)
#: the ASGI scope extension through which the server (`api.server`) lets the edge
#: abort a connection: ``scope["extensions"][ABORT_EXTENSION]["abort"]()``
ABORT_EXTENSION = "smartby.abort"


class ClientStalled(Exception):
    """The client accepted nothing of the response within the send timeout."""


class CutOffFilter(logging.Filter):
    """Drops uvicorn's error line for an unfinished response when the edge cut it
    off on purpose and logged why (the flag lives in the request task's context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg in _UNFINISHED and _cut_off.get())


def bounded(exc: BaseException, frames: int = TRACEBACK_FRAMES) -> BaseException:
    """``exc`` with each traceback of its chain cut to its innermost ``frames``, for
    logging (what raised it is kept; the dozens of middleware frames above are not)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        depth = 0
        walker = tb
        while walker is not None:
            depth += 1
            walker = walker.tb_next
        for _ in range(depth - frames):
            assert tb is not None
            tb = tb.tb_next
        current.__traceback__ = tb
        current = current.__cause__ or current.__context__
    return exc


def address_identity(host: str) -> str:
    """The rate-limit identity of a client address: the address, or for IPv6 its /64
    (a subscriber's whole prefix: otherwise each of its 2^64 addresses would be a new
    client)."""
    try:
        address = ip_address(host)
    except ValueError:
        return "addr:" + host[:64]
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return f"addr:{address.ipv4_mapped}"
        return f"addr:{ip_network((address, 64), strict=False)}"
    return f"addr:{address}"


def server_error() -> Problem:
    """What a client sees of a bug: no exception text, no database message."""
    return Problem(
        500,
        "Internal server error",
        "the server failed to answer this request; the error is logged, please try again "
        "later or report it",
    )


class ApiMetrics:
    """Prometheus metrics of one app, in a registry of its own (tests build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "smartby_api_requests",
            "API requests by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "smartby_api_request_duration_seconds",
            "Time to the end of the response body, by method and route template.",
            ("method", "route"),
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=self.registry,
        )
        self.cut_off = Counter(
            "smartby_api_responses_cut_off",
            "Responses cut off mid-way: the client read nothing for the send timeout, or "
            "the database failed after the status was sent.",
            ("route", "reason"),
            registry=self.registry,
        )


def _limit(setting: str, value: str) -> RateLimitItem:
    try:
        return parse(value)
    except ValueError:
        raise SettingsError(f"{setting}: {value!r} is not a rate like 120/minute") from None


class MovingWindows:
    """Moving-window counts in this worker's memory: at most ``amount`` hits of one
    client in any window of the limit's length (the algorithm of `limits`'
    MovingWindowRateLimiter).  Its async memory storage expired entries in a task
    that handed every client's list to a worker thread on each sweep, one sweep
    after another under load, and added each hit at the front of a list: a thread
    hand-off and GIL waits behind every request (issue 17).  Here each client has a
    deque of its hits' times, trimmed as it is read, and clients gone quiet are
    dropped by a sweep at most once a window."""

    def __init__(self) -> None:
        self.hits: dict[tuple[str, str], deque[float]] = {}
        self.window_of: dict[str, float] = {}  # each limit's window, seconds
        self.next_sweep = 0.0

    def hit(self, item: RateLimitItem, identity: str, now: float) -> float | None:
        """Counts the hit and returns None, or the seconds until one is allowed."""
        window = float(item.get_expiry())
        limit = str(item)
        if limit not in self.window_of:
            self.window_of[limit] = window
            self.next_sweep = min(self.next_sweep, now + window)
        if now >= self.next_sweep:
            self._sweep(now)
        key = (limit, identity)
        hits = self.hits.get(key)
        if hits is None:
            hits = self.hits[key] = deque()
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= item.amount:
            # the window moves on when the oldest hit in it leaves
            return hits[0] + window - now
        hits.append(now)
        return None

    def _sweep(self, now: float) -> None:
        self.hits = {
            key: hits
            for key, hits in self.hits.items()
            if hits and hits[-1] > now - self.window_of[key[0]]
        }
        self.next_sweep = now + min(self.window_of.values())


@dataclass(slots=True)
class RateLimits:
    """Moving-window limits in memory: per client address for open reads, per API key
    for clients that present one (one worker's memory; several replicas behind a load
    balancer each count on their own)."""

    anonymous: RateLimitItem
    keyed: RateLimitItem
    windows: MovingWindows

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            _limit("SMARTBY_API_RATE_LIMIT", settings.api_rate_limit),
            _limit("SMARTBY_API_KEY_RATE_LIMIT", settings.api_key_rate_limit),
            MovingWindows(),
        )

    async def check(self, item: RateLimitItem, identity: str) -> Problem | None:
        """None when the request may go ahead; else the 429 to send."""
        wait_s = self.windows.hit(item, identity, time.monotonic())
        if wait_s is None:
            return None
        retry_after = max(1, math.ceil(wait_s))
        per = f"{item.amount} requests per {item.multiples} {item.GRANULARITY.name}"
        hint = "" if identity.startswith("key:") else "; an API key lifts the limit"
        return Problem(
            429,
            "Too many requests",
            f"more than {per} from this client; retry after {retry_after} s{hint}",
            headers={"retry-after": str(retry_after)},
            limit=str(item),
            retry_after_s=retry_after,
        )


class RouteTemplates:
    """The route template a request path matched ("/v1/sites/{site_id}"), for metric
    labels that stay few whatever the ids.  Read off the app's OpenAPI paths and
    top-level routes once, on first use (FastAPI keeps included routers' prefixes out
    of the matched route object)."""

    def __init__(self) -> None:
        self.patterns: list[tuple[re.Pattern[str], str]] | None = None
        self.methods: dict[str, set[str]] = {}

    def _build(self, app: Any) -> list[tuple[re.Pattern[str], str]]:
        paths: dict[str, Any] = app.openapi().get("paths", {})
        for template, operations in paths.items():
            self.methods[template] = {method.upper() for method in operations}
        templates = list(paths)
        for route in app.routes:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                templates.append(path)
                self.methods.setdefault(path, set()).update(getattr(route, "methods", ()) or ())
        return [(compile_path(t)[0], t) for t in dict.fromkeys(templates)]

    def match(self, app: Any, path: str) -> str | None:
        if self.patterns is None:
            self.patterns = self._build(app)
        for pattern, template in self.patterns:
            if pattern.match(path):
                return template
        return None

    def of(self, scope: Scope) -> str:
        if scope.get("route") is None or "app" not in scope:
            return UNMATCHED
        template = self.match(scope["app"], route_path(scope))
        return template or str(getattr(scope["route"], "path", UNMATCHED))

    def allowed(self, app: Any, path: str) -> set[str]:
        """Every method the path's routes take (a 405's Allow header: Starlette
        names only the first route that matched the path)."""
        template = self.match(app, path)
        return self.methods.get(template, set()) if template is not None else set()


class Edge:
    """Request limits and metrics for every request; for the open data
    (`api.licence.is_open_data`) the rate limit, the licence headers, and answers from
    the micro-cache (`api.cache`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ApiMetrics,
        limits: RateLimits,
        api_keys: dict[str, str],
        city: str,
        cache: ResponseCache,
        templates: RouteTemplates,
        send_timeout_s: float,
    ) -> None:
        self.app = app
        self.cache = cache
        self.metrics = metrics
        self.limits = limits
        self.api_keys = api_keys
        self.licence = licence_headers(city)
        self.templates = templates
        self.send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = route_path(scope)
        public = is_open_data(path)
        licensed = carries_licence(path)
        status = 500
        started_response = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                if licensed:
                    message["headers"] = [*message.get("headers", ()), *self.licence]
            await self._send(send, message)

        template: str | None = None
        try:
            problem = refusal(scope)
            if problem is None and public:
                problem = await self._admit(scope)
            key = self.cache.key(scope) if public and problem is None else None
            entry = self.cache.lookup(key) if key is not None else None
            if problem is not None:
                template = REFUSED
                await problem_response(problem, scope["path"])(scope, receive, send_with_headers)
            elif entry is not None:
                template = entry.route
                await self.cache.send(entry, scope, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if template is None:
                template = self.templates.of(scope)
            if started_response or isinstance(exc, ClientStalled):
                self._cut(scope, template, exc)
                return
            # The routes' own errors are problems already; this is a bug.  Log it with
            # its traceback and give the client a generic 500 (never the exception text).
            log.error("unhandled error in %s %s", scope["method"], path, exc_info=bounded(exc))
            status = 500
            await problem_response(server_error(), scope["path"])(scope, receive, send_with_headers)
        finally:
            if template is None:
                template = self.templates.of(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.duration.labels(method, template).observe(time.perf_counter() - started)

    async def _send(self, send: Send, message: Message) -> None:
        """Hand ``message`` to the server in pieces of at most `SEND_PIECE_BYTES`, each
        within the send timeout."""
        body: bytes = message.get("body", b"")
        if message["type"] != "http.response.body" or len(body) <= SEND_PIECE_BYTES:
            await self._send_within(send, message)
            return
        more = message.get("more_body", False)
        for offset in range(0, len(body), SEND_PIECE_BYTES):
            piece = body[offset : offset + SEND_PIECE_BYTES]
            last = offset + SEND_PIECE_BYTES >= len(body)
            await self._send_within(
                send, {"type": "http.response.body", "body": piece, "more_body": more or not last}
            )

    async def _send_within(self, send: Send, message: Message) -> None:
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await send(message)
        except TimeoutError:
            raise ClientStalled from None

    def _cut(self, scope: Scope, template: str, exc: Exception) -> None:
        """End a response whose status is sent already: log why in one line (a bug with
        its traceback), and leave it unfinished, so that the client sees a cut, never
        a complete-looking file.  The connection is aborted where the server offers
        it: a graceful close would wait, buffers and socket held, for a client that
        does not read to take what was sent."""
        _cut_off.set(True)
        abort = scope.get("extensions", {}).get(ABORT_EXTENSION, {}).get("abort")
        if abort is not None:
            abort()
        client = scope.get("client")
        who = client[0] if client else "unknown"
        where = f"{scope['method']} {scope['path']} to {who}"
        cause: BaseException | None = exc
        while cause is not None and not isinstance(
            cause, ClientStalled | psycopg.OperationalError | PoolTimeout
        ):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ClientStalled):
            reason = "stalled"
            log.warning("cut off %s: the client read nothing for %g s", where, self.send_timeout_s)
        elif cause is not None:
            reason = "database"
            log.warning("cut off %s: the database failed (%s)", where, type(cause).__name__)
        else:
            reason = "error"
            log.error("cut off %s by an unhandled error", where, exc_info=bounded(exc))
        self.metrics.cut_off.labels(template, reason).inc()

    async def _admit(self, scope: Scope) -> Problem | None:
        """The rate limit: per API key when a valid one is presented, else per client
        address.  A key that is presented but wrong counts against the address, and is
        refused with 401 while the address is within its limit (429 after).  Records
        who the client is in the scope's state (`api.export_gate.client_of`)."""
        client = scope.get("client")
        identity = address_identity(str(client[0]) if client else "unknown")
        presented = next((v for k, v in scope["headers"] if k == _API_KEY), None)
        name = None
        if presented is not None:
            name = key_name(self.api_keys, presented.decode("latin-1"))
        if name is not None:
            identity = f"key:{name}"
        scope.setdefault("state", {})["client"] = identity
        if scope["method"] == "OPTIONS":  # CORS preflight: no data, nothing to count
            return None
        if name is not None:
            return await self.limits.check(self.limits.keyed, identity)
        limited = await self.limits.check(self.limits.anonymous, identity)
        if limited is None and presented is not None:
            return invalid_key()
        return limited
