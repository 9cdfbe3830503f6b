"""The website: its routes, its templates in two languages, and what every page
shares (the header, the language switch, the licence in the footer, the security
headers).  `api` mounts it (`api.website`); the pages' handlers are in
``web/pages/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from core.settings import Settings
from web.assets import StaticAssets, asset_url, vendor_url
from web.formatting import Formats
from web.i18n import COOKIE, LANGUAGES, N_, Language, as_language, choose, translations
from web.source import ApiReader, DataUnavailable, DocumentNotFound, ReaderFactory

TEMPLATES = jinja2.PackageLoader("web", "templates")
#: how long a page may be reused: its data changes every minute at most
PAGE_MAX_AGE = 60

#: the header's links: (path, label), and the path prefixes that count as "here"
NAV: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/", N_("Air now"), ("/stations/",)),
    ("/energy", N_("Energy"), ("/energy/",)),
    ("/traffic", N_("Traffic"), ("/traffic/",)),
    ("/data", N_("Open data"), ("/data/",)),
    ("/devices", N_("Devices"), ("/devices/",)),
    ("/status", N_("Status"), ()),
)
LANGUAGE_NAMES: dict[Language, str] = {"nb": "Norsk (bokmål)", "en": "English"}


@dataclass(slots=True)
class PageContext:
    """One page request: its language, its formats, and its reader of /v1."""

    request: Request
    website: Website
    language: Language
    reader: ApiReader
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    set_language_cookie: bool = False

    @property
    def settings(self) -> Settings:
        return self.website.settings

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    @property
    def formats(self) -> Formats:
        return Formats(self.language, self.zone)

    def gettext(self, message: str) -> str:
        return translations(self.language).gettext(message)

    def render(self, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        return self.website.render(self, template, status=status, **values)


Handler = Callable[[PageContext], Awaitable[Response]]


def _environment(language: Language) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=TEMPLATES,
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    environment.globals.update(asset=asset_url, vendor=vendor_url, lang=language)
    return environment


def _tile_origin(template: str) -> str:
    parts = urlsplit(template)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""


class Website:
    """The pages and static files of the site, for `api` to mount."""

    def __init__(self, settings: Settings, read: ReaderFactory) -> None:
        from web.pages import ROUTES  # the pages import this module for PageContext

        self.settings = settings
        self.read = read
        self.environments = {language: _environment(language) for language in LANGUAGES}
        self.router = APIRouter(include_in_schema=False)
        self.static = StaticAssets()
        tiles = _tile_origin(settings.map_tiles)
        self.security_headers = {
            # everything from this site; map tiles from the configured server only
            "content-security-policy": (
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
                f" img-src 'self' data: {tiles}".rstrip()
                + "; connect-src 'self'; frame-ancestors 'none'; base-uri 'self';"
                " form-action 'self'"
            ),
            "x-content-type-options": "nosniff",
            "referrer-policy": "same-origin",
        }
        for path, handler in ROUTES:
            self.router.add_api_route(
                path, self._endpoint(handler), methods=["GET"], response_class=HTMLResponse
            )

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            chosen = request.query_params.get("lang")
            language = choose(
                chosen, request.cookies.get(COOKIE), request.headers.get("accept-language")
            )
            context = PageContext(
                request,
                self,
                language,
                self.read(request),
                set_language_cookie=as_language(chosen) is not None,
            )
            try:
                response = await handler(context)
            except DocumentNotFound:
                response = self.render(context, "error.html", status=404, problem="not_found")
            except DataUnavailable:
                response = self.render(context, "error.html", status=503, problem="unavailable")
            return response

        endpoint.__name__ = handler.__name__
        return endpoint

    def render(
        self, context: PageContext, template: str, *, status: int = 200, **values: Any
    ) -> HTMLResponse:
        """The page, in the request's language, with the headers every page has."""
        request = context.request
        other: Language = "en" if context.language == "nb" else "nb"
        query = {k: v for k, v in request.query_params.items() if k != "lang"}
        query["lang"] = other
        # the path prefix the site is published under, before every link
        # (SMARTBY_API_ROOT_PATH, `api.root_path`): the full path carries it too
        root: str = request.scope.get("root_path", "").rstrip("/")
        path = request.url.path
        here = path[len(root) :] if root and path.startswith(root) else path
        nav = [
            {
                "href": root + href,
                "label": context.gettext(label),
                "current": here == href or here.startswith(prefixes),
            }
            for href, label, prefixes in NAV
        ]
        html = (
            self.environments[context.language]
            .get_template(template)
            .render(
                fmt=context.formats,
                now=context.now,
                city=self.settings.city,
                nav=nav,
                path=path,
                other_language=other,
                other_language_name=LANGUAGE_NAMES[other],
                switch_url=f"{path}?{urlencode(query)}",
                settings=self.settings,
                root=root,
                asset=lambda name: root + asset_url(name),
                vendor=lambda package, file: root + vendor_url(package, file),
                **values,
            )
        )
        headers = {
            **self.security_headers,
            "cache-control": f"public, max-age={PAGE_MAX_AGE}" if status == 200 else "no-store",
            "vary": "Accept-Language, Cookie",
            "content-language": context.language,
        }
        response = HTMLResponse(html, status_code=status, headers=headers)
        if context.set_language_cookie:
            response.set_cookie(
                COOKIE, context.language, max_age=365 * 86400, samesite="lax", httponly=True
            )
        return response
