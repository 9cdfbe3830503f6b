"""Grafana-managed alert rules for what only the database knows, provisioned from code
like the dashboards: deploy/grafana/provisioning/alerting/smartby-alerts.yaml.

- **SmartbyDeviceSilentInDatabase**: an active device not heard from for longer than
  three reporting intervals of its kind (`core.health.silent_after`), straight from
  the devices table.  Prometheus has the same alert from the API's per-device gauge
  (SmartbyDeviceSilent); this one still works when the API or Prometheus does not,
  and Alertmanager holds it back while Prometheus's fires for the same device.
- **SmartbyAirQualityPoor**: a station whose latest hourly European Air Quality Index
  (within the last two hours) is Poor or worse (level 4 of 6, EEA 2024 bands).

Both send to Alertmanager (the contact point below), which sends to the operations
team like every Prometheus alert (deploy/alertmanager/).  Each query returns one
row per device or station: its text columns become the alert's labels, its number
is compared with the threshold (Grafana's SQL data sources turn a table into one
series per row for alerting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from core.health import SILENT_AFTER
from core.indicators import AQI_LEVEL_NAMES
from dashboards.common import TIMESCALEDB_UID
from dashboards.sql import POSTGRES_PLUGIN

#: the folder the dashboards are provisioned into (deploy/grafana/provisioning/dashboards)
FOLDER = "smartby"
#: the contact point: Alertmanager in docker-compose.yml
CONTACT_POINT = "smartby-alertmanager"
ALERTMANAGER_URL = "http://alertmanager:9093"
#: "Poor" on the EEA scale (1 Good … 6 Extremely poor)
AQI_POOR = AQI_LEVEL_NAMES.index("Poor") + 1
#: how often Grafana evaluates the rules
INTERVAL = "1m"


@dataclass(frozen=True)
class SqlAlert:
    """One rule: a SQL query whose numeric column is compared with ``above``."""

    uid: str
    title: str
    sql: str
    #: the query's columns: text labels first, the compared number last
    columns: tuple[str, ...]
    above: float
    pending: str
    severity: str
    summary: str
    description: str


def _silence_ratio() -> str:
    """Seconds since the device was heard from, over the seconds it may stay quiet."""
    cases = " ".join(
        f"WHEN '{kind}' THEN {int(after.total_seconds())}"
        for kind, after in SILENT_AFTER.items()
        if kind != "other"
    )
    other = int(SILENT_AFTER["other"].total_seconds())
    return f"extract(epoch FROM now() - d.last_seen) / CASE d.kind {cases} ELSE {other} END"


DEVICE_SILENT = SqlAlert(
    uid="smartby-device-silent-db",
    title="SmartbyDeviceSilentInDatabase",
    sql=(
        "SELECT d.id AS device, d.kind AS kind, coalesce(s.name, d.site_id, '') AS site,\n"
        f"       {_silence_ratio()} AS silence\n"
        "FROM devices d\n"
        "LEFT JOIN sites s ON s.id = d.site_id\n"
        "WHERE d.status = 'active' AND d.last_seen IS NOT NULL\n"
        "ORDER BY d.id"
    ),
    columns=("device", "kind", "site", "silence"),
    above=1.0,
    pending="5m",
    severity="warning",
    summary="Device {{ $labels.device }} is silent",
    description=(
        "{{ $labels.kind }} device {{ $labels.device }} at {{ $labels.site }} has been "
        "quiet for {{ humanize $values.A.Value }} times the silence it is allowed "
        "(three reporting intervals)."
    ),
)

AIR_QUALITY_POOR = SqlAlert(
    uid="smartby-air-quality-poor",
    title="SmartbyAirQualityPoor",
    sql=(
        "SELECT s.id AS site, s.name AS station, a.level::float8 AS level\n"
        "FROM sites s\n"
        "CROSS JOIN LATERAL (\n"
        "    SELECT h.level FROM aqi_hourly h\n"
        "    WHERE h.site_id = s.id AND h.hour > now() - interval '2 hours'\n"
        "    ORDER BY h.hour DESC LIMIT 1) a\n"
        "ORDER BY s.id"
    ),
    columns=("site", "station", "level"),
    above=AQI_POOR - 0.5,
    pending="0s",
    severity="warning",
    summary="Air quality at {{ $labels.station }} is poor or worse",
    description=(
        "The European Air Quality Index at {{ $labels.station }} is level "
        "{{ $values.A.Value }} of 6 (4 Poor, 5 Very poor, 6 Extremely poor) in its latest "
        "hour. Consider warning the public."
    ),
)

ALERTS = (DEVICE_SILENT, AIR_QUALITY_POOR)


def rule(alert: SqlAlert) -> dict[str, Any]:
    """The rule as Grafana's file provisioning takes it (query A, threshold B)."""
    source = {"type": POSTGRES_PLUGIN, "uid": TIMESCALEDB_UID}
    return {
        "uid": alert.uid,
        "title": alert.title,
        "condition": "B",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": 600, "to": 0},
                "datasourceUid": TIMESCALEDB_UID,
                "model": {
                    "refId": "A",
                    "datasource": source,
                    "editorMode": "code",
                    "format": "table",
                    "rawQuery": True,
                    "rawSql": alert.sql,
                },
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "B",
                    "datasource": {"type": "__expr__", "uid": "__expr__"},
                    "type": "threshold",
                    "expression": "A",
                    "conditions": [{"evaluator": {"type": "gt", "params": [alert.above]}}],
                },
            },
        ],
        # no row (no device, no station with a recent hour) is nothing to alert about
        "noDataState": "OK",
        "execErrState": "Error",
        "for": alert.pending,
        "labels": {"severity": alert.severity},
        "annotations": {"summary": alert.summary, "description": alert.description},
        "isPaused": False,
    }


def provisioning() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "smartby database",
                "folder": FOLDER,
                "interval": INTERVAL,
                "rules": [rule(alert) for alert in ALERTS],
            }
        ],
        "contactPoints": [
            {
                "orgId": 1,
                "name": CONTACT_POINT,
                "receivers": [
                    {
                        "uid": CONTACT_POINT,
                        "type": "prometheus-alertmanager",
                        "settings": {"url": ALERTMANAGER_URL},
                        "disableResolveMessage": False,
                    }
                ],
            }
        ],
        "policies": [
            {
                "orgId": 1,
                "receiver": CONTACT_POINT,
                "group_by": ["grafana_folder", "alertname"],
            }
        ],
    }


_HEADER = """\
# Grafana-managed alert rules of the smartby production stack, their contact point
# (Alertmanager) and notification policy, provisioned at start-up.
# GENERATED by `smartby dashboards build` from dashboards/alerting.py: edit that file
# and rebuild (a test fails when this file and the code disagree).
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the SQL) as literal blocks, as a person would write them."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def provisioning_yaml() -> str:
    """deploy/grafana/provisioning/alerting/smartby-alerts.yaml."""
    body = yaml.dump(
        provisioning(),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return _HEADER + body
