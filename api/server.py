"""Running the API: uvicorn, one worker (scale out with more processes behind a load
balancer; each is stateless apart from its in-memory rate-limit counts)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from core.errors import SmartbyError
from core.settings import Settings
from db.connect import connect, database_url


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM.  What a user can fix fails first, in one line:
    no database, an unreachable one (``smartby api`` checks the port before)."""
    url = database_url(settings)
    with connect(url, application_name="smartby-api") as conn:
        conn.execute("SELECT 1")
    server = uvicorn.Server(server_config(create_app(settings, url), host=host, port=port))
    server.run()
    if not server.started:
        raise SmartbyError(f"the API did not start on {host}:{port} (see the log above)")


def server_config(app: FastAPI, *, host: str, port: int) -> uvicorn.Config:
    """One worker on uvloop and httptools (``uvicorn[standard]``; "auto" falls back to
    asyncio and h11 where they are missing), which the latency budget counts on."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        loop="auto",
        http="auto",
        ws="none",  # no WebSocket routes
        lifespan="on",
        # request metrics are on /metrics; a log line per request costs more
        # than the request itself at the latency budget
        access_log=False,
        proxy_headers=True,
        log_level="info",
    )
