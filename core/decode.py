"""Decoding of one telemetry payload into numeric readings.

It lives in the domain core because every way a reading arrives shares it: the MQTT
ingest worker's device profiles (`core.profiles`) and, later, HTTP push.

Three payload forms are accepted (DESIGN.md, "MQTT contract"):

* SenML JSON (RFC 8428 §5): a JSON array of records;
* SenML CBOR (RFC 8428 §6): the same records as a CBOR array with integer labels;
* a plain JSON object ``{"time": <ISO 8601 or epoch s>, "<metric>": <number>, ...}``.

They are told apart without a content type, because MQTT 3.1.1 has none: a JSON array is
SenML JSON, a JSON object is the plain form, and bytes that are not UTF-8 JSON are tried as
CBOR (a SenML CBOR array starts with a byte in 0x80–0x9f, which can never begin UTF-8 text).

The result separates accepted numeric readings from rejected records, each with a short
machine-readable reason, so that nothing is lost silently (DESIGN.md, "Bad input"): string,
boolean and data values are decoded but rejected as ``non_numeric`` — except that a profile
may accept a plain object's numeric strings (``{"pm25": "4.2"}``, `numeric_text`), which
firmware that formats its numbers as text sends. A payload that cannot be
decoded at all raises ``DecodeError``, and nothing else: this runs on untrusted bytes.

The device identity comes from the MQTT topic, never from the payload, so names are returned
as resolved and ``metric_key`` picks the metric out of them.

A payload whose times count from "now" (a plain object without ``"time"``, a SenML time below
2**28) is reported as ``anchored``: its readings' times depend on when it was received, which
ingest must keep the same when the broker redelivers it (``ingest.pipeline``).

A key that occurs twice in one JSON object (``{"pm25": 1, "pm25": 2}``, a SenML record with two
``"v"``) refuses the whole payload as ``duplicate_key``: RFC 8259 §4 leaves the meaning of such
an object to chance (orjson keeps the last value, other parsers the first), so no reading of it
is trustworthy, and the device sending it is misbehaving.  The same holds for a CBOR map (RFC
8949 §5.6).  orjson cannot report duplicates, so each payload is checked by counting: every
member of every object has exactly one colon outside strings, so a payload with no more colons
than its parsed objects have members repeats no key.  Colons inside strings only add to the
count: those of a plain object's ``"time"`` and of SenML base names and names (``urn:dev:…``)
are counted and taken off, which is exact when no backslash escape can make a parsed string
differ from its bytes.  Only a payload still short of members is parsed again with ``json``,
which sees every member.

This is the ingest hot path (150,000 readings/s budget on a shared core), so the per-record
loop uses plain dict lookups, locals and exact type checks, and raises nothing on the happy
path; base fields, which usually appear once per pack, are handled out of line.
"""

from __future__ import annotations

import io
import json
import math
import re
import time as _time
from functools import lru_cache
from typing import Any, Final, NamedTuple

import cbor2
import orjson

from core.readings import (
    DETAIL_CHARS,
    DecodeError,
    DecodeResult,
    Reading,
    RejectedRecord,
    numeric_text,
    parse_time,
)
from core.readings import number as _number
from core.readings import show as _show
from core.units import integrated_unit

__all__ = [
    "DETAIL_CHARS",
    "DecodeError",
    "DecodeResult",
    "Reading",
    "RejectedRecord",
    "decode",
    "metric_key",
    "numeric_text",
    "parse_time",
]

# RFC 8428 §4.5.3: a resolved time below 2**28 is relative to "now".
RELATIVE_TIME_LIMIT: Final = 2**28
# RFC 8428 §4.4: the version this decoder understands, and the default of "bver" (§4.1).
SENML_VERSION: Final = 10
# Containers deeper than this are not SenML (a pack is two levels deep); bounds the parser.
_CBOR_MAX_DEPTH: Final = 32
_NAME_CACHE_LIMIT: Final = 100_000
_NAME_CACHE_MAX_LENGTH: Final = 256


class _Labels(NamedTuple):
    """The map keys of one SenML representation (RFC 8428 Table 2 and Table 4)."""

    bver: Any
    bn: Any
    bt: Any
    bu: Any
    bv: Any
    bs: Any
    n: Any
    u: Any
    v: Any
    vs: Any
    vb: Any
    vd: Any
    s: Any
    t: Any
    ut: Any
    data_type: type
    """Python type of a Data Value: base64url text in JSON (§5), a byte string in CBOR (§6)."""

    @property
    def known(self) -> frozenset[Any]:
        return frozenset(self[:15])

    @property
    def base(self) -> frozenset[Any]:
        return frozenset((self.bver, self.bn, self.bt, self.bu, self.bv, self.bs))

    @property
    def regular(self) -> frozenset[Any]:
        return frozenset(
            (self.n, self.u, self.v, self.vs, self.vb, self.vd, self.s, self.t, self.ut)
        )

    @property
    def other_values(self) -> frozenset[Any]:
        return frozenset((self.vs, self.vb, self.vd))


_JSON_LABELS: Final = _Labels(
    "bver", "bn", "bt", "bu", "bv", "bs", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut", str
)
# RFC 8428 §6 Table 4. The table is "conclusive": other integer keys will never be defined.
_CBOR_LABELS: Final = _Labels(-1, -2, -3, -4, -5, -6, 0, 1, 2, 3, 4, 8, 5, 6, 7, bytes)

# RFC 8428 §4.5.1: characters A-Z a-z 0-9 - : . / _, starting with A-Z a-z 0-9.
_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][-:./_A-Za-z0-9]*")
# Names repeat message after message (same devices, same sensors), so a verdict is looked
# up rather than recomputed; the cache is emptied when it grows past _NAME_CACHE_LIMIT.
_name_verdicts: dict[str, bool] = {}

_MISSING: Final[Any] = object()


def _is_valid_name(name: str) -> bool:
    """RFC 8428 §4.5.1 name rules, with the verdict remembered for names of sane length."""
    verdict = _name_verdicts.get(name)
    if verdict is None:
        verdict = _NAME_PATTERN.fullmatch(name) is not None
        if len(name) <= _NAME_CACHE_MAX_LENGTH:
            if len(_name_verdicts) >= _NAME_CACHE_LIMIT:
                _name_verdicts.clear()
            _name_verdicts[name] = verdict
    return verdict


@lru_cache(maxsize=4096)
def metric_key(name: str) -> str:
    """The metric part of a resolved name: what follows the last ``:`` or ``/``, lowercased.

    The device is already known from the MQTT topic, so only the last segment matters:
    ``urn:dev:mac:0024befffe804ff1:pm25`` → ``pm25``, ``narvik-aq-01/NO2`` → ``no2``.
    A name ending in a separator has an empty key, which no metric matches.
    """
    cut = max(name.rfind(":"), name.rfind("/"))
    return name[cut + 1 :].lower()


def decode(
    payload: bytes, now: float | None = None, *, numeric_strings: bool = False
) -> DecodeResult:
    """Decode one telemetry payload; raise ``DecodeError`` if nothing in it is usable.

    ``now`` (epoch seconds, default: the current time) anchors SenML relative times
    (RFC 8428 §4.5.3) and plain payloads without ``"time"``; pass the reception time.
    ``numeric_strings``: a plain object's values may be numbers written as text.  (Never
    a SenML ``vs``: RFC 8428 §4.2 makes it a string value, whatever its characters.)
    """
    if now is None:
        now = _time.time()
    try:
        return _decode(payload, now, numeric_strings)
    except DecodeError:
        raise
    except Exception as exc:
        # Last line of defence for a worker fed untrusted bytes: a decoder bug must cost one
        # quarantined message, not the worker. The reason makes such bugs easy to find.
        raise DecodeError("internal_error", _show(f"{type(exc).__name__}: {exc}")) from exc


def _decode(payload: bytes, now: float, numeric_strings: bool = False) -> DecodeResult:
    if not payload:
        raise DecodeError("empty", "the payload has no bytes")
    if payload[0] >= 0x80:
        # JSON text starts with ASCII (RFC 8259 §2); a SenML CBOR array starts with 0x80-0x9f.
        return _decode_cbor(payload, now, "starts with a non-ASCII byte")
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as json_error:
        return _decode_cbor(payload, now, str(json_error))
    kind = type(document)
    if kind is list:
        return _decode_pack(document, _JSON_LABELS, _JSON_SETS, now, "senml+json", payload)
    if kind is dict:
        colons = payload.count(b":")
        if colons != len(document):
            when = document.get("time")
            in_time = when.count(":") if type(when) is str else 0
            if colons - in_time != len(document) or payload.find(b"\\") >= 0:
                _check_unique_keys(payload)
        return _decode_object(document, now, numeric_strings)
    raise DecodeError(
        "bad_structure",
        f"JSON payload is a {kind.__name__}, not a SenML array or an object: {_show(document)}",
    )


def _decode_cbor(payload: bytes, now: float, json_error: str) -> DecodeResult:
    """SenML CBOR (RFC 8428 §6): exactly one CBOR data item, an array of maps."""
    stream = io.BytesIO(payload)
    try:
        document = cbor2.CBORDecoder(
            stream, max_depth=_CBOR_MAX_DEPTH, allow_duplicate_keys=False
        ).decode()
    except cbor2.CBORDecodeError as cbor_error:
        if "Duplicate map key" in str(cbor_error):
            raise DecodeError(
                "duplicate_key",
                _show(f"a CBOR map repeats a key, which RFC 8949 §5.6 makes invalid: {cbor_error}"),
            ) from None
        raise DecodeError(
            "undecodable", _show(f"not JSON ({json_error}); not CBOR ({cbor_error})")
        ) from None
    except Exception as cbor_error:
        # Any failure of the CBOR parser on arbitrary bytes means the same thing here.
        raise DecodeError(
            "undecodable", _show(f"not JSON ({json_error}); not CBOR ({cbor_error})")
        ) from None
    if stream.tell() != len(payload):
        raise DecodeError(
            "undecodable",
            f"{len(payload) - stream.tell()} bytes left over after the CBOR data item",
        )
    if type(document) is not list:
        raise DecodeError(
            "bad_structure",
            f"CBOR payload is a {type(document).__name__}, not a SenML array (RFC 8428 §6): "
            + _show(document),
        )
    return _decode_pack(document, _CBOR_LABELS, _CBOR_SETS, now, "senml+cbor")


class _LabelSets(NamedTuple):
    known: frozenset[Any]
    base: frozenset[Any]
    regular: frozenset[Any]
    other_values: frozenset[Any]


_JSON_SETS: Final = _LabelSets(
    _JSON_LABELS.known, _JSON_LABELS.base, _JSON_LABELS.regular, _JSON_LABELS.other_values
)
_CBOR_SETS: Final = _LabelSets(
    _CBOR_LABELS.known, _CBOR_LABELS.base, _CBOR_LABELS.regular, _CBOR_LABELS.other_values
)


def _decode_pack(
    pack: list[Any],
    labels: _Labels,
    sets: _LabelSets,
    now: float,
    form: str,
    json_payload: bytes | None = None,
) -> DecodeResult:
    """Resolve a SenML pack (RFC 8428 §4.6) into readings and rejected records.

    ``json_payload``: the JSON text of the pack, to check its records for repeated keys."""
    if not pack:
        raise DecodeError("empty", "the SenML pack has no records (RFC 8428 §11: [1* record])")
    readings: list[Reading] = []
    rejected: list[RejectedRecord] = []
    # Locals, not globals or attributes, inside the per-record loop: it is the hot path.
    add_reading = readings.append
    reject = rejected.append
    new_reading = Reading
    new_rejected = RejectedRecord
    isfinite = math.isfinite
    as_number = _number
    valid_names = _name_verdicts
    missing = _MISSING
    relative_limit = RELATIVE_TIME_LIMIT
    k_n, k_u, k_v, k_s, k_t = labels.n, labels.u, labels.v, labels.s, labels.t
    known, base_labels, regular_labels, other_value_labels = sets

    # Base values in force (RFC 8428 §4.1): each applies from its record up to the next
    # record that carries the same base field.
    base_name = ""
    base_time = 0.0
    base_unit: str | None = None
    base_value = 0.0
    base_sum: float | None = None
    version = SENML_VERSION
    anchored = False
    members = base_colons = 0  # for the duplicate-key check

    for index, record in enumerate(pack):
        if type(record) is not dict:
            reject(
                new_rejected(
                    index, None, "bad_record", f"record is not a map/object: {_show(record)}"
                )
            )
            continue
        size = len(record)
        members += size
        n = record.get(k_n, missing)
        t = record.get(k_t, missing)
        u = record.get(k_u, missing)
        v = record.get(k_v, missing)
        s = record.get(k_s, missing)
        has_other_value = False
        if size != (
            (n is not missing)
            + (t is not missing)
            + (u is not missing)
            + (v is not missing)
            + (s is not missing)
        ):
            # More than the everyday n/t/u/v/s fields: base fields, a string, boolean or data
            # value, an update time or extension labels. One length test keeps the three set
            # checks below off the common path.
            if not known.issuperset(record):
                _check_must_understand(record, known, index)
            if not base_labels.isdisjoint(record):
                base_name, base_time, base_unit, base_value, base_sum, version = _apply_base(
                    record,
                    labels,
                    index,
                    base_name,
                    base_time,
                    base_unit,
                    base_value,
                    base_sum,
                    version,
                )
                if labels.bn in record:
                    base_colons += base_name.count(":")
                if regular_labels.isdisjoint(record):
                    # Only base fields: the record sets context for those that follow, as in
                    # the first record of RFC 8428 §5.1.7; it holds no measurement of its own.
                    continue
            has_other_value = not other_value_labels.isdisjoint(record)

        # Name: Base Name + Name, then the §4.5.1 character rules.
        if n is missing:
            name = base_name
        elif type(n) is str:
            name = base_name + n
        else:
            reject(new_rejected(index, None, "bad_name", f"name is not a string: {_show(n)}"))
            continue
        verdict = valid_names.get(name)
        if verdict is None:
            verdict = _is_valid_name(name)
        if not verdict:
            reject(
                new_rejected(
                    index,
                    None,
                    "bad_name",
                    f"resolved name {_show(name)} breaks RFC 8428 §4.5.1 (A-Z a-z 0-9 - : . / _, "
                    "starting with a letter or digit)",
                )
            )
            continue

        # Time: Base Time + Time; below 2**28 it counts from now (§4.5.3).
        if t is missing:
            when = base_time
        else:
            offset = t if type(t) is float else as_number(t)
            if offset is None:
                reject(new_rejected(index, name, "bad_time", f"time is not a number: {_show(t)}"))
                continue
            when = base_time + offset
        if when < relative_limit:
            when += now
            anchored = True
        if not isfinite(when):
            reject(new_rejected(index, name, "bad_time", f"time is not finite: {_show(t)}"))
            continue

        # Unit: the record's own, else the Base Unit (§4.5.2).
        if u is missing:
            unit = base_unit
        elif type(u) is str:
            unit = u
        else:
            reject(new_rejected(index, name, "bad_unit", f"unit is not a string: {_show(u)}"))
            continue

        # Value fields. §4.2: "Exactly one Value field MUST appear unless there is a Sum
        # field, in which case it is allowed to have no Value field."
        # §4.5.4: with neither Base Sum nor Sum there is no Sum; with one, the other is zero.
        has_sum = s is not missing or base_sum is not None
        if v is not missing:
            if has_other_value:
                reject(_multiple_values(record, labels, index, name))
                continue
            number = v if type(v) is float else as_number(v)
            if number is None:
                reject(new_rejected(index, name, "bad_value", f"value is not a number: {_show(v)}"))
                continue
            value = base_value + number  # §4.5.4: Base Value + Value
            # A malformed record (above) is rejected whole; a well-formed one whose value
            # cannot be stored still lets its Sum through (below).
            if isfinite(value):
                add_reading(new_reading(name, when, value, unit, False))
            else:
                reject(new_rejected(index, name, "non_finite", f"value is not finite: {_show(v)}"))
        elif has_other_value:
            reject(_non_numeric(record, labels, index, name))
        elif not has_sum:
            reject(
                new_rejected(
                    index, name, "no_value", "record has no value (v, vs, vb, vd) and no sum (s)"
                )
            )

        if has_sum:
            sum_reading = _sum_reading(s, base_sum, index, name, when, unit)
            if isinstance(sum_reading, Reading):
                add_reading(sum_reading)
            else:
                reject(sum_reading)

    if json_payload is not None:
        colons = json_payload.count(b":")
        if colons != members and (
            json_payload.find(b"\\") >= 0
            or (
                colons - base_colons != members
                and colons - base_colons - _name_colons(pack) != members
            )
        ):
            _check_unique_keys(json_payload)
    return DecodeResult(form, readings, rejected, anchored)


def _name_colons(pack: list[Any]) -> int:
    """Colons in the names of a JSON pack's records (``urn:dev:ow:10e2073a01080063``)."""
    colons = 0
    for record in pack:
        if type(record) is dict:
            name = record.get("n")
            if type(name) is str:
                colons += name.count(":")
    return colons


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for json: the object, unless a key repeats."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return document


def _check_unique_keys(payload: bytes) -> None:
    """Raise ``duplicate_key`` if an object in the JSON ``payload`` repeats a key."""
    try:
        json.loads(payload, object_pairs_hook=_unique_pairs)
    except _RepeatedKey as repeated:
        raise DecodeError(
            "duplicate_key",
            f"key {_show(repeated.key)} occurs twice in one JSON object; RFC 8259 §4 leaves "
            "its value undefined, so the whole payload is refused",
        ) from None
    except (ValueError, RecursionError) as exc:  # beyond what json parses: refuse, unread
        raise DecodeError(
            "undecodable", _show(f"cannot check the JSON for repeated keys: {exc}")
        ) from None


def _check_must_understand(record: dict[Any, Any], known: frozenset[Any], index: int) -> None:
    """RFC 8428 §4.4: unknown labels are ignored, unless they end in '_' (must understand).

    No such extension is understood here, so any of them invalidates the whole pack.
    """
    for label in record:
        if label not in known and type(label) is str and label.endswith("_"):
            raise DecodeError(
                "must_understand",
                f"record {index} has label {_show(label)}, which must be understood "
                "(RFC 8428 §4.4) and is not",
            )


def _apply_base(
    record: dict[Any, Any],
    labels: _Labels,
    index: int,
    base_name: str,
    base_time: float,
    base_unit: str | None,
    base_value: float,
    base_sum: float | None,
    version: int,
) -> tuple[str, float, str | None, float, float | None, int]:
    """The base values in force after ``record`` (RFC 8428 §4.1).

    A malformed base field spoils the resolution of every later record, so it rejects the
    whole pack rather than one record.
    """
    bver = record.get(labels.bver, _MISSING)
    if bver is not _MISSING:
        # §4.4: a larger version than understood MUST NOT be used; every record of a pack
        # has the same version. §11 (CDDL) and §6 make it an unsigned integer; §4.1 positive.
        if type(bver) is not int or bver < 1:
            raise DecodeError(
                "bad_version", f"record {index}: version is not a positive integer: {_show(bver)}"
            )
        if bver > SENML_VERSION:
            raise DecodeError(
                "bad_version",
                f"record {index}: SenML version {bver} is newer than {SENML_VERSION} "
                "(RFC 8428 §4.4)",
            )
        if index == 0:
            version = bver
        elif bver != version:
            raise DecodeError(
                "bad_version",
                f"record {index}: version {bver} differs from the pack's {version} (RFC 8428 §4.4)",
            )

    bn = record.get(labels.bn, _MISSING)
    if bn is not _MISSING:
        if type(bn) is not str:
            raise DecodeError("bad_base", f"record {index}: base name is not a string: {_show(bn)}")
        base_name = bn

    bu = record.get(labels.bu, _MISSING)
    if bu is not _MISSING:
        if type(bu) is not str:
            raise DecodeError("bad_base", f"record {index}: base unit is not a string: {_show(bu)}")
        base_unit = bu

    base_time = _base_number(record, labels.bt, "base time", index, base_time)
    base_value = _base_number(record, labels.bv, "base value", index, base_value)
    if labels.bs in record:
        base_sum = _base_number(record, labels.bs, "base sum", index, 0.0)
    return base_name, base_time, base_unit, base_value, base_sum, version


def _base_number(
    record: dict[Any, Any], label: Any, what: str, index: int, current: float
) -> float:
    raw = record.get(label, _MISSING)
    if raw is _MISSING:
        return current
    number = _number(raw)
    if number is None or not math.isfinite(number):
        raise DecodeError(
            "bad_base", f"record {index}: {what} is not a finite number: {_show(raw)}"
        )
    return number


def _multiple_values(
    record: dict[Any, Any], labels: _Labels, index: int, name: str
) -> RejectedRecord:
    present = [
        label
        for label, key in (("v", labels.v), ("vs", labels.vs), ("vb", labels.vb), ("vd", labels.vd))
        if key in record
    ]
    return RejectedRecord(
        index,
        name,
        "multiple_values",
        f"record has {len(present)} value fields ({', '.join(present)}); RFC 8428 §4.2 "
        "allows exactly one",
    )


def _non_numeric(record: dict[Any, Any], labels: _Labels, index: int, name: str) -> RejectedRecord:
    """A record whose one value is a string, boolean or data value (RFC 8428 §4.2)."""
    fields = [
        (label, key, kind)
        for label, key, kind in (
            ("vs", labels.vs, str),
            ("vb", labels.vb, bool),
            ("vd", labels.vd, labels.data_type),
        )
        if key in record
    ]
    if len(fields) > 1:
        return _multiple_values(record, labels, index, name)
    label, key, kind = fields[0]
    value = record[key]
    if type(value) is not kind:
        return RejectedRecord(
            index,
            name,
            "bad_value",
            f"{label} must be a {kind.__name__}, got {type(value).__name__}: {_show(value)}",
        )
    return RejectedRecord(
        index, name, "non_numeric", f"{label} value {_show(value)} is not a number"
    )


def _sum_reading(
    s: Any,
    base_sum: float | None,
    index: int,
    name: str,
    when: float,
    unit: str | None,
) -> Reading | RejectedRecord:
    """The reading of a record's Sum: Base Sum + Sum (§4.5.4), in unit × seconds (§4.2)."""
    number = 0.0 if s is _MISSING else _number(s)
    if number is None:
        return RejectedRecord(index, name, "bad_value", f"sum is not a number: {_show(s)}")
    total = (base_sum or 0.0) + number
    if not math.isfinite(total):
        return RejectedRecord(index, name, "non_finite", f"sum is not finite: {_show(s)}")
    if unit is None:
        return Reading(name, when, total, None, True)
    integral = integrated_unit(unit)
    if integral is None:
        return RejectedRecord(
            index,
            name,
            "unsupported_sum_unit",
            f"a sum is in the unit times seconds (RFC 8428 §4.2); {unit!r}·s has no SenML unit",
        )
    sum_unit, factor = integral
    return Reading(name, when, total * factor, sum_unit, True)


def _decode_object(
    document: dict[str, Any], now: float, numeric_strings: bool = False
) -> DecodeResult:
    """The plain form: ``{"time": <ISO 8601 or epoch s>, "<metric>": <number>, ...}``."""
    when = _plain_time(document.get("time", _MISSING), now)
    readings: list[Reading] = []
    rejected: list[RejectedRecord] = []
    isfinite = math.isfinite
    for index, (key, raw) in enumerate(document.items()):
        if key == "time":
            continue
        if not _is_valid_name(key):
            rejected.append(
                RejectedRecord(
                    index, None, "bad_name", f"key {_show(key)} breaks the RFC 8428 §4.5.1 rules"
                )
            )
            continue
        value = raw if type(raw) is float else _number(raw)
        if value is None and numeric_strings:
            value = numeric_text(raw)
        if value is None:
            rejected.append(
                RejectedRecord(index, key, "non_numeric", f"value {_show(raw)} is not a number")
            )
        elif isfinite(value):
            readings.append(Reading(key, when, value, None, False))
        else:
            rejected.append(
                RejectedRecord(index, key, "non_finite", f"value {_show(raw)} is not finite")
            )
    if not readings and not rejected:
        raise DecodeError("empty", "the JSON object holds no readings")
    return DecodeResult("json", readings, rejected, "time" not in document)


def _plain_time(raw: Any, now: float) -> float:
    """Epoch seconds of the plain form's ``"time"``: absent means now."""
    return now if raw is _MISSING else parse_time(raw)
