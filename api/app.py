"""The open data API: `create_app` builds the FastAPI application.

Read-only for the public under /v1 and in the SensorThings view at /sta/v1.1, with an
API key for higher limits and for the admin routes.  Requests pass, outermost first:
`api.root_path` (a path prefix, when published under one), `api.forwarded` (the
client a trusted proxy forwarded), CORS (open for reads),
`api.edge` (request limits, metrics, rate limit, licence headers, micro-cache), gzip
(not for Parquet, compressed already), then the routes.  Every error leaves
as RFC 9457 problem+json (`api.problems`); a bug or a database failure is logged
and answered with a generic message, never the exception's text.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware import Middleware
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.responses import Response

import api.routes.catalog
import api.routes.export
import api.routes.ingest
import api.routes.warnings
import api.sensorthings
import api.stream
from api.cache import CaptureForCache, ResponseCache
from api.db import make_device_pool, make_export_pool, make_pool
from api.dcat import catalogue_example
from api.device_metrics import DeviceCollector
from api.edge import ApiMetrics, Edge, RateLimits, RouteTemplates, bounded, server_error
from api.export_formats import PARQUET
from api.export_gate import EXPORT_ENCODERS, ExportGate
from api.forwarded import ForwardedFor, TrustedProxies
from api.head import HeadAsGet
from api.licence import INGEST_ROOT, NLOD_URL, is_open_data, licence_meta
from api.models import Problem as ProblemModel
from api.openapi import EXAMPLES, describe, operation_id
from api.problems import PROBLEM_JSON, Problem, problem_response
from api.root_path import RootPath, route_path
from api.routes import admin, indicators, resources, status, timeseries
from api.security import API_KEY_HEADER, parse_api_keys
from api.sensorthings.mqtt import StaPublisher
from api.stream import StreamHub, running_hub
from api.website import mount_website
from core.broker import DeviceAccountSync
from core.errors import SmartbyError
from core.push import PushSink
from core.settings import Settings
from db.connect import database_url as configured_database_url

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"

_DESCRIPTION = """\
Open environmental sensor data of {city}: air quality, energy use of municipal
buildings and road traffic, as measured by the city's sensors, quality-checked
(QARTOD flags: 1 good, 2 not evaluated, 3 suspect, 4 fail, 9 missing) and
aggregated (1 minute, 1 hour, local day).

**Licence.** The data is published under the
[Norwegian Licence for Open Government Data (NLOD) 2.0]({nlod}). Credit it as:
"{attribution}". Every response under /v1 and /sta/v1.1 says so in the `Link`
(rel="license"), `X-License` and `X-Attribution` headers, and /v1 JSON documents in
their `meta` member (GeoJSON: as foreign members).

**SensorThings.** An OGC SensorThings API v1.1 read-only view of the same data is
at /sta/v1.1, under the same licence, limits and caching.

**Limits.** Open reads are limited per client address ({anonymous}); an API key in
the `{key_header}` header lifts the limit ({keyed}). Over the limit the answer is
429 with `Retry-After`. A time range spans at most {max_days} days and a page holds
at most 10 000 rows; follow a page's `next` link (cursor pagination) for more.

**Privacy.** Traffic data is only published in aggregates of 15 minutes or more.

**Caching.** Reads carry an `ETag` and `Cache-Control`; send `If-None-Match` to get
304 when nothing changed.

**Errors** are RFC 9457 `application/problem+json` documents naming the parameter
at fault and the limit that applies.
"""


def create_app(
    settings: Settings,
    database_url: str | None = None,
    account_sync: DeviceAccountSync | None = None,
    push_sink: PushSink | None = None,
) -> FastAPI:
    """The API on the configured database (or ``database_url``); the connection pool
    opens with the app's lifespan.  ``account_sync`` brings a device's broker account
    in line after an admin route changed it (None: the broker is left alone);
    ``push_sink`` stores HTTP pushes (None: /v1/ingest answers 503)."""
    url = database_url if database_url is not None else configured_database_url(settings)
    api_keys = parse_api_keys(settings)
    limits = RateLimits.from_settings(settings)
    metrics = ApiMetrics()
    meta = licence_meta(settings.city)
    cache = ResponseCache()
    templates = RouteTemplates()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # two pools: however many exports stream, the other requests keep their own
        pool = make_pool(url)
        export_pool = make_export_pool(url, size=settings.api_export_pool_size)
        # devices proving their secret (HTTP push, a device's own health) read its hash
        # as the registrar: a few connections of their own, apart from the open reads
        device_pool = make_device_pool(app.state.admin_database_url)
        try:
            await pool.open(wait=True, timeout=15)
            await export_pool.open(wait=True, timeout=15)
            await device_pool.open(wait=False)
        except PoolTimeout:
            await device_pool.close()
            await export_pool.close()
            await pool.close()
            raise SmartbyError(
                "the API cannot reach its database (no connection in 15 s)"
            ) from None
        app.state.pool = pool
        app.state.export_pool = export_pool
        app.state.export_encoding = asyncio.Semaphore(EXPORT_ENCODERS)
        app.state.device_pool = device_pool
        try:
            if settings.api_stream_max_clients == 0 and not settings.sta_mqtt_publish:
                yield
                return
            sink = (
                StaPublisher(settings, _sta_base(settings)) if settings.sta_mqtt_publish else None
            )
            hub = StreamHub(url, pool, settings, sink=sink)
            # `api.server` says when uvicorn shuts down: open streams end then
            hub.shutting_down = getattr(app.state, "shutting_down", hub.shutting_down)
            app.state.stream = hub
            async with running_hub(hub):
                yield
        finally:
            await device_pool.close()
            await export_pool.close()
            await pool.close()

    app = FastAPI(
        title=f"smartby open data API ({settings.city})",
        version=API_VERSION,
        description=_DESCRIPTION.format(
            city=settings.city,
            nlod=NLOD_URL,
            attribution=meta["attribution"],
            anonymous=settings.api_rate_limit,
            keyed=settings.api_key_rate_limit,
            key_header=API_KEY_HEADER,
            max_days=settings.api_max_range_days,
        ),
        license_info={"name": "NLOD 2.0 (the data)", "url": NLOD_URL},
        contact={"name": settings.city, "url": f"mailto:{settings.api_contact_email}"},
        servers=[{"url": settings.api_public_url}] if settings.api_public_url else None,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # served from vendored files by `api.website`: FastAPI's own pages load a CDN
        docs_url=None,
        redoc_url=None,
        middleware=[
            # outermost: a HEAD is a GET to everything inside, its body dropped
            Middleware(HeadAsGet),
            Middleware(RootPath, root_path=settings.api_root_path),
            Middleware(
                ForwardedFor,
                proxies=TrustedProxies(
                    settings.api_trusted_proxy_networks, settings.api_forwarded_header
                ),
            ),
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "HEAD", "OPTIONS"],
                allow_headers=[API_KEY_HEADER, "If-None-Match"],
                expose_headers=["ETag", "Link", "X-License", "X-Attribution", "Retry-After"],
                max_age=3600,
            ),
            Middleware(
                Edge,
                metrics=metrics,
                limits=limits,
                api_keys=api_keys,
                city=settings.city,
                cache=cache,
                templates=templates,
                send_timeout_s=settings.api_send_timeout_s,
            ),
            Middleware(
                GZipMiddleware,
                minimum_size=1024,
                compresslevel=5,
                # Parquet pages are zstd-compressed: gzip would cost CPU for nothing
                exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, PARQUET),
            ),
            Middleware(CaptureForCache, cache=cache, route_of=templates.of),
        ],
    )
    app.state.settings = settings
    app.state.database_url = url
    # the admin routes write the registry as their own role (smartby_registrar)
    admin_url = settings.admin_database_url
    app.state.admin_database_url = admin_url.get_secret_value() if admin_url else url
    app.state.account_sync = account_sync
    app.state.push_sink = push_sink
    app.state.api_keys = api_keys
    app.state.meta = meta
    app.state.metrics = metrics
    app.state.cache = cache
    app.state.export_gate = ExportGate(
        max_total=settings.api_export_max_total, max_per_client=settings.api_export_max_per_client
    )
    _register_error_handlers(app, templates)

    app.include_router(resources.router, prefix="/v1")
    app.include_router(timeseries.router, prefix="/v1")
    app.include_router(indicators.router, prefix="/v1")
    app.include_router(admin.router, prefix="/v1")
    app.include_router(api.routes.export.router, prefix="/v1")
    app.include_router(api.routes.catalog.router, prefix="/v1")
    app.include_router(api.routes.warnings.router, prefix="/v1")
    app.include_router(status.router, prefix="/v1")
    app.include_router(api.routes.ingest.router, prefix="/v1")
    app.include_router(api.stream.router, prefix="/v1")
    app.include_router(api.sensorthings.router, prefix="/sta/v1.1")
    mount_website(app, settings)

    devices = DeviceCollector()
    metrics.registry.register(devices)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        # the devices' freshness as of this scrape (`api.device_metrics`)
        await devices.refresh(request.app.state.pool)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(
                _document_problems(
                    get_openapi(
                        title=app.title,
                        version=app.version,
                        openapi_version=app.openapi_version,
                        description=app.description,
                        routes=app.routes,
                        license_info=app.license_info,
                        contact=app.contact,
                        servers=app.servers,
                    )
                ),
                {**EXAMPLES, "getCatalog": {"application/ld+json": catalogue_example(settings)}},
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _sta_base(settings: Settings) -> str:
    """The SensorThings service root for links in published Observations."""
    public = settings.api_public_url or f"http://{settings.api_host}:{settings.api_port}"
    return public.rstrip("/") + "/sta/v1.1"


# ---------------------------------------------------------------------- errors


def _validation_problem(exc: RequestValidationError) -> Problem:
    """400 for a bad query, path or header parameter; 422 for a bad request body.
    The detail names the parameter and says what was wrong (the limit, if any)."""
    errors = []
    for error in exc.errors():
        where, *rest = error.get("loc", ("request",))
        name = ".".join(str(part) for part in rest)
        errors.append({"in": str(where), "parameter": name, "message": str(error.get("msg", ""))})
    first = errors[0] if errors else {"in": "request", "parameter": "", "message": "invalid"}
    if first["in"] == "body":
        what = f"request body field {first['parameter']!r}" if first["parameter"] else "body"
        return Problem(422, "Invalid request body", f"{what}: {first['message']}", errors=errors)
    return Problem(
        400,
        "Bad request parameter",
        f"{first['in']} parameter {first['parameter']!r}: {first['message']}",
        parameter=first["parameter"],
        errors=errors,
    )


def _condition(exc: psycopg.DataError) -> str:
    """The condition's name in words, e.g. "numeric value out of range" for SQLSTATE
    22003 (psycopg names its error classes after PostgreSQL's condition names)."""
    name = type(exc).__name__
    if name == "DataError" or exc.sqlstate is None:
        return "invalid value"
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


def _register_error_handlers(app: FastAPI, templates: RouteTemplates) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(_validation_problem(exc), request.url.path)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = HTTPStatus(exc.status_code).phrase
        detail = f"no resource at {request.url.path} (see /v1 for what there is)"
        # one spelling per header: Starlette's 405 says "Allow", and a second "allow"
        # beside it made two Allow headers
        headers = {name.lower(): value for name, value in (exc.headers or {}).items()}
        if exc.status_code == 405:
            named = {m.strip() for m in headers.get("allow", "").split(",") if m.strip()}
            allowed = templates.allowed(request.app, route_path(request.scope)) | named
            if "GET" in allowed:
                allowed = allowed | {"HEAD"}  # every GET route answers HEAD (api.head)
            if allowed:
                headers["allow"] = ", ".join(sorted(allowed))
            detail = f"{request.method} is not allowed here; use {headers.get('allow', 'GET')}"
        elif exc.status_code != 404:
            detail = str(exc.detail)
        problem = Problem(exc.status_code, title, detail, headers=headers)
        return problem_response(problem, request.url.path)

    async def on_database_unavailable(request: Request, exc: Exception) -> Response:
        # An outage, not a bug: say so briefly in the log, and never send its text.
        log.warning("database unavailable for %s: %s", request.url.path, type(exc).__name__)
        problem = Problem(
            503,
            "Service unavailable",
            "the database is not reachable just now; please retry shortly",
            headers={"retry-after": "5"},
        )
        return problem_response(problem, request.url.path)

    async def on_data_error(request: Request, exc: Exception) -> Response:
        # A value of this request the database cannot compute with (an overflow, a
        # division by zero in a $filter, a date beyond its range): the client's to fix.
        # The detail names the condition (SQLSTATE class 22), never the server's text.
        assert isinstance(exc, psycopg.DataError)
        condition = _condition(exc)
        log.info("refused %s: %s", request.url.path, condition)
        problem = Problem(
            400,
            "Bad request parameter",
            f"a value in this request is outside what the database can compute ({condition})",
        )
        return problem_response(problem, request.url.path)

    async def on_error(request: Request, exc: Exception) -> Response:
        # Only reached for errors outside the Edge middleware, which answers the rest.
        log.error("unhandled error in %s", request.url.path, exc_info=bounded(exc))
        return problem_response(server_error(), request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(psycopg.OperationalError, on_database_unavailable)
    app.add_exception_handler(PoolTimeout, on_database_unavailable)
    app.add_exception_handler(psycopg.DataError, on_data_error)
    app.add_exception_handler(Exception, on_error)


# ---------------------------------------------------------------------- OpenAPI

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
    }
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return response


def _document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Describe the problem+json answers every route can give: FastAPI documents only
    its own 422 shape, which this API does not send for parameters."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = ProblemModel.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            has_body = "requestBody" in operation
            if not path.startswith(INGEST_ROOT):  # the push routes describe their own 422
                responses.pop("422", None)
            if has_body:
                responses.setdefault("422", _problem("The request body is not valid."))
            if operation.get("parameters") or has_body:
                responses["400"] = _problem(
                    "A parameter is not valid or beyond a limit; the detail names it."
                )
            if "{" in path and not path.startswith(INGEST_ROOT):
                # (a push for an unknown device is 401, never 404: `api.device_auth`)
                responses["404"] = _problem("No such resource.")
            if is_open_data(path):
                responses["401"] = _problem(
                    f"The {API_KEY_HEADER} header holds no valid key (or the route needs one)."
                )
                responses["429"] = _problem(
                    "Too many requests from this client.",
                    **{"Retry-After": "Seconds to wait before retrying."},
                )
                if method == "get" and not path.startswith("/v1/admin"):
                    responses.setdefault(
                        "304", {"description": "Not modified: If-None-Match named this version."}
                    )
                if path.startswith("/v1/admin/devices") and method == "post" and has_body:
                    responses["409"] = _problem("A device with this id exists.")
            responses["503"] = _problem(
                "The database is not reachable just now.", **{"Retry-After": "Seconds."}
            )
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    # a device's own secret: HTTP push and its health (`api.device_auth`)
    schemes = schema["components"].setdefault("securitySchemes", {})
    schemes["deviceBasic"] = {
        "type": "http",
        "scheme": "basic",
        "description": "The device's id as user name, its secret as password (RFC 7617).",
    }
    schemes["deviceBearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The device's secret as a bearer token (RFC 6750 §2.1).",
    }
    return schema
