"""The metric catalogue as the code sees it: what each metric key means and allows.

The rows live in the ``metrics`` table (seeded by migration 0003, extendable by a
municipality); this module reads them once and hands out immutable `Metric`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg.rows import TupleRow

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


def load_catalogue(conn: psycopg.Connection[TupleRow]) -> dict[str, Metric]:
    """Every metric, by key."""
    rows = conn.execute(
        """SELECT key, name, domain, unit, unit_symbol, definition_uri, min_value, max_value,
                  value_type, molar_mass, resolution
           FROM metrics ORDER BY key"""
    ).fetchall()
    return {row[0]: Metric(*row) for row in rows}
