"""Every SQL query of every dashboard, expanded as Grafana expands it, runs against the
real schema with three days of simulated Narvik data and returns the columns its panel
reads, with sensible rows.

Each query runs twice: with every variable at All (the dashboards' default), and with
every variable at its first option alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from grafana_foundation_sdk.models import dashboard as dbm

from dashboards.common import DEFAULT_TIMEZONE
from dashboards.sql import SqlFormat
from tests.dashboards.grafana_macros import Variable, expand
from tests.dashboards.panels import SqlPanelQuery, dashboards_by_uid, sql_queries, variables
from tests.fixtures.simulated import SimulatedData

QUERIES = sql_queries()

#: panels whose tables the simulated history leaves empty (no message is rejected), so
#: they may return no rows here; test_quarantine_panels runs them with rejections
QUARANTINE_PANELS = {
    "Quarantined messages by reason (database)",
    "Latest quarantined messages",
}
EMPTY_IN_SIMULATION = QUARANTINE_PANELS | {
    # the latest two hours of now(), after the simulated days (test_alerting.py runs
    # the alert rule's query with hours of its own)
    "Alert: stations with poor air",
    # devices quiet beyond three intervals *now*: the history ends at the start of this
    # hour, so in its first minutes no device is silent yet (test_alerting.py runs the
    # rule's query with devices of its own, quiet and not)
    "Alert: devices silent (database)",
}

#: panels that may have no rows for one device kind and metric alone: the first metric's
#: readings may all be good
EMPTY_FOR_ONE = {"Readings not flagged good"}
#: columns the simulated devices never fill: they send no status messages
NULL_IN_SIMULATION = {
    ("Devices: offline or silent first", "Battery"),
    ("Devices: offline or silent first", "RSSI"),
}
HEATING_SEASONS = "Heating season: this season against the same days last season"
#: a heating season ends on 31 May: three simulated days in June to August are in
#: neither season (test_heating_seasons_end_on_31_may runs the panel with its own data)
NULL_IN_SUMMER = {
    (HEATING_SEASONS, column)
    for column in ("Consumption", "Heating degree days", "kWh per degree day")
}

TIME_TYPES = {"timestamptz", "timestamp"}
NUMERIC_TYPES = {"int2", "int4", "int8", "float4", "float8", "numeric"}
TEXT_TYPES = {"text", "varchar"}


@pytest.fixture(scope="module")
def sim_conn(simulated: SimulatedData) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(simulated.url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        yield conn


def time_range(simulated: SimulatedData) -> tuple[datetime, datetime]:
    return (
        datetime.fromtimestamp(simulated.start, UTC),
        datetime.fromtimestamp(simulated.end, UTC),
    )


def options(
    conn: psycopg.Connection[Any],
    variable: dbm.VariableModel,
    resolved: dict[str, Variable],
    start: datetime,
    end: datetime,
) -> list[str]:
    """The values a variable offers, as Grafana would load them."""
    query = variable.query
    assert isinstance(query, str), f"variable {variable.name} has no query text"
    if variable.type_val == "custom":
        return [item.split(" : ")[-1].strip() for item in query.split(",")]
    assert variable.type_val == "query", f"variable {variable.name}: {variable.type_val}"
    assert variable.datasource is not None
    assert variable.datasource.uid == "smartby-timescaledb"
    cursor = conn.execute(expand(query, start, end, resolved))
    names = [c.name for c in cursor.description or []]
    assert names == ["__value", "__text"], f"variable {variable.name} returns {names}"
    rows = cursor.fetchall()
    assert rows, f"variable {variable.name} offers no options"
    return [str(row[0]) for row in rows]


def resolve(
    conn: psycopg.Connection[Any],
    dashboard: dbm.Dashboard,
    start: datetime,
    end: datetime,
    select_all: bool,
) -> dict[str, Variable]:
    resolved: dict[str, Variable] = {}
    for variable in variables(dashboard):
        offered = options(conn, variable, resolved, start, end)
        chosen = offered if select_all else offered[:1]
        resolved[variable.name] = Variable(
            chosen, multi=bool(variable.multi), include_all=bool(variable.include_all)
        )
    return resolved


def run(
    conn: psycopg.Connection[Any],
    item: SqlPanelQuery,
    resolved: dict[str, Variable],
    span: tuple[datetime, datetime],
) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    sql = expand(item.query.raw_sql, span[0], span[1], resolved, item.panel.interval)
    assert "$" not in sql.replace("$$", ""), f"unexpanded in {item.id}:\n{sql}"
    cursor = conn.execute(sql)
    description = cursor.description or []
    names = [c.name for c in description]
    types = []
    for column in description:
        info = conn.adapters.types.get(column.type_code)
        types.append(info.name if info else str(column.type_code))
    return names, types, cursor.fetchall()


def check_shape(
    item: SqlPanelQuery, names: list[str], types: list[str], rows: list[tuple[Any, ...]]
) -> None:
    assert names == list(item.query.columns), f"{item.id}: columns {names}"
    if item.query.format_val is SqlFormat.TIME_SERIES:
        assert names[0] == "time", f"{item.id}: no time column first"
        assert types[0] in TIME_TYPES, f"{item.id}: time is {types[0]}"
        for name, kind in zip(names[1:], types[1:], strict=True):
            allowed = TEXT_TYPES if name == "metric" else NUMERIC_TYPES
            assert kind in allowed, f"{item.id}: column {name} is {kind}"
        times = [row[0] for row in rows]
        assert times == sorted(times), f"{item.id}: rows not sorted by time"


def check_sensible(
    item: SqlPanelQuery,
    names: list[str],
    rows: list[tuple[Any, ...]],
    select_all: bool,
    may_be_null: set[tuple[str, str]],
) -> None:
    """Rows, and with every station, building or counter selected, no column without a
    value (one site alone may lack a pollutant or a full day)."""
    if item.panel.title in EMPTY_IN_SIMULATION:
        return
    if not select_all:
        assert rows or item.panel.title in EMPTY_FOR_ONE, f"{item.id}: no rows"
        return
    assert rows, f"{item.id}: no rows"
    for i, name in enumerate(names):
        if (item.panel.title, name) in may_be_null:
            continue
        assert any(row[i] is not None for row in rows), f"{item.id}: column {name} is all NULL"


@pytest.mark.parametrize("select_all", [True, False], ids=["all", "first"])
@pytest.mark.parametrize("item", QUERIES, ids=[q.id for q in QUERIES])
def test_sql_panel_query(
    sim_conn: psycopg.Connection[Any],
    simulated: SimulatedData,
    item: SqlPanelQuery,
    select_all: bool,
) -> None:
    span = time_range(simulated)
    dashboard = dashboards_by_uid()[item.dashboard]
    resolved = resolve(sim_conn, dashboard, *span, select_all=select_all)
    names, types, rows = run(sim_conn, item, resolved, span)
    check_shape(item, names, types, rows)
    summer = span[1].astimezone(ZoneInfo(DEFAULT_TIMEZONE)).month in (6, 7, 8)
    may_be_null = NULL_IN_SIMULATION | (NULL_IN_SUMMER if summer else set())
    check_sensible(item, names, rows, select_all, may_be_null)


QUARANTINE_QUERIES = [q for q in QUERIES if q.panel.title in QUARANTINE_PANELS]


@pytest.mark.parametrize("item", QUARANTINE_QUERIES, ids=[q.id for q in QUARANTINE_QUERIES])
def test_quarantine_panels_show_rejections(
    conn: psycopg.Connection[Any], item: SqlPanelQuery
) -> None:
    """The panels the simulation leaves empty, over a database with rejected messages."""
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(hours=6)
    for minutes, reason in ((5, "unknown_device"), (65, "undecodable"), (65, "bad_unit")):
        conn.execute(
            "INSERT INTO quarantine (received_at, topic, device_id, reason, detail, payload)"
            " VALUES (%s, 'smartby/x/telemetry', 'x', %s, 'test', '\\x00ff')",
            (end - timedelta(minutes=minutes), reason),
        )
    # these queries use no variables (a rejected message may have no known device)
    names, types, rows = run(conn, item, {}, (start, end))
    check_shape(item, names, types, rows)
    assert rows, f"{item.id}: no rows"
    reasons = {value for row in rows for value in row if isinstance(value, str)}
    assert {"unknown_device", "undecodable", "bad_unit"} <= reasons


@pytest.mark.parametrize(
    ("range_end", "this_season", "last_season", "kwh"),
    [
        # in the season: to the end of the time range, and the same days a year earlier
        ("2026-03-15", ("2025-09-01", "2026-03-15"), ("2024-09-01", "2025-03-15"), (10, 5)),
        # in summer: the season that ended on 31 May, not the summer days after it
        ("2026-07-15", ("2025-09-01", "2026-05-31"), ("2024-09-01", "2025-05-31"), (30, 5)),
    ],
)
def test_heating_seasons_end_on_31_may(
    conn: psycopg.Connection[Any],
    range_end: str,
    this_season: tuple[str, str],
    last_season: tuple[str, str],
    kwh: tuple[float, float],
) -> None:
    """The heating-season panel compares 1 September to 31 May (or to the end of the
    time range) with the same days a year earlier, summing only the days inside."""
    zone = ZoneInfo(DEFAULT_TIMEZONE)
    conn.execute(
        "INSERT INTO sites (id, name, kind, municipality, lon, lat)"
        " VALUES ('b1', 'Building 1', 'building', 'Narvik', 17.4, 68.4)"
    )
    # this season: 10 in October and 20 on 20 March (after the first range's end); last
    # season: 5; 100 on the summer days, in neither
    for day, day_kwh in (
        ("2025-10-01", 10),
        ("2026-03-20", 20),
        ("2026-06-10", 100),
        ("2024-12-01", 5),
        ("2025-06-10", 100),
        ("2025-08-31", 100),
    ):
        local = date.fromisoformat(day)
        conn.execute(
            "INSERT INTO energy_daily (site_id, day, day_start, kwh, co2e_kg, coverage,"
            " grid_factor_g_per_kwh) VALUES ('b1', %s, %s, %s, 0, 1, 17)",
            (local, datetime(local.year, local.month, local.day, tzinfo=zone), day_kwh),
        )
    (item,) = (q for q in QUERIES if q.panel.title == HEATING_SEASONS)
    end = datetime.fromisoformat(range_end).replace(hour=12, tzinfo=zone)
    site = {"site": Variable(["b1"], multi=True, include_all=True)}
    names, types, rows = run(conn, item, site, (end - timedelta(days=7), end))
    check_shape(item, names, types, rows)
    found = {row[0]: row for row in rows}
    for label, (start_day, end_day), season_kwh in zip(
        ("This season", "Last season"), (this_season, last_season), kwh, strict=True
    ):
        row = found[label]
        assert (row[1], row[2]) == (date.fromisoformat(start_day), date.fromisoformat(end_day))
        assert row[names.index("Consumption")] == season_kwh, f"{label}: {row}"
