"""Query parameters shared by the routes: identifiers, time ranges, bounding boxes and
page cursors, each checked so that a bad one is a 400 naming it (never a database
error), and each limit stated in the message."""

from __future__ import annotations

import base64
import binascii
import inspect
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo

from fastapi import Depends, Query
from pydantic import AfterValidator

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

# ------------------------------------------------------------------------- times
#
# Times as people write them (issue 16).  A query's ``from`` and ``to`` may be:
#   - an RFC 3339 date-time with its offset: 2026-11-01T00:00:00+01:00, ...Z;
#     a ``+`` typed into a browser's address bar arrives as a space (a query string
#     is form-encoded, WHATWG URL §5.1), so "2026-11-01T00:00:00 01:00" is +01:00;
#   - a date: 2026-11-01, the local midnight that starts it (SMARTBY_TIMEZONE);
#   - a span back: -7d, -24h, -30m, -2w, or an ISO 8601 duration (P7D, PT24H, P1W,
#     P1DT12H): for ``from``, back from ``to``; for ``to``, back from now;
#   - ``now``.
# A date-time without an offset is refused: at the autumn clock change one local
# hour happens twice, and the API will not guess which one was meant.

_DATE_TIME = re.compile(
    r"^(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]"
    r"(?P<time>[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)"
    r"(?P<offset>[Zz]|[+\- ][0-9]{2}(:?[0-9]{2})?)?$"
)
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_SHORT_SPAN = re.compile(r"^-(?P<n>[0-9]{1,6})(?P<unit>[smhdw])$")
_ISO_DURATION = re.compile(
    r"^-?P(?:(?P<w>[0-9]{1,6})W)?(?:(?P<d>[0-9]{1,6})D)?"
    r"(?:T(?:(?P<h>[0-9]{1,6})H)?(?:(?P<m>[0-9]{1,6})M)?(?:(?P<s>[0-9]{1,9})S)?)?$"
)
_SPAN_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

#: what every refusal of a time shows: forms that work, so the fix is a copy away
TIME_EXAMPLES = (
    "write e.g. 2026-11-01 (local midnight), 2026-11-01T08:00:00+01:00, "
    "2026-11-01T07:00:00Z, -7d, -24h or P7D (back from 'to', or from now)"
)


class TimeError(ValueError):
    """A time parameter that cannot be read; the message shows forms that work."""


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """A time as given in a query, before the time zone and the other end of the
    range are known: exactly one of an instant, a local date, or a span back."""

    text: str
    instant: datetime | None = None  # aware
    day: date | None = None  # local midnight that starts it
    back: timedelta | None = None  # a span back (zero: now)

    def resolve(self, tz: ZoneInfo, anchor: datetime) -> datetime:
        """The moment meant: ``anchor`` is what a span counts back from."""
        if self.instant is not None:
            return self.instant
        if self.day is not None:
            # midnight exists on every day in the zones smartby serves (the clocks
            # change at 02:00/03:00); fold=0 takes the first should one repeat it.
            # In UTC: arithmetic on a ZoneInfo datetime is wall-clock arithmetic, and
            # a range's length must count the 25-hour day as 25 hours.
            return datetime.combine(self.day, time(0), tz).astimezone(UTC)
        assert self.back is not None
        return anchor - self.back


def _span(text: str) -> timedelta | None:
    short = _SHORT_SPAN.match(text)
    if short is not None:
        return timedelta(**{_SPAN_UNITS[short["unit"]]: int(short["n"])})
    iso = _ISO_DURATION.match(text)
    if iso is None or text.rstrip("T").endswith(("P", "-P")) or text.endswith("T"):
        return None
    parts = {k: int(v) for k, v in iso.groupdict().items() if v is not None}
    return timedelta(
        weeks=parts.get("w", 0),
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )


def parse_time(value: object) -> TimeSpec:
    """Read one ``from``/``to`` value (see the forms above); `TimeError` otherwise."""
    if isinstance(value, TimeSpec):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TimeError(f"{value.isoformat()} has no UTC offset; {TIME_EXAMPLES}")
        return TimeSpec(value.isoformat(), instant=value)
    if not isinstance(value, str):
        raise TimeError(f"not a time; {TIME_EXAMPLES}")
    text = value.strip()
    shown = text[:40] + ("…" if len(text) > 40 else "")
    if text.lower() == "now":
        return TimeSpec(text, back=timedelta(0))
    if text.startswith(("-", "P", "p")):
        try:
            span = _span(text.upper() if text[:1] in "Pp" else text)
        except OverflowError:
            span = None
        if span is None:
            calendar = re.match(r"^-?P[0-9]*[YM]", text.upper()) or text[-1:] in ("y", "M")
            why = " (months and years vary in length: count days, e.g. P30D)" if calendar else ""
            raise TimeError(f"{shown!r} is not a span back{why}; {TIME_EXAMPLES}")
        if span > timedelta(days=MAX_SPAN_BACK_DAYS):
            raise TimeError(f"{shown!r} reaches back more than {MAX_SPAN_BACK_DAYS} days")
        return TimeSpec(text, back=span)
    if _DATE.match(text):
        try:
            return TimeSpec(text, day=date.fromisoformat(text))
        except ValueError:
            raise TimeError(f"{shown!r} is not a date of the calendar; {TIME_EXAMPLES}") from None
    match = _DATE_TIME.match(text)
    if match is None:
        raise TimeError(f"{shown!r} is not a time; {TIME_EXAMPLES}")
    offset = match["offset"]
    if offset is None:
        raise TimeError(
            f"{shown!r} has no UTC offset: add one (…+01:00 or …Z), or give only the "
            f"date for local midnight; {TIME_EXAMPLES}"
        )
    if offset[0] == " ":  # a '+' that the query string turned into a space
        offset = "+" + offset[1:]
    if offset in ("z", "Z"):
        offset = "+00:00"
    elif ":" not in offset and len(offset) == 5:
        offset = offset[:3] + ":" + offset[3:]
    elif len(offset) == 3:
        offset += ":00"
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}{offset}")
        moment.astimezone(UTC)  # an offset that pushes it past year 1 or 9999
    except (ValueError, OverflowError):
        raise TimeError(f"{shown!r} is not a time of the calendar; {TIME_EXAMPLES}") from None
    return TimeSpec(text, instant=moment)


def _check_time(text: str) -> str:
    """Refuse a ``from``/``to`` that `parse_time` cannot read (a 400 naming it), and
    keep the text: `time_range` resolves it once the zone and the other end are known."""
    parse_time(text)
    return text


#: the longest span back a relative time may name (far beyond any range served)
MAX_SPAN_BACK_DAYS = 100 * 366

#: a ``from``/``to`` query parameter: checked by `parse_time`, resolved by `time_range`
TimeParam = Annotated[str, AfterValidator(_check_time)]

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
        TimeParam | None,
        Query(
            alias="from",
            description="Start, inclusive: an RFC 3339 date-time with offset, a date (its "
            "local midnight), or a span back from `to` (-7d, -24h, P7D). Default: the "
            "route's default range before `to`.",
            examples=["2026-01-05", "2026-01-05T00:00:00+01:00", "-7d"],
        ),
    ] = None
    end: Annotated[
        TimeParam | None,
        Query(
            alias="to",
            description="End, exclusive: an RFC 3339 date-time with offset, a date (its "
            "local midnight), a span back from now (-1h), or `now`. Default: now.",
            examples=["2026-02-04", "2026-02-04T00:00:00+01:00"],
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

    def span(self, default_span: timedelta, max_days: int, tz: str) -> TimeRange:
        return time_range(self.start, self.end, default_span=default_span, max_days=max_days, tz=tz)

    def after(self) -> Cursor | None:
        return decode_cursor(self.cursor) if self.cursor is not None else None


async def _page_query(**values: Any) -> PageQuery:
    """`PageQuery` as an async dependency of the same parameters.  FastAPI runs a plain
    callable such as the class itself in its thread pool: a thread hand-off per
    request, and the event loop then waits for the GIL behind the worker thread
    (issue 17: a tenth of the API's time on a data page)."""
    return PageQuery(**values)


_page_query.__signature__ = inspect.signature(PageQuery)  # type: ignore[attr-defined]

Page = Annotated[PageQuery, Depends(_page_query)]


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
    start: TimeSpec | datetime | str | None,
    end: TimeSpec | datetime | str | None,
    *,
    default_span: timedelta,
    max_days: int,
    tz: str = "UTC",
    now: datetime | None = None,
) -> TimeRange:
    """``[from, to)``: ``to`` defaults to now (next whole minute), ``from`` to
    ``default_span`` before ``to``; at most ``max_days`` long.  Dates are local
    midnights in ``tz``; a span back counts from ``to`` (for ``from``) or from now
    (for ``to``)."""
    zone = ZoneInfo(tz)
    try:
        current = _next_minute(now or datetime.now(UTC))
        stop = current if end is None else parse_time(end).resolve(zone, current)
        if start is None:
            first = stop - min(default_span, timedelta(max_days))
        else:
            first = parse_time(start).resolve(zone, stop)
    except OverflowError:
        raise bad_parameter("from", "the time range reaches beyond the year 1") from None
    if first >= stop:
        raise bad_parameter(
            "from",
            f"'from' ({first.isoformat()}) must be before 'to' ({stop.isoformat()}); "
            "e.g. from=-7d (the 7 days before 'to') or from=2026-11-01&to=2026-11-08",
        )
    if stop - first > timedelta(days=max_days):
        days = (stop - first) / timedelta(days=1)
        raise Problem(
            400,
            "Time range too long",
            f"the range from 'from' to 'to' spans {days:,.1f} days; one request may span at "
            f"most {max_days} days (api_max_range_days): split it into shorter ranges, "
            f"e.g. from=-{max_days}d",
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
