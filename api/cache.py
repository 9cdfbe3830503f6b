"""A micro-cache of finished read responses, in the worker's memory.

Open reads are the same few documents asked for by many clients (a dashboard's
latest values, a popular series); each says ``Cache-Control: public, max-age=N``,
promising that it may be reused for N seconds.  The worker keeps that promise
itself for at most `MAX_TTL_S`: a repeated request is answered from memory —
identity or gzip, or 304 against its ETag — before routing, validation, the
database or compression, which is what keeps the latency budget at 32 concurrent
clients on two cores (DESIGN.md).  An admin write empties it.

What is cached: GET responses of the open data (/v1 and /sta/v1.1, not admin) with
status 200 and a ``public, max-age`` Cache-Control, up to `MAX_BODY_BYTES`, keyed by
scheme, host, path and query (the documents hold absolute links).  Requests with
``Cache-Control: no-cache`` or with an ``Authorization`` header skip it.
"""

from __future__ import annotations

import gzip
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.licence import is_open_data
from api.root_path import route_path

#: longest a response is served from memory, whatever its max-age says
MAX_TTL_S = 5.0
MAX_ENTRIES = 1024
MAX_BODY_BYTES = 2 * 1024 * 1024
#: bodies shorter than this go out uncompressed (as GZipMiddleware's minimum_size)
GZIP_MIN_BYTES = 1024

_MAX_AGE = re.compile(rb"(?:^|,)\s*public\s*,\s*max-age=(\d+)|max-age=(\d+)\s*,\s*public")

Key = tuple[str, str, str, bytes]


@dataclass(slots=True)
class Entry:
    headers: list[tuple[bytes, bytes]]  # as the route sent them, without content-length
    body: bytes
    gzipped: bytes | None
    etag: bytes
    cache_control: bytes
    route: str
    expires: float


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """RFC 9110 §13.1.2 weak comparison (the same rule as `api.responses`)."""
    if if_none_match.strip() == b"*":
        return True
    opaque = etag.removeprefix(b"W/")
    return any(tag.strip().removeprefix(b"W/") == opaque for tag in if_none_match.split(b","))


class ResponseCache:
    def __init__(self) -> None:
        self.entries: OrderedDict[Key, Entry] = OrderedDict()
        self.hits = 0

    def clear(self) -> None:
        self.entries.clear()

    @staticmethod
    def key(scope: Scope) -> Key | None:
        """The request's cache key, or None when it must not use the cache."""
        if scope["method"] != "GET":
            return None
        control = _header(scope, b"cache-control")
        if control is not None and b"no-cache" in control:
            return None
        if _header(scope, b"authorization") is not None:
            # a shared cache answers no request with credentials from what it kept for
            # others (RFC 9111 §3.5): a device's owner sees its own health document
            return None
        host = _header(scope, b"host") or b""
        return (scope["scheme"], host.decode("latin-1"), scope["path"], scope["query_string"])

    def lookup(self, key: Key) -> Entry | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return entry

    def store(
        self, key: Key, headers: list[tuple[bytes, bytes]], body: bytes, route: str
    ) -> Entry | None:
        """Keep a 200 response that may be reused; None when it may not be."""
        if len(body) > MAX_BODY_BYTES:
            return None
        found = {k.lower(): v for k, v in headers}
        control = found.get(b"cache-control", b"")
        match = _MAX_AGE.search(control)
        etag = found.get(b"etag")
        if match is None or etag is None or b"content-encoding" in found:
            return None
        ttl = min(float(match.group(1) or match.group(2)), MAX_TTL_S)
        if ttl <= 0:
            return None
        kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        # compressed once here, for every client that accepts gzip until it expires
        gzipped = gzip.compress(body, 5, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
        entry = Entry(kept, body, gzipped, etag, control, route, time.monotonic() + ttl)
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > MAX_ENTRIES:
            self.entries.popitem(last=False)
        return entry

    async def send(self, entry: Entry, scope: Scope, send: Send) -> int:
        """Answer a request from the cache; returns the status sent."""
        self.hits += 1
        return await self.emit(entry, scope, send)

    async def emit(self, entry: Entry, scope: Scope, send: Send) -> int:
        """Send the entry as this request wants it: 304, gzip or identity."""
        if_none_match = _header(scope, b"if-none-match")
        if if_none_match is not None and _etag_matches(if_none_match, entry.etag):
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [(b"etag", entry.etag), (b"cache-control", entry.cache_control)],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return 304
        accept = _header(scope, b"accept-encoding") or b""
        body = entry.body
        headers = list(entry.headers)
        if entry.gzipped is not None:
            headers.append((b"vary", b"Accept-Encoding"))
            if b"gzip" in accept:
                body = entry.gzipped
                headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return 200


class CaptureForCache:
    """Innermost middleware: records cacheable 200 responses (before gzip) into the
    cache, for `api.edge.Edge` to answer repeats from."""

    def __init__(self, app: ASGIApp, *, cache: ResponseCache, route_of: Any) -> None:
        self.app = app
        self.cache = cache
        self.route_of = route_of  # scope -> route template (api.edge.RouteTemplates.of)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self.cache.key(scope) if scope["type"] == "http" else None
        path = route_path(scope) if key is not None else ""
        if key is None or not is_open_data(path) or path.startswith("/v1/admin"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        streaming = False

        async def capture(message: Message) -> None:
            nonlocal start, streaming
            if message["type"] == "http.response.start" and message["status"] == 200:
                start = message  # held until the body shows whether it can be cached
                return
            if message["type"] == "http.response.body" and start is not None:
                if message.get("more_body", False) or streaming:
                    if not streaming:  # streamed (exports): never cached, passed on
                        streaming = True
                        await send(start)
                    await send(message)
                    return
                route = self.route_of(scope)
                entry = self.cache.store(
                    key, list(start.get("headers", [])), message.get("body", b""), route
                )
                if entry is not None:
                    # sent already gzipped where accepted: gzip is done once per entry
                    await self.cache.emit(entry, scope, send)
                    return
                await send(start)
            await send(message)

        await self.app(scope, receive, capture)
