"""Read responses: JSON bytes with an ETag and Cache-Control, and 304 when unchanged.

Routes build plain dicts and lists and return `read_response`, which serialises
them once with orjson (datetimes as RFC 3339 in UTC, NaN as null), so FastAPI does
no second validation pass on the hot paths; the response models in `api.models`
describe the documents for OpenAPI, and the schema tests check the two agree.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.json_sql import splice

#: how long clients and caches may reuse a read (seconds), by how fast it changes
MAX_AGE_LIVE = 10  # latest values, AQI now
MAX_AGE_DATA = 60  # time series, indicators
MAX_AGE_CATALOGUE = 300  # sites, devices, metrics, series

_DUMP_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY


class JSONBytes(JSONResponse):
    """A JSON document already serialised.  (A JSONResponse, so that FastAPI documents
    the route's response model under this media type.)"""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else dumps(content)


class GeoJSONBytes(JSONBytes):
    """A GeoJSON document already serialised (RFC 7946 §12 media type)."""

    media_type = "application/geo+json"


class JSONLDBytes(JSONBytes):
    """A JSON-LD document already serialised (the DCAT catalogue)."""

    media_type = "application/ld+json"


def public_base_url(request: Request) -> str:
    """The API's public root, without ``/v1``, for the absolute links documents hold:
    the configured one, else the request's (behind a proxy, set
    ``SMARTBY_API_PUBLIC_URL`` so links point at the right host)."""
    configured: str | None = request.app.state.settings.api_public_url
    return (configured or str(request.base_url)).rstrip("/")


def _default(value: Any) -> Any:
    """What orjson does not know: PostgreSQL numerics (aggregates of integers)."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, default=_default, option=_DUMP_OPTIONS)


def etag_of(body: bytes) -> str:
    """A weak validator (RFC 9110 §8.8.1): the same document gzipped or not is
    semantically the same, which is all a weak ETag promises.  SHA-1, cut to 96 bits
    as the BLAKE2b before it: the CPU's SHA instructions hash a 1 MB page of
    Observations in 0.5 ms where BLAKE2b took 0.75 (issue 17); a validator tells
    versions of one URL apart, which needs no collision resistance against an
    attacker."""
    return 'W/"' + hashlib.sha1(body, usedforsecurity=False).hexdigest()[:24] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison against each listed tag, or ``*``."""
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


def read_response(
    request: Request,
    document: Any,
    *,
    max_age: int,
    response_class: type[Response] = JSONBytes,
    headers: dict[str, str] | None = None,
) -> Response:
    """The document as a cacheable read: 200 with ETag, or 304 when the client's
    If-None-Match already names this version."""
    return cacheable_response(
        request, dumps(document), max_age=max_age, response_class=response_class, headers=headers
    )


def data_response(request: Request, data: Any, *, max_age: int) -> Response:
    """The usual /v1 document as a cacheable read: ``data`` and the licence ``meta``
    (NLOD 2.0 §4: name the licensor and the licence)."""
    return read_response(request, {"data": data, "meta": request.app.state.meta}, max_age=max_age)


def cacheable_response(
    request: Request,
    body: bytes,
    *,
    max_age: int,
    response_class: type[Response],
    headers: dict[str, str] | None = None,
) -> Response:
    """`read_response` of a body already rendered (JSON or not)."""
    etag = etag_of(body)
    common = {"etag": etag, "cache-control": f"public, max-age={max_age}", **(headers or {})}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _matches(if_none_match, etag):
        return Response(status_code=304, headers=common)
    return response_class(body, headers=common)


def spliced_response(
    request: Request,
    envelope: Any,
    data: bytes,
    *,
    max_age: int,
    headers: dict[str, str] | None = None,
) -> Response:
    """`read_response` of a document whose data array PostgreSQL has already written
    (`api.json_sql`): ``envelope`` holds `DATA_PLACEHOLDER` where the array goes."""
    body = splice(dumps(envelope), data)
    return cacheable_response(
        request, body, max_age=max_age, response_class=JSONBytes, headers=headers
    )
