"""Expand a SQL panel query the way Grafana does before PostgreSQL sees it.

Two stages, as in Grafana:

1. the frontend's template service (public/app/features/templating/template_srv.ts)
   replaces ``$var``, ``${var}``, ``${var:format}`` and ``[[var]]``; the SQL data
   sources' ``interpolateVariable`` quotes each value of a multi-value or include-All
   variable (``'a','b'``) and passes a single-value one through with quotes doubled.
   ``$__interval`` / ``$__interval_ms`` and ``$__from`` / ``$__to`` are built-ins.
   All without a custom all-value sends every option.
2. the backend (pkg/tsdb/grafana-postgresql-datasource/macros.go and sqleng's
   Interpolate): ``$__interval[_ms]``, ``$__unixEpochFrom()`` / ``To()``, then the
   macros ``$__time``, ``$__timeEpoch``, ``$__timeFilter``, ``$__timeFrom``,
   ``$__timeTo``, ``$__timeGroup``, ``$__timeGroupAlias`` (``time_bucket`` with the
   TimescaleDB option, ``floor(extract(epoch …))`` without), ``$__unixEpochFilter``,
   ``$__unixEpochGroup``[``Alias``].  Times are RFC 3339 in UTC, as Go formats them.
   The macro pattern is Grafana's: arguments end at the first ``)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

# --- intervals -----------------------------------------------------------------------

_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
            "y": 31536000}  # fmt: skip


def parse_interval(text: str) -> float:
    """Seconds in a Grafana interval such as ``30s``, ``5m``, ``1h``, ``1d`` (gtime)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|M|y)", text.strip().strip("'"))
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


def format_interval(seconds: float) -> str:
    """gtime.FormatInterval: the largest whole unit."""
    for unit, size in (("y", 31536000), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(1, int(seconds * 1000))}ms"


# rangeutil.roundInterval: (upper bound ms, rounded ms)
_ROUND = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
    (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000),
    (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000),
    (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
    (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
    (1814400000, 604800000), (3628800000, 2592000000),
)  # fmt: skip


def panel_interval(range_s: float, min_interval: str | None, max_data_points: int = 1000) -> float:
    """$__interval in seconds: range / data points rounded as Grafana rounds it, and not
    below the panel's min interval."""
    raw_ms = range_s * 1000 / max_data_points
    rounded = 31536000000.0
    if raw_ms <= 10:
        rounded = 1
    else:
        for bound, value in _ROUND:
            if raw_ms <= bound:
                rounded = value
                break
    seconds = rounded / 1000
    if min_interval:
        seconds = max(seconds, parse_interval(min_interval))
    return seconds


# --- template variables ----------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's selection: `values` is what is selected (all options when
    All is selected)."""

    values: Sequence[str]
    multi: bool = False
    include_all: bool = False


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format(values: Sequence[str], fmt: str | None, variable: Variable) -> str:
    if fmt is None:  # the SQL data sources' interpolateVariable
        if variable.multi or variable.include_all or len(values) != 1:
            return ",".join(_quote_literal(v) for v in values)
        return values[0].replace("'", "''")
    if fmt == "sqlstring":
        return ",".join(_quote_literal(v) for v in values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt in ("csv", "raw"):
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    raise ValueError(f"variable format {fmt!r} is not supported by this expander")


_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)


def interpolate_variables(
    sql: str,
    variables: Mapping[str, Variable],
    interval_s: float,
    start: datetime,
    end: datetime,
) -> str:
    """Stage 1: what the browser sends.  Unknown names (the macros) stay as they are."""
    builtins = {
        "__interval": format_interval(interval_s),
        "__interval_ms": str(int(interval_s * 1000)),
        "__from": str(int(start.timestamp() * 1000)),
        "__to": str(int(end.timestamp() * 1000)),
        "__range_s": str(int((end - start).total_seconds())),
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name in builtins:
            return builtins[name]
        if name not in variables:
            return match.group(0)
        variable = variables[name]
        return _format(list(variable.values), fmt, variable)

    return _VARIABLE.sub(replace, sql)


# --- backend macros --------------------------------------------------------------------

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


def _rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: no fraction when it is zero, trailing zeros cut."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += ("." + f"{moment.microsecond:06d}").rstrip("0")
    return text + "Z"


def expand_macros(
    sql: str, start: datetime, end: datetime, interval_s: float, timescaledb: bool = True
) -> str:
    """Stage 2: what the PostgreSQL data source does on the server."""
    sql = sql.replace("$__interval_ms", str(int(interval_s * 1000)))
    sql = sql.replace("$__interval", format_interval(interval_s))
    sql = sql.replace("$__unixEpochFrom()", str(int(start.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(end.timestamp())))
    frm, to = _rfc3339(start), _rfc3339(end)

    def group(args: list[str]) -> str:
        if len(args) < 2:
            raise ValueError("$__timeGroup needs a time column and an interval")
        seconds = parse_interval(args[1])
        if timescaledb:
            return f"time_bucket('{seconds:.0f}s',{args[0]})"
        return f"floor(extract(epoch from {args[0]})/{seconds:g})*{seconds:g}"

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")]
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{frm}' AND '{to}'"
        if name == "__timeFrom":
            return f"'{frm}'"
        if name == "__timeTo":
            return f"'{to}'"
        if name == "__timeGroup":
            return group(args)
        if name == "__timeGroupAlias":
            return group(args) + ' AS "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
            seconds = parse_interval(args[1])
            text = f"floor(({args[0]})/{seconds:g})*{seconds:g}"
            return text + (' AS "time"' if name.endswith("Alias") else "")
        raise ValueError(f"undefined macro: ${name}")

    return _MACRO.sub(replace, sql)


def expand(
    sql: str,
    start: datetime,
    end: datetime,
    variables: Mapping[str, Variable] | None = None,
    min_interval: str | None = None,
    timescaledb: bool = True,
) -> str:
    """Both stages, for a panel over [start, end] with its min interval."""
    interval_s = panel_interval((end - start).total_seconds(), min_interval)
    sql = interpolate_variables(sql, variables or {}, interval_s, start, end)
    return expand_macros(sql, start, end, interval_s, timescaledb)
