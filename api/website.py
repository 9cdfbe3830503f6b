"""The website on the API: `web`'s pages and static files, /docs and /redoc served
from vendored files (they work offline), and the in-process reader through which
the pages get every number from the /v1 routes themselves."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message

from core.settings import Settings
from web.assets import asset_url, vendor_url
from web.site import Website
from web.source import DataUnavailable, DocumentNotFound, Params


class InProcessReader:
    """Answers a /v1 request by calling the app's routes directly, in the same event
    loop: no socket, no rate limit (the page request was the client's), no
    micro-cache, no compression; the routes' own exception handlers still turn
    problems into their status codes."""

    def __init__(self, routes: ASGIApp, request: Request) -> None:
        self.routes = routes
        self.request = request

    async def get(self, path: str, params: Params | None = None) -> Any:
        query = urlencode(_pairs(params or {})).encode()
        outer = self.request.scope
        root: str = outer.get("root_path", "")
        scope = {
            "type": "http",
            "asgi": outer.get("asgi", {"version": "3.0"}),
            "http_version": "1.1",
            "method": "GET",
            "scheme": outer.get("scheme", "http"),
            "server": outer.get("server"),
            "client": outer.get("client"),
            # the full path, as `api.root_path` makes it: links in the documents are
            # built from it and from the root path
            "root_path": root,
            "path": root + path,
            "raw_path": (root + path).encode(),
            "query_string": query,
            # the host makes the documents' absolute links the site's own
            "headers": [(k, v) for k, v in outer.get("headers", []) if k == b"host"],
            "app": outer.get("app"),
            "state": outer.get("state", {}),
        }
        status = 500
        body = bytearray()

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.routes(scope, receive, send)
        if status == 404:
            raise DocumentNotFound(path)
        if status != 200:
            raise DataUnavailable(f"{path} answered {status}: {bytes(body[:300])!r}")
        return orjson.loads(body)


def _pairs(params: Params) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, str | int):
            pairs.append((key, str(value)))
        else:
            pairs.extend((key, str(v)) for v in value)
    return pairs


#: the API docs pages load nothing from elsewhere: ReDoc's menu would fetch its maker's
#: logo from a CDN, which this policy stops in the browser (their own inline set-up
#: scripts and styles stay allowed; ReDoc's search runs in a worker made from a blob)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)


def _same_site_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["content-security-policy"] = DOCS_POLICY
    return page


def _routes_of(app: FastAPI) -> ASGIApp:
    """The app's routes with its exception handlers (what FastAPI's middleware stack
    puts around the router, without the user middleware: edge, gzip, cache)."""
    handlers = {k: v for k, v in app.exception_handlers.items() if k not in (500, Exception)}
    return ExceptionMiddleware(AsyncExitStackMiddleware(app.router), handlers=handlers)


def mount_website(app: FastAPI, settings: Settings) -> None:
    """Serve the website at / and /static, and the API docs at /docs and /redoc."""
    routes: ASGIApp | None = None

    def reader(request: Request) -> InProcessReader:
        nonlocal routes
        if routes is None:  # built on first use: every handler is registered by then
            routes = _routes_of(app)
        return InProcessReader(routes, request)

    site = Website(settings, reader)
    app.include_router(site.router)
    app.mount("/static", site.static, name="static")
    favicon = asset_url("favicon.svg")

    # Under a path prefix (`api.root_path`) every URL these pages load carries it:
    # the browser resolves "/openapi.json" against the host, not the prefix.

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = root_of(request)
        return _same_site_only(
            get_swagger_ui_html(
                openapi_url=root + "/openapi.json",
                title=f"{app.title} – Swagger UI",
                swagger_js_url=root + vendor_url("swagger-ui-dist", "swagger-ui-bundle.js"),
                swagger_css_url=root + vendor_url("swagger-ui-dist", "swagger-ui.css"),
                swagger_favicon_url=root + favicon,
                # no badge from the public validator service: nothing leaves the site
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = root_of(request)
        return _same_site_only(
            get_redoc_html(
                openapi_url=root + "/openapi.json",
                title=f"{app.title} – ReDoc",
                redoc_js_url=root + vendor_url("redoc", "redoc.standalone.js"),
                redoc_favicon_url=root + favicon,
                with_google_fonts=False,
            )
        )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon_ico(request: Request) -> Response:
        # browsers ask for it whatever the page says; the SVG is the site's icon
        return Response(status_code=308, headers={"location": root_of(request) + favicon})


def root_of(request: Request) -> str:
    """The path prefix the site is published under ("" at the host's root)."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")
