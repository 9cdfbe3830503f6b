"""What a decoded payload is made of, whatever the payload's format or the device's
profile: readings, rejected records, radio metadata, and the small value parsers every
decoder shares (numbers, numbers written as text, times).

`core.decode` (SenML and the plain JSON object) and the device profiles of
`core.profiles` (Tasmota, ESPHome, LoRaWAN network servers) all produce a
`DecodeResult`; ingest then resolves each reading's name to a metric and stores it.
Nothing here raises on bad input except `DecodeError`, which carries a machine-readable
reason for the quarantine.
"""

from __future__ import annotations

import math
import re
import reprlib
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "DETAIL_CHARS",
    "DecodeError",
    "DecodeResult",
    "RadioHealth",
    "Reading",
    "RejectedRecord",
    "number",
    "numeric_text",
    "parse_time",
    "show",
]

#: How much of an offending value goes into a human-readable detail.
DETAIL_CHARS: Final = 80
# A number written as text: what JSON allows for a number (RFC 8259 §6) plus a leading "+"
# and surrounding blanks; no "nan", "inf", "0x10" or "1_000" (float() would take those).
_NUMERIC_TEXT: Final = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")


@dataclass(slots=True)
class Reading:
    """One accepted numeric reading, fully resolved (RFC 8428 §4.6)."""

    name: str
    """Resolved SenML name (Base Name + Name), the key of the plain JSON form, or a
    profile's field path (``SDS0X1/PM2.5``)."""
    time: float
    """Epoch seconds, UTC; relative SenML times are already anchored on ``now``."""
    value: float
    unit: str | None
    """SenML unit symbol of ``value``; None when the payload names none (RFC 8428 §4.5.2)."""
    is_sum: bool
    """True when ``value`` is a SenML Sum (``s``), e.g. a cumulative energy register."""


@dataclass(slots=True)
class RejectedRecord:
    """A record that was decoded but cannot become a reading; it belongs in quarantine."""

    position: int
    """Index of the record in the SenML pack, or of the member in the object."""
    name: str | None
    """Resolved name, when it got that far."""
    reason: str
    """Machine-readable cause: ``non_numeric``, ``non_finite``, ``no_value``, …"""
    detail: str
    """One human sentence, with at most ``DETAIL_CHARS`` characters of payload in it."""


@dataclass(frozen=True, slots=True)
class RadioHealth:
    """How a message reached us over the radio (a LoRaWAN uplink's metadata): device
    health, never an environmental reading.  None where the network did not say."""

    time: float
    rssi: float | None = None
    """dBm, of the gateway that heard the device best."""
    snr: float | None = None
    """dB, of the same gateway."""
    gateways: int | None = None
    battery_v: float | None = None
    battery_pct: float | None = None


@dataclass(slots=True)
class DecodeResult:
    """Everything one payload held: readings to store and records to quarantine."""

    form: str
    """``"senml+json"``, ``"senml+cbor"``, ``"json"`` (the plain object form), or the
    profile's own (``"tasmota"``, ``"esphome"``, ``"ttn-v3"``, ``"chirpstack-v4"``)."""
    readings: list[Reading]
    rejected: list[RejectedRecord]
    anchored: bool = False
    """True when some time counts from ``now`` (no ``"time"``, or a SenML time below 2**28)."""
    health: RadioHealth | None = None


class DecodeError(ValueError):
    """The payload as a whole is unusable; ``reason`` is machine-readable, ``detail`` human."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_repr = reprlib.Repr()
_repr.maxstring = DETAIL_CHARS
_repr.maxother = DETAIL_CHARS
_repr.maxlist = _repr.maxdict = _repr.maxtuple = 4
_repr.maxlevel = 2


def show(value: Any) -> str:
    """A short, bounded rendering of a payload fragment for ``detail`` texts."""
    try:
        text = _repr.repr(value)
    except ValueError:  # e.g. an int beyond sys.get_int_max_str_digits() (a CBOR bignum)
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def number(value: Any) -> float | None:
    """``value`` as a float (possibly non-finite), or None when it is not a number at all.

    JSON numbers arrive as int or float; CBOR adds bignums (int of any size) and decimal
    fractions / bigfloats (Tags 4 and 5, which cbor2 turns into Decimal) — RFC 8428 §6 allows
    those for every numeric field. bool is an int subclass in Python but never a SenML number.
    """
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if kind is Decimal:
        try:
            return float(value)
        except ValueError:  # signalling NaN
            return math.nan
    return None


def numeric_text(value: Any) -> float | None:
    """A number written as text (``"4.2"``, ``" -1e3 "``) as a float; None for anything else.

    Only decimal notation counts: ``"nan"``, ``"Infinity"``, ``"0x1A"`` and ``"1_000"`` are
    text, not numbers, even though Python's ``float`` accepts them."""
    if type(value) is not str or len(value) > 64 or _NUMERIC_TEXT.fullmatch(value) is None:
        return None
    return float(value)


def parse_time(raw: Any, local: tzinfo | None = None) -> float:
    """Epoch seconds of an ISO 8601 text or of epoch seconds; ``DecodeError("bad_time")``.

    A text without a UTC offset is refused unless the caller knows the zone it was
    written in (``local``: a Tasmota device's clock shows local time).  Of the two
    instants a local time names when the clocks go back (the repeated hour), the first
    is taken (``fold=0``, PEP 495)."""
    if type(raw) is str:
        try:
            stamp = datetime.fromisoformat(raw)
        except ValueError:
            raise DecodeError("bad_time", f"time {show(raw)} is not ISO 8601") from None
        if stamp.tzinfo is None:
            if local is None:
                # Guessing a zone could shift readings by hours without anyone noticing.
                raise DecodeError(
                    "bad_time", f"time {show(raw)} has no UTC offset (add 'Z' or '+01:00')"
                )
            stamp = stamp.replace(tzinfo=local)
        try:
            return stamp.timestamp()
        except (OverflowError, ValueError):  # year 1 or 9999 pushed past the range by the offset
            raise DecodeError("bad_time", f"time {show(raw)} is out of range") from None
    seconds = number(raw)
    if seconds is None or not math.isfinite(seconds):
        raise DecodeError(
            "bad_time", f"time {show(raw)} is neither ISO 8601 text nor finite epoch seconds"
        )
    return seconds
