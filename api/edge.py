"""What every request passes through before the routes: request metrics and, for the
open data (/v1 and the SensorThings view at /sta/v1.1), the per-client rate limit,
the licence headers and answers from the micro-cache.

One plain ASGI middleware rather than three `BaseHTTPMiddleware`s: those cost a task
and a stream per request each, and the latency budget is tight (DESIGN.md).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.cache import ResponseCache
from api.licence import is_open_data, licence_headers
from api.problems import Problem, problem_response
from api.security import API_KEY_HEADER, invalid_key, key_name
from core.settings import Settings, SettingsError

log = logging.getLogger(__name__)

_API_KEY = API_KEY_HEADER.lower().encode()
#: route labels of requests that matched no route, and of requests refused before
#: routing (rate limit, invalid key)
UNMATCHED = "<unmatched>"
REFUSED = "<refused>"


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


def _limit(setting: str, value: str) -> RateLimitItem:
    try:
        return parse(value)
    except ValueError:
        raise SettingsError(f"{setting}: {value!r} is not a rate like 120/minute") from None


@dataclass(slots=True)
class RateLimits:
    """Moving-window limits in memory: per client address for open reads, per API key
    for clients that present one (one worker's memory; several replicas behind a load
    balancer each count on their own)."""

    anonymous: RateLimitItem
    keyed: RateLimitItem
    limiter: MovingWindowRateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            _limit("SMARTBY_API_RATE_LIMIT", settings.api_rate_limit),
            _limit("SMARTBY_API_KEY_RATE_LIMIT", settings.api_key_rate_limit),
            MovingWindowRateLimiter(MemoryStorage()),
        )

    async def check(self, item: RateLimitItem, identity: str) -> Problem | None:
        """None when the request may go ahead; else the 429 to send."""
        if await self.limiter.hit(item, identity):
            return None
        stats = await self.limiter.get_window_stats(item, identity)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
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
        template = self.match(scope["app"], scope["path"])
        return template or str(getattr(scope["route"], "path", UNMATCHED))

    def allowed(self, app: Any, path: str) -> set[str]:
        """Every method the path's routes take (a 405's Allow header: Starlette
        names only the first route that matched the path)."""
        template = self.match(app, path)
        return self.methods.get(template, set()) if template is not None else set()


class Edge:
    """Metrics for every request; for the open data (`api.licence.is_open_data`) the
    rate limit, the licence headers, and answers from the micro-cache (`api.cache`)."""

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
    ) -> None:
        self.app = app
        self.cache = cache
        self.metrics = metrics
        self.limits = limits
        self.api_keys = api_keys
        self.licence = licence_headers(city)
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        public = is_open_data(path)
        status = 500
        started_response = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                if public:
                    message["headers"] = [*message.get("headers", ()), *self.licence]
            await send(message)

        template: str | None = None
        try:
            problem = await self._admit(scope) if public else None
            key = self.cache.key(scope) if public and problem is None else None
            entry = self.cache.lookup(key) if key is not None else None
            if problem is not None:
                template = REFUSED
                await problem_response(problem, path)(scope, receive, send_with_headers)
            elif entry is not None:
                template = entry.route
                await self.cache.send(entry, scope, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception:
            # The routes' own errors are problems already; this is a bug.  Log it with
            # its traceback and give the client a generic 500 (never the exception text).
            log.exception("unhandled error in %s %s", scope["method"], path)
            if started_response:
                raise
            status = 500
            await problem_response(server_error(), path)(scope, receive, send_with_headers)
        finally:
            if template is None:
                template = self.templates.of(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.duration.labels(method, template).observe(time.perf_counter() - started)

    async def _admit(self, scope: Scope) -> Problem | None:
        """The rate limit: per API key when a valid one is presented, else per client
        address; a key that is presented but wrong is refused outright."""
        if scope["method"] == "OPTIONS":  # CORS preflight: no data, nothing to count
            return None
        presented = next((v for k, v in scope["headers"] if k == _API_KEY), None)
        if presented is not None:
            name = key_name(self.api_keys, presented.decode("latin-1"))
            if name is None:
                return invalid_key()
            return await self.limits.check(self.limits.keyed, f"key:{name}")
        client = scope.get("client")
        address = client[0] if client else "unknown"
        return await self.limits.check(self.limits.anonymous, f"addr:{address}")
