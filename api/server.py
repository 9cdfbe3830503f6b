"""Running the API: uvicorn, one worker (scale out with more processes behind a load
balancer; each is stateless apart from its in-memory rate-limit counts)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import struct
from http import HTTPStatus

import orjson
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.edge import ABORT_EXTENSION, CutOffFilter
from api.problems import PROBLEM_JSON, Problem
from api.request_limits import (
    MAX_HEADER_BYTES,
    MAX_URL_BYTES,
    headers_too_large,
    url_too_long,
)
from core.broker import DeviceAccountSync
from core.errors import SmartbyError
from core.push import PushSink
from core.settings import Settings
from db.connect import connect, database_url

log = logging.getLogger(__name__)


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    account_sync: DeviceAccountSync | None = None,
    push_sink: PushSink | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM.  What a user can fix fails first, in one line:
    no database, an unreachable one (``smartby api`` checks the port before)."""
    url = database_url(settings)
    with connect(url, application_name="smartby-api") as conn:
        conn.execute("SELECT 1")
    app = create_app(settings, url, account_sync, push_sink)
    server = uvicorn.Server(server_config(app, host=host, port=port))
    # endless responses (the live stream, `api.stream`) end when uvicorn shuts down,
    # which otherwise waits for them
    app.state.shutting_down = lambda: server.should_exit
    # Everything imported and built so far lives as long as the process: freezing it
    # takes it out of the cyclic collector's full passes, which otherwise walk every
    # module and route object while a request waits (issue 17: a tail of the p99).
    gc.collect()
    gc.freeze()
    server.run()
    if not server.started:
        raise SmartbyError(f"the API did not start on {host}:{port} (see the log above)")


def server_config(app: FastAPI, *, host: str, port: int) -> uvicorn.Config:
    """One worker on uvloop and httptools (``uvicorn[standard]``; without them asyncio
    and h11), which the latency budget counts on.

    Forwarded addresses are the app's business (`api.forwarded`, trusting only
    ``SMARTBY_API_TRUSTED_PROXIES``), so uvicorn's own proxy headers are off: they
    trust 127.0.0.1 by default, which let any local client pick its address.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        loop="auto",
        http=_http_protocol(),
        # h11 (without httptools) refuses a request head beyond this with a plain 400;
        # below it, the app's own 414 and 431 problems answer
        h11_max_incomplete_event_size=MAX_URL_BYTES + MAX_HEADER_BYTES + 1024,
        ws="none",  # no WebSocket routes
        lifespan="on",
        # request metrics are on /metrics; a log line per request costs more
        # than the request itself at the latency budget
        access_log=False,
        proxy_headers=False,
        log_level="info",
    )
    # uvicorn configured its loggers just now; the edge logs its own cut-offs
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, CutOffFilter) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(CutOffFilter())
    return config


#: how long a refused connection is read and drained before it is closed regardless
LINGER_SECONDS = 2.0


def _http_protocol() -> type[asyncio.Protocol] | str:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn without its [standard] extras
        return "h11"

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """httptools as uvicorn drives it, with bounds, problem+json errors, and a way
        for the app to abort a connection (the `ABORT_EXTENSION`).

        uvicorn's httptools protocol buffers a URL and header fields of any size before
        the app sees them (h11 has a limit, httptools none): here a request beyond
        `MAX_URL_BYTES` or `MAX_HEADER_BYTES` is refused as it arrives, with the 414 or
        431 the app would send.  And what httptools cannot parse (bytes outside
        HTTP's grammar in the request line, say) is a problem+json 400 too, instead of
        uvicorn's plain-text one.  Either way the connection is closed after it."""

        refused: Problem | None = None
        header_bytes = 0
        draining = False  # refused: what the client still sends is read and dropped

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.header_bytes = 0
            # the edge aborts a connection whose client stopped reading (`api.edge`)
            self.scope["extensions"] = {ABORT_EXTENSION: {"abort": self.reset}}

        def reset(self) -> None:
            """Close the connection with a TCP reset, at once.  A plain close would
            leave the kernel holding the unsent megabytes for a client that reads
            nothing (FIN_WAIT1, zero-window probes for minutes); SO_LINGER 0 drops
            them and tells the client (RFC 9293 §3.6)."""
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            if len(self.url) > MAX_URL_BYTES:
                self.refused = url_too_long(len(self.url))
                # httptools turns a callback's error into a parser error: send_400_response
                raise ValueError(self.refused.detail)

        def on_header(self, name: bytes, value: bytes) -> None:
            self.header_bytes += len(name) + len(value)
            if self.header_bytes > MAX_HEADER_BYTES:
                self.refused = headers_too_large(self.header_bytes)
                raise ValueError(self.refused.detail)
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            problem = self.refused or Problem(
                400, "Bad request", "the request is not valid HTTP/1.1 (RFC 9112)"
            )
            log.info("refused a request: %s", problem.detail)
            body = orjson.dumps(problem.document())
            phrase = HTTPStatus(problem.status).phrase
            head: list[bytes] = [f"HTTP/1.1 {problem.status} {phrase}\r\n".encode()]
            for name, value in self.server_state.default_headers:
                head.append(name + b": " + value + b"\r\n")
            head.append(
                f"content-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\n"
                "cache-control: no-store\r\nconnection: close\r\n\r\n".encode()
            )
            self.transport.write(b"".join(head) + body)
            self._close_lingering()

        def _close_lingering(self) -> None:
            """Close after the client could read the refusal (RFC 9112 §9.6): a
            refused request is usually still arriving (a 100 KB URL), and closing a
            socket with unread bytes makes the kernel answer with a reset, which can
            destroy the refusal in the client's buffers before it reads it.  So: send
            FIN after the answer, drop what still comes, and close when the client
            does, or after `LINGER_SECONDS`."""
            if not self.transport.can_write_eof():  # TLS: no half-close
                self.transport.close()
                return
            self.draining = True
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)

        def data_received(self, data: bytes) -> None:
            if not self.draining:
                super().data_received(data)

    return BoundedHttpToolsProtocol
