"""Grafana's alert rules for the database-side conditions (dashboards/alerting.py ->
deploy/grafana/provisioning/alerting/smartby-alerts.yaml): put together as Grafana's
file provisioning takes them, sent to Alertmanager, and their SQL, expanded as
Grafana expands it, runs against the real schema and picks out exactly the silent
devices and the stations with poor air."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from dashboards.alerting import AIR_QUALITY_POOR, ALERTS, DEVICE_SILENT, SqlAlert
from dashboards.build import ALERTING_YAML, generate
from tests.dashboards.grafana_macros import expand
from tests.fixtures.ingest import register
from tests.fixtures.simulated import SimulatedData

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
TEXT_TYPES = {"text", "varchar"}
NUMERIC_TYPES = {"float8", "numeric", "int4", "int8"}


def document() -> dict[str, Any]:
    loaded = yaml.safe_load(ALERTING_YAML.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_the_committed_file_is_what_the_code_generates() -> None:
    assert ALERTING_YAML.read_text(encoding="utf-8") == generate().alerting_yaml, (
        "smartby-alerts.yaml is stale: run `smartby dashboards build`"
    )


def test_rules_are_shaped_as_grafana_provisions_them() -> None:
    provisioned = document()
    assert provisioned["apiVersion"] == 1
    (group,) = provisioned["groups"]
    # the folder the dashboards are provisioned into
    dashboards = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yaml").read_text())
    assert group["folder"] == dashboards["providers"][0]["folder"]
    assert group["interval"] == "1m"
    sources = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yaml").read_text())
    source_uids = {s["uid"] for s in sources["datasources"]}
    uids = [rule["uid"] for rule in group["rules"]]
    assert len(set(uids)) == len(uids) == len(ALERTS)
    for rule in group["rules"]:
        assert len(rule["uid"]) <= 40, "Grafana's limit on rule uids"
        by_ref = {query["refId"]: query for query in rule["data"]}
        assert rule["condition"] in by_ref
        query = by_ref["A"]
        assert query["datasourceUid"] in source_uids
        assert query["model"]["format"] == "table"
        assert query["model"]["rawQuery"] is True
        assert query["relativeTimeRange"]["from"] > 0
        threshold = by_ref[rule["condition"]]
        assert threshold["datasourceUid"] == "__expr__"
        assert threshold["model"]["type"] == "threshold"
        assert threshold["model"]["expression"] == "A"
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
        assert rule["noDataState"] == "OK"
        # labels are interpolated from the environment at provisioning; $ would vanish
        assert "$" not in yaml.safe_dump(rule["labels"])


def test_grafana_sends_to_the_alertmanager_compose_runs() -> None:
    provisioned = document()
    (contact,) = provisioned["contactPoints"]
    (receiver,) = contact["receivers"]
    assert receiver["type"] == "prometheus-alertmanager"
    assert receiver["settings"]["url"] == "http://alertmanager:9093"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert "alertmanager" in compose["services"]
    (policy,) = provisioned["policies"]
    assert policy["receiver"] == contact["name"]
    assert "alertname" in policy["group_by"]


def run(conn: psycopg.Connection[Any], alert: SqlAlert) -> tuple[list[str], list[str], list[Any]]:
    now = datetime.now(UTC)
    sql = expand(alert.sql, now - timedelta(minutes=10), now)
    cursor = conn.execute(sql)
    description = cursor.description or []
    names = [c.name for c in description]
    types = []
    for column in description:
        info = conn.adapters.types.get(column.type_code)
        types.append(info.name if info else str(column.type_code))
    return names, types, cursor.fetchall()


def firing(alert: SqlAlert, rows: list[Any]) -> set[tuple[str, ...]]:
    """The label sets Grafana's threshold would fire for (value > above)."""
    return {tuple(row[:-1]) for row in rows if row[-1] is not None and row[-1] > alert.above}


@pytest.mark.parametrize("alert", ALERTS, ids=[a.uid for a in ALERTS])
def test_the_query_runs_on_the_simulated_database_with_labels_and_one_number(
    simulated: SimulatedData, alert: SqlAlert
) -> None:
    with psycopg.connect(simulated.url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        names, types, rows = run(conn, alert)
    assert names == list(alert.columns)
    # Grafana makes every text column a label and compares the one number
    assert all(t in TEXT_TYPES for t in types[:-1]), types
    assert types[-1] in NUMERIC_TYPES, types
    if alert is DEVICE_SILENT:
        assert rows, "the simulated devices were all heard from"


def test_device_silent_picks_the_devices_quiet_beyond_their_interval(
    conn: psycopg.Connection[Any],
) -> None:
    for device, kind, status in (
        ("aq-quiet", "air_quality", "active"),
        ("aq-fresh", "air_quality", "active"),
        ("tc-quiet-enough", "traffic", "active"),
        ("tc-quiet", "traffic", "active"),
        ("aq-never", "air_quality", "active"),
        ("aq-retired", "air_quality", "disabled"),
    ):
        register(conn, device, kind=kind, status=status)
    for device, minutes in (
        ("aq-quiet", 16),
        ("aq-fresh", 3),
        ("tc-quiet-enough", 40),
        ("tc-quiet", 50),
        ("aq-retired", 600),
    ):
        conn.execute(
            "UPDATE devices SET last_seen = now() - %s WHERE id = %s",
            (timedelta(minutes=minutes), device),
        )
    _, _, rows = run(conn, DEVICE_SILENT)
    assert {row[0] for row in rows} == {"aq-quiet", "aq-fresh", "tc-quiet-enough", "tc-quiet"}
    assert {labels[0] for labels in firing(DEVICE_SILENT, rows)} == {"aq-quiet", "tc-quiet"}
    quiet = next(row for row in rows if row[0] == "aq-quiet")
    assert quiet[1:3] == ("air_quality", "Site of aq-quiet")


def test_air_quality_poor_picks_stations_at_level_4_or_worse_in_the_latest_hour(
    conn: psycopg.Connection[Any],
) -> None:
    hour = conn.execute("SELECT date_trunc('hour', now())").fetchone()
    assert hour is not None
    latest: datetime = hour[0]
    stations = {
        # site: (level an hour ago, level in the latest hour)
        "poor-now": (2, 4),
        "cleared": (5, 2),
        "very-poor": (5, 5),
        "moderate": (3, 3),
    }
    for site, (before, now) in stations.items():
        conn.execute(
            "INSERT INTO sites (id, name, kind, municipality, lon, lat)"
            " VALUES (%s, %s, 'urban_background', 'Narvik', 17.4, 68.4)",
            (site, f"Station {site}"),
        )
        for when, level in ((latest - timedelta(hours=1), before), (latest, now)):
            conn.execute(
                "INSERT INTO aqi_hourly (site_id, hour, level, dominant)"
                " VALUES (%s, %s, %s, 'pm25')",
                (site, when, level),
            )
    # a station whose last hour is a day old tells nothing about now
    conn.execute(
        "INSERT INTO sites (id, name, kind, municipality, lon, lat)"
        " VALUES ('stale', 'Station stale', 'urban_background', 'Narvik', 17.4, 68.4)"
    )
    conn.execute(
        "INSERT INTO aqi_hourly (site_id, hour, level, dominant) VALUES ('stale', %s, 6, 'pm10')",
        (latest - timedelta(days=1),),
    )
    _, _, rows = run(conn, AIR_QUALITY_POOR)
    assert {row[0] for row in rows} == set(stations)
    assert firing(AIR_QUALITY_POOR, rows) == {
        ("poor-now", "Station poor-now"),
        ("very-poor", "Station very-poor"),
    }


def test_the_operations_dashboard_shows_the_alerts() -> None:
    """Prometheus's firing alerts, and the rows each Grafana rule fires for, by the
    rule's own query."""
    from dashboards.sql import SqlQuery
    from tests.dashboards.panels import dashboards_by_uid, panels

    operations = list(panels(dashboards_by_uid()["smartby-operations"]))
    exprs = [getattr(t, "expr", "") for p in operations for t in p.targets or []]
    assert 'ALERTS{alertstate="firing"}' in exprs
    queries = [t.raw_sql for p in operations for t in p.targets or [] if isinstance(t, SqlQuery)]
    for alert in ALERTS:
        assert any(alert.sql in query for query in queries), f"no panel shows {alert.title}"
