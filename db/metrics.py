"""Adding to the metric catalogue without a migration: new metrics and field aliases.

`smartby metrics add` (and anything else that extends the catalogue) comes here; the
API, SensorThings, the dashboards' variables, QC and ingest all read the ``metrics``
table, so a new row is all a new kind of measurement needs.  Every value is checked
before it is written: a key ingest can match, a canonical unit in the SenML unit
registry (RFC 8428 §12.1, RFC 8798) so that devices' units convert into it, bounds
that make sense, a definition URI, and QC thresholds `core.qc` knows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from core.errors import SmartbyError
from core.profiles import BindingError, FieldTarget, parse_field_target
from core.qc import qc_settings
from core.units import is_known_unit
from db.catalogue import Metric, load_aliases, load_catalogue

_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
_DOMAIN: Final = re.compile(r"[a-z][a-z_]{0,31}")
_URI: Final = re.compile(r"(https?://[^\s]+|urn:[a-z0-9][a-z0-9-]{0,31}:[^\s]+)", re.IGNORECASE)
VALUE_TYPES: Final = ("gauge", "count", "cumulative")


class MetricError(SmartbyError):
    """A metric or alias that cannot be added; the message says why."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric as someone asks for it (`smartby metrics add`)."""

    key: str
    name: str
    unit: str
    domain: str
    min_value: float
    max_value: float
    definition_uri: str
    value_type: str = "gauge"
    unit_symbol: str | None = None
    description: str = ""
    molar_mass: float | None = None
    qc: Mapping[str, object] = field(default_factory=dict)
    aliases: Sequence[str] = ()
    #: how finely the metric is resolved, in its unit (exports round to it); None: not said
    resolution: float | None = None


def check_metric(spec: MetricSpec) -> None:
    """Raise `MetricError` for the first thing about ``spec`` that cannot work."""
    if not _KEY.fullmatch(spec.key):
        raise MetricError(
            f"metric key {spec.key!r}: lower-case letters, digits and _, starting with a "
            "letter, at most 32 (like pm25 or noise_laeq)"
        )
    if not spec.name.strip():
        raise MetricError(f"metric {spec.key}: give it a name")
    if not is_known_unit(spec.unit):
        raise MetricError(
            f"metric {spec.key}: {spec.unit!r} is not a SenML unit (RFC 8428 §12.1, RFC 8798);"
            " e.g. ug/m3, Cel, %RH, hPa, W, kWh, m, cm, ppm, dB, count"
        )
    if not _DOMAIN.fullmatch(spec.domain):
        raise MetricError(f"metric {spec.key}: domain {spec.domain!r} must be one lower-case word")
    if not (math.isfinite(spec.min_value) and math.isfinite(spec.max_value)):
        raise MetricError(f"metric {spec.key}: bounds must be finite numbers")
    if spec.min_value >= spec.max_value:
        raise MetricError(
            f"metric {spec.key}: the lower bound {spec.min_value:g} is not below the upper "
            f"bound {spec.max_value:g}"
        )
    if not _URI.fullmatch(spec.definition_uri):
        raise MetricError(
            f"metric {spec.key}: the definition must be an http(s) or urn URI (a vocabulary "
            f"entry such as a QUDT quantity kind), not {spec.definition_uri!r}"
        )
    if spec.value_type not in VALUE_TYPES:
        raise MetricError(
            f"metric {spec.key}: value type {spec.value_type!r} is not one of "
            + ", ".join(VALUE_TYPES)
        )
    if spec.molar_mass is not None and not (math.isfinite(spec.molar_mass) and spec.molar_mass > 0):
        raise MetricError(f"metric {spec.key}: molar mass must be a positive number of g/mol")
    if spec.resolution is not None and not (math.isfinite(spec.resolution) and spec.resolution > 0):
        raise MetricError(f"metric {spec.key}: the resolution must be a positive number")
    try:
        qc_settings(spec.qc)
    except ValueError as exc:
        raise MetricError(f"metric {spec.key}: {exc}") from None


def add_metric(conn: psycopg.Connection[TupleRow], spec: MetricSpec) -> Metric:
    """Add a metric (and its aliases) to the catalogue, in one transaction."""
    check_metric(spec)
    with conn.transaction():
        try:
            conn.execute(
                """INSERT INTO metrics (key, name, domain, unit, unit_symbol, definition_uri,
                       min_value, max_value, value_type, molar_mass, description, qc,
                       resolution)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    spec.key,
                    spec.name.strip(),
                    spec.domain,
                    spec.unit,
                    spec.unit_symbol or spec.unit,
                    spec.definition_uri,
                    spec.min_value,
                    spec.max_value,
                    spec.value_type,
                    spec.molar_mass,
                    spec.description,
                    Jsonb(qc_settings(spec.qc)),
                    spec.resolution,
                ),
            )
        except psycopg.errors.UniqueViolation:
            raise MetricError(f"metric {spec.key!r} already exists") from None
        for alias in spec.aliases:
            add_alias(conn, alias, FieldTarget(metric=spec.key))
    return load_catalogue(conn)[spec.key]


def add_alias(
    conn: psycopg.Connection[TupleRow], field_name: str, target: FieldTarget, note: str = ""
) -> None:
    """Declare, for every device, what a payload field is (or re-declare it)."""
    name = field_name.strip().lower()
    if not name or len(name) > 128:
        raise MetricError(f"field {field_name!r} must be text of 1 to 128 characters")
    try:
        parse_field_target(target.as_json(), f"field {field_name!r}")
    except BindingError as exc:
        raise MetricError(str(exc)) from None
    if target.metric is not None and target.metric not in load_catalogue(conn):
        raise MetricError(f"field {field_name!r}: there is no metric {target.metric!r}")
    conn.execute(
        """INSERT INTO field_aliases (field, metric, health, unit, note)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (field) DO UPDATE SET metric = EXCLUDED.metric,
               health = EXCLUDED.health, unit = EXCLUDED.unit, note = EXCLUDED.note""",
        (name, target.metric, target.health, target.unit, note),
    )


@dataclass(frozen=True, slots=True)
class MetricUse:
    """A metric with what points at it: its aliases and how many series it has."""

    metric: Metric
    aliases: tuple[str, ...]
    series: int


def show_metric(conn: psycopg.Connection[TupleRow], key: str) -> MetricUse:
    metric = load_catalogue(conn).get(key)
    if metric is None:
        raise MetricError(f"there is no metric {key!r} (smartby metrics list)")
    aliases = tuple(
        sorted(name for name, target in load_aliases(conn).items() if target.metric == key)
    )
    row = conn.execute("SELECT count(*) FROM series WHERE metric = %s", (key,)).fetchone()
    return MetricUse(metric, aliases, int(row[0]) if row else 0)
