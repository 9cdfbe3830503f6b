"""Every SQL query of every dashboard, expanded as Grafana expands it, runs against the
real schema with three days of simulated Narvik data and returns the columns its panel
reads, with sensible rows.

Each query runs twice: with every variable at All (the dashboards' default), and with
every variable at its first option alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from grafana_foundation_sdk.models import dashboard as dbm

from dashboards.sql import SqlFormat
from tests.dashboards.grafana_macros import Variable, expand
from tests.dashboards.panels import SqlPanelQuery, dashboards_by_uid, sql_queries, variables
from tests.fixtures.simulated import SimulatedData

QUERIES = sql_queries()

#: panels whose tables the simulated history leaves empty (no message is rejected), so
#: they may return no rows here; test_quarantine_panels runs them with rejections
EMPTY_IN_SIMULATION = {
    "Quarantined messages by reason (database)",
    "Latest quarantined messages",
}

#: panels that may have no rows for one device kind and metric alone: the first metric's
#: readings may all be good
EMPTY_FOR_ONE = {"Readings not flagged good"}
#: columns the simulated devices never fill: they send no status messages
NULL_IN_SIMULATION = {
    ("Devices: offline or silent first", "Battery"),
    ("Devices: offline or silent first", "RSSI"),
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
    types = [
        conn.adapters.types.get(c.type_code).name
        if conn.adapters.types.get(c.type_code)
        else str(c.type_code)
        for c in description
    ]
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
    item: SqlPanelQuery, names: list[str], rows: list[tuple[Any, ...]], select_all: bool
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
        if (item.panel.title, name) in NULL_IN_SIMULATION:
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
    check_sensible(item, names, rows, select_all)


QUARANTINE_QUERIES = [q for q in QUERIES if q.panel.title in EMPTY_IN_SIMULATION]


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
