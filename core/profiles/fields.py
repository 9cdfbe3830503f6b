"""JSON objects of named values, as Tasmota and LoRaWAN payload decoders send them.

``{"SDS0X1": {"PM2.5": 5.1}, "BME280": {"Temperature": 21.3}}`` becomes readings named
by their path, ``SDS0X1/PM2.5`` and ``BME280/Temperature``; ingest maps a path to a
metric (through the device's field map, then the catalogue's aliases, then the metric
keys, each tried for the whole path and for its last level).  A value that is not a
number becomes a rejected record, which ingest drops when the field is declared as one
to ignore (``TotalStartTime``), so only real surprises reach the quarantine.  A
``null`` is no value at all (decoders write it for a sensor that did not answer) and
is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from core.readings import Reading, RejectedRecord, number, numeric_text, show

#: nesting beyond this is not a sensor reading; bounds the walk over untrusted input
MAX_DEPTH: Final = 6
#: fields beyond this in one payload are not read (a runaway decoder)
MAX_FIELDS: Final = 500


def walk(
    document: Mapping[str, Any], skip: frozenset[str] = frozenset()
) -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf of nested objects, depth first, in payload order;
    top-level keys in ``skip`` are left out."""
    stack: list[tuple[str, Mapping[str, Any], int]] = [("", document, 0)]
    count = 0
    while stack:
        prefix, node, depth = stack.pop()
        children: list[tuple[str, Mapping[str, Any], int]] = []
        for key, value in node.items():
            if depth == 0 and key in skip:
                continue
            path = f"{prefix}{key}"
            if isinstance(value, Mapping) and depth + 1 < MAX_DEPTH:
                children.append((path + "/", value, depth + 1))
                continue
            count += 1
            if count > MAX_FIELDS:
                return
            yield path, value
        stack.extend(reversed(children))


def readings_of(
    document: Mapping[str, Any],
    when: float,
    *,
    numeric_strings: bool,
    skip: frozenset[str] = frozenset(),
    unit_of: Callable[[str], str | RejectedRecord | None] | None = None,
) -> tuple[list[Reading], list[RejectedRecord]]:
    """The readings of an object's leaves, all at ``when``.  ``unit_of(path)``: the unit
    of a field when the payload implies one, or a rejection (a unit it cannot use)."""
    readings: list[Reading] = []
    rejected: list[RejectedRecord] = []
    for position, (path, raw) in enumerate(walk(document, skip)):
        if raw is None:
            continue
        value = number(raw)
        if value is None and numeric_strings:
            value = numeric_text(raw)
        if value is None:
            kind = "a list" if isinstance(raw, list) else show(raw)
            rejected.append(
                RejectedRecord(position, path, "non_numeric", f"{path}: {kind} is not a number")
            )
            continue
        if not math.isfinite(value):
            rejected.append(
                RejectedRecord(position, path, "non_finite", f"{path}: {show(raw)} is not finite")
            )
            continue
        unit = unit_of(path) if unit_of is not None else None
        if isinstance(unit, RejectedRecord):
            rejected.append(unit)
            continue
        readings.append(Reading(path, when, value, unit, False))
    return readings, rejected


def leaf(path: str) -> str:
    """The last level of a field path, lower-cased: ``SDS0X1/PM2.5`` → ``pm2.5``."""
    return path[path.rfind("/") + 1 :].lower()
