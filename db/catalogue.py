"""The metric catalogue as the code sees it: what each metric key means and allows,
and the vendor field names (aliases) that stand for a metric.

The rows live in the ``metrics`` and ``field_aliases`` tables (seeded by migrations,
extended by a municipality with ``smartby metrics add``); this module reads them and
hands out immutable values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import psycopg
from psycopg.rows import TupleRow

from core.profiles import FieldTarget

ValueType = Literal["gauge", "count", "cumulative"]


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    name: str
    domain: str
    unit: str  # canonical unit, SenML spelling
    unit_symbol: str
    definition_uri: str
    min_value: float  # physical bounds: outside them a reading is QC "fail"
    max_value: float
    value_type: ValueType
    molar_mass: float | None  # g/mol, to convert ppm/ppb of a gas to ug/m3
    #: how finely the metric is resolved, in its unit: exports round to it (never the
    #: stored value); None when not declared
    resolution: float | None = None
    #: QC thresholds of this metric (`core.qc.QcConfig` fields) over the defaults
    qc: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=True
    )


def metric_of(row: tuple[Any, ...]) -> Metric:
    """A `Metric` from a row of the columns `load_catalogue` selects."""
    return Metric(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        MappingProxyType(dict(row[11] or {})),
    )


def load_catalogue(conn: psycopg.Connection[TupleRow]) -> dict[str, Metric]:
    """Every metric, by key."""
    rows = conn.execute(
        """SELECT key, name, domain, unit, unit_symbol, definition_uri, min_value, max_value,
                  value_type, molar_mass, resolution, qc
           FROM metrics ORDER BY key"""
    ).fetchall()
    return {row[0]: metric_of(row) for row in rows}


def load_aliases(conn: psycopg.Connection[TupleRow]) -> dict[str, FieldTarget]:
    """Every field alias, by lower-case field name or path."""
    rows = conn.execute("SELECT field, metric, unit, health FROM field_aliases").fetchall()
    return {
        str(name): FieldTarget(metric=metric, unit=unit, health=health)
        for name, metric, unit, health in rows
    }
