"""What committed data tells its live listeners (the API's /v1/stream and the
SensorThings MQTT publisher), through PostgreSQL's LISTEN/NOTIFY.

A write announces itself inside its own transaction, so listeners hear of it exactly
when it commits (a rolled-back batch says nothing; PostgreSQL delivers notifications
at commit, in commit order).  One NOTIFY per batch, never per reading: the payload
is a pointer, not the data — for each series the batch stored readings of, the first
and last time of those readings (`SeriesRange`), packed in binary and base64 (20
bytes a series; a batch touching more series than fit the 8000-byte payload takes a
few NOTIFYs).  A listener reads the readings back from those ranges with index probes
of the readings key (series_id, time).

The AQI job announces each local day it recomputed (`AQI_CHANNEL`); the listener
compares the day's rows with what it last saw.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import TupleRow

READINGS_CHANNEL = "smartby_readings"
AQI_CHANNEL = "smartby_aqi"
#: PostgreSQL's payload limit is 8000 bytes; one range packs into 20 bytes
_RANGE = np.dtype([("series", "<i4"), ("first", "<i8"), ("last", "<i8")])
_PER_NOTIFY = 7900 * 3 // 4 // _RANGE.itemsize
_VERSION = "r1:"


@dataclass(frozen=True, slots=True)
class SeriesRange:
    """The readings of one series a batch stored: from ``first`` to ``last``
    (microseconds since the epoch, both included)."""

    series_id: int
    first_us: int
    last_us: int


def reading_payloads(
    series_ids: npt.NDArray[np.int32], times_us: npt.NDArray[np.int64]
) -> list[str]:
    """The NOTIFY payloads announcing these readings: each series once, with its time
    range in the batch (vectorised: one sort of the batch)."""
    if len(series_ids) == 0:
        return []
    order = np.lexsort((times_us, series_ids))
    series = series_ids[order]
    times = times_us[order]
    starts = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
    ends = np.r_[starts[1:], len(series)] - 1
    packed = np.empty(len(starts), _RANGE)
    packed["series"] = series[starts]
    packed["first"] = times[starts]
    packed["last"] = times[ends]
    return [
        _VERSION + base64.b64encode(packed[i : i + _PER_NOTIFY].tobytes()).decode("ascii")
        for i in range(0, len(packed), _PER_NOTIFY)
    ]


def decode_readings(payload: str) -> list[SeriesRange]:
    """The ranges of one payload (empty for one this version does not understand)."""
    if not payload.startswith(_VERSION):
        return []
    raw = base64.b64decode(payload[len(_VERSION) :])
    if len(raw) % _RANGE.itemsize:
        return []
    packed = np.frombuffer(raw, _RANGE)
    return [
        SeriesRange(int(s), int(a), int(b))
        for s, a, b in zip(
            packed["series"].tolist(),
            packed["first"].tolist(),
            packed["last"].tolist(),
            strict=True,
        )
    ]


def notify_readings(
    conn: psycopg.Connection[TupleRow],
    series_ids: npt.NDArray[np.int32],
    times_us: npt.NDArray[np.int64],
) -> None:
    """Announce a batch's stored readings (in the caller's transaction): one
    statement, one NOTIFY per payload."""
    payloads = reading_payloads(series_ids, times_us)
    if payloads:
        conn.execute(
            "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (READINGS_CHANNEL, payloads)
        )


def notify_aqi_day(conn: psycopg.Connection[TupleRow], start: datetime, end: datetime) -> None:
    """Announce that the AQI hours in [start, end) were recomputed."""
    conn.execute(
        "SELECT pg_notify(%s, %s)", (AQI_CHANNEL, f"{start.isoformat()}/{end.isoformat()}")
    )


def decode_aqi(payload: str) -> tuple[datetime, datetime] | None:
    start, _, end = payload.partition("/")
    try:
        return datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return None
