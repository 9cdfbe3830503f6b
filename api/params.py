"""Query parameters shared by the routes: identifiers, time ranges, bounding boxes and
page cursors, each checked so that a bad one is a 400 naming it (never a database
error), and each limit stated in the message."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, get_args

from fastapi import Depends, Query
from pydantic import AwareDatetime, BeforeValidator

from api.problems import Problem, bad_parameter, not_found
from core.indicators import MIN_PUBLISHED_BUCKET_S
from core.rollups import epoch_us, from_epoch_us

#: identifier alphabets of the schema's CHECK constraints (migration 0001)
SITE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
METRIC_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
_SITE_ID = re.compile(SITE_ID_PATTERN)
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_METRIC_KEY = re.compile(METRIC_KEY_PATTERN)

#: RFC 3339 date-time (what OpenAPI's format date-time means); pydantic alone would
#: also take epoch numbers and other spellings
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def rfc3339(value: object) -> object:
    """Refuse anything but an RFC 3339 date-time with offset before pydantic parses it."""
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError(
            "must be an RFC 3339 date-time with a UTC offset, e.g. 2026-01-05T00:00:00+01:00"
        )
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(rfc3339)]

#: largest series id (the column is a PostgreSQL integer)
MAX_SERIES_ID = 2**31 - 1
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000

DeviceKind = Literal["air_quality", "energy", "traffic"]
SiteKind = Literal["roadside", "urban_background", "building", "road_section"]
Bucket = Literal["raw", "1m", "1h", "1d"]
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)

#: the range of a series' values served (or exported) when ``from`` is not given
DEFAULT_SPAN: dict[Bucket, timedelta] = {
    "raw": timedelta(days=1),
    "1m": timedelta(days=1),
    "1h": timedelta(days=30),
    "1d": timedelta(days=365),
}
#: bucket lengths in seconds (a day is at least 23 hours)
_BUCKET_S: dict[Bucket, int] = {"raw": 0, "1m": 60, "1h": 3600, "1d": 23 * 3600}


def published_for_every_domain(bucket: Bucket) -> bool:
    """Whether buckets this long may be published for aggregate-only domains (traffic:
    the 15-minute privacy rule, DESIGN.md)."""
    return _BUCKET_S[bucket] >= MIN_PUBLISHED_BUCKET_S


# ---------------------------------------------------------------------- filters

SiteFilter = Annotated[
    str | None,
    Query(
        alias="site",
        pattern=SITE_ID_PATTERN,
        description="Only this site (its id).",
        examples=["narvik-sentrum"],
    ),
]
DeviceFilter = Annotated[
    str | None,
    Query(
        alias="device",
        pattern=DEVICE_ID_PATTERN,
        description="Only this device (its id).",
        examples=["aq-sentrum"],
    ),
]
MetricFilter = Annotated[
    str | None,
    Query(
        alias="metric",
        pattern=METRIC_KEY_PATTERN,
        description="Only this metric (its key, see /v1/metrics).",
        examples=["pm25"],
    ),
]
KindFilter = Annotated[
    DeviceKind | None, Query(alias="kind", description="Only devices of this kind.")
]


@dataclass(frozen=True, slots=True)
class PageQuery:
    """The time range and page of a paged time-series route (``from``, ``to``,
    ``limit``, ``cursor``); each route says its default range."""

    start: Annotated[
        Instant | None,
        Query(
            alias="from",
            description="Start, inclusive (ISO 8601 with offset). Default: the route's "
            "default range before `to`.",
            examples=["2026-01-05T00:00:00+01:00"],
        ),
    ] = None
    end: Annotated[
        Instant | None,
        Query(
            alias="to",
            description="End, exclusive (ISO 8601 with offset). Default: now.",
            examples=["2026-02-04T00:00:00+01:00"],
        ),
    ] = None
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE, description=f"Page size, at most {MAX_PAGE}.")
    ] = DEFAULT_PAGE
    cursor: Annotated[
        str | None,
        Query(
            max_length=300,
            description="Where the previous page ended; take it from that page's `next`.",
        ),
    ] = None

    def span(self, default_span: timedelta, max_days: int) -> TimeRange:
        return time_range(self.start, self.end, default_span=default_span, max_days=max_days)

    def after(self) -> Cursor | None:
        return decode_cursor(self.cursor) if self.cursor is not None else None


Page = Annotated[PageQuery, Depends()]


def site_path_id(site_id: str) -> str:
    """A site id from the path; one that cannot exist is simply not found."""
    if not _SITE_ID.match(site_id):
        raise not_found("site", site_id)
    return site_id


def device_path_id(device_id: str) -> str:
    if not _DEVICE_ID.match(device_id):
        raise not_found("device", device_id)
    return device_id


def metric_path_key(key: str) -> str:
    if not _METRIC_KEY.match(key):
        raise not_found("metric", key)
    return key


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime


def _next_minute(moment: datetime) -> datetime:
    """``now`` rounded up to a whole minute: a default ``to`` that stays the same for a
    minute keeps ETags and caches useful."""
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def time_range(
    start: datetime | None,
    end: datetime | None,
    *,
    default_span: timedelta,
    max_days: int,
    now: datetime | None = None,
) -> TimeRange:
    """``[from, to)``: ``to`` defaults to now (next whole minute), ``from`` to
    ``default_span`` before ``to``; at most ``max_days`` long."""
    try:
        stop = end if end is not None else _next_minute(now or datetime.now(UTC))
        first = start if start is not None else stop - min(default_span, timedelta(max_days))
    except OverflowError:
        raise bad_parameter("from", "the time range reaches beyond the year 1") from None
    if first >= stop:
        raise bad_parameter(
            "from", f"'from' ({first.isoformat()}) must be before 'to' ({stop.isoformat()})"
        )
    if stop - first > timedelta(days=max_days):
        days = (stop - first) / timedelta(days=1)
        raise Problem(
            400,
            "Time range too long",
            f"the range from 'from' to 'to' spans {days:,.1f} days; one request may span at "
            f"most {max_days} days (api_max_range_days): split it into shorter ranges",
            parameter="from",
            limit_days=max_days,
        )
    return TimeRange(first, stop)


@dataclass(frozen=True, slots=True)
class BoundingBox:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float


def parse_bbox(text: str) -> BoundingBox:
    """``minlon,minlat,maxlon,maxlat`` in WGS 84 degrees (the GeoJSON bbox order,
    RFC 7946 §5; boxes across the antimeridian are not supported)."""
    parts = text.split(",")
    if len(parts) != 4:
        raise bad_parameter("bbox", "bbox must be four numbers: minlon,minlat,maxlon,maxlat")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise bad_parameter("bbox", f"bbox {text!r} holds something that is not a number") from None
    if not all(math.isfinite(v) for v in values):
        raise bad_parameter("bbox", "bbox numbers must be finite")
    box = BoundingBox(*values)
    if not (-180 <= box.min_lon <= box.max_lon <= 180):
        raise bad_parameter("bbox", "bbox longitudes must satisfy -180 <= minlon <= maxlon <= 180")
    if not (-90 <= box.min_lat <= box.max_lat <= 90):
        raise bad_parameter("bbox", "bbox latitudes must satisfy -90 <= minlat <= maxlat <= 90")
    return box


# ------------------------------------------------------------------------- cursors
#
# A cursor is where the previous page ended: the time of its last row and, where
# rows share times, the row's key (keyset pagination, stable while data arrives).
# It is opaque to clients: base64url of "<µs since the epoch>|<key>".


@dataclass(frozen=True, slots=True)
class Cursor:
    time: datetime
    key: str


def encode_cursor(time: datetime, key: str | int = "") -> str:
    raw = f"{epoch_us(time)}|{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        micros, key = raw.split("|", 1)
        moment = from_epoch_us(int(micros))
    except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError):
        raise bad_parameter(
            "cursor", "cursor is not one this API gave out (take it from a page's 'next' link)"
        ) from None
    if "\x00" in key:
        raise bad_parameter("cursor", "cursor is not one this API gave out")
    return Cursor(moment, key)
