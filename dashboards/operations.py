"""Operations: is the platform taking in data, and is the data any good?  For the
operations staff on duty.

From Prometheus (the ingest workers' and the API's /metrics): ingest rate, commit
latency, queue depth, quarantined messages, broker connection, database errors, API
requests and latency, and the alerts its rules raise.  The rows Grafana's own alert
rules (`dashboards.alerting`) fire for, with their own queries.  From the database:
quarantined messages by reason, devices offline or silent, QC flags by device,
readings stored.

A device is *silent* when nothing was heard from it for longer than three reporting
intervals before the end of the time range: traffic counters report every 15 minutes
(aggregates of at least 15 minutes only), air-quality and energy devices at most every
5 minutes (devices/narvik.yaml).  *Offline* is what the device (or its MQTT last will)
said on its status topic.
"""

from __future__ import annotations

from datetime import timedelta

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dbm

from core.health import SILENT_AFTER as SILENT
from dashboards.alerting import AIR_QUALITY_POOR, DEVICE_SILENT, SqlAlert
from dashboards.common import (
    SERIES_COLUMNS,
    base_dashboard,
    cell,
    column_thresholds,
    dashed_threshold_lines,
    decimals,
    display,
    fixed_colour,
    graph,
    multi_with_all,
    prom_target,
    sql_target,
    sql_variable,
    stacked,
    thresholds,
    tooltip_all_series,
    unit,
    value_texts,
)
from dashboards.sql import SqlFormat

UID = "smartby-operations"

#: silence before a device counts as silent (three reporting intervals; the rule the
#: status API and the website use too, `core.health`)
SILENT_AFTER = {kind: f"{after // timedelta(minutes=1)} minutes" for kind, after in SILENT.items()}
#: SMARTBY_INGEST_QUEUE_SIZE's default: the broker sends no more unacknowledged messages
QUEUE_SIZE = 20000
#: DESIGN.md budgets: publish-to-commit p99 ≤ 1 s; API p99 ≤ 50 ms
COMMIT_P99_BUDGET_S = 1.0
API_P99_BUDGET_S = 0.05

QC_FLAGS = {1: "good", 2: "not evaluated", 3: "suspect", 4: "fail", 9: "missing"}

_DEVICE_STATE = f"""CASE
                   WHEN d.status = 'disabled' THEN 'disabled'
                   WHEN d.last_seen IS NULL THEN 'never seen'
                   WHEN d.online IS FALSE THEN 'offline'
                   WHEN d.last_seen < $__timeTo()::timestamptz - CASE d.kind
                        WHEN 'traffic' THEN interval '{SILENT_AFTER["traffic"]}'
                        ELSE interval '{SILENT_AFTER["other"]}' END THEN 'silent'
                   ELSE 'ok'
               END"""


def _series_panel(title: str, description: str, unit_id: str) -> timeseries.Panel:
    return (
        graph(title, description, unit_id, span=12, height=8)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(tooltip_all_series())
    )


def _counts(title: str, description: str, query: str, interval: str) -> timeseries.Panel:
    """Stacked bars of a `time, metric, value` count per interval, at least `interval` wide."""
    return (
        _series_panel(title, description, "none")
        .interval(interval)
        .with_target(sql_target(query, SERIES_COLUMNS))
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(stacked())
    )


def _stat(title: str, description: str, unit_id: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .span(4)
        .height(4)
        .unit(unit_id)
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .reduce_options(cb.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
    )


def health_stats() -> list[stat.Panel]:
    return [
        _stat("Ingest workers up", "Ingest workers Prometheus can scrape.", "none")
        .with_target(prom_target('sum(up{job="smartby-ingest"})', "workers"))
        .thresholds(thresholds("red", (1, "green"))),
        _stat("Connected to the broker", "Ingest workers with a live MQTT connection.", "none")
        .with_target(prom_target("sum(smartby_ingest_broker_connected)", "connected"))
        .thresholds(thresholds("red", (1, "green"))),
        _stat(
            "Since the last commit",
            "Seconds since the most recent successful database commit of any worker.",
            "s",
        )
        .with_target(
            prom_target("time() - max(smartby_ingest_last_commit_timestamp_seconds)", "age")
        )
        .thresholds(thresholds("green", (60, "orange"), (300, "red"))),
        _stat(
            "Database errors (1 h)",
            "Failed batch writes in the last hour (the worker retries them).",
            "none",
        )
        .with_target(
            prom_target("sum(increase(smartby_ingest_database_errors_total[1h]))", "errors")
        )
        .thresholds(thresholds("green", (1, "red"))),
        _stat("API up", "API instances Prometheus can scrape.", "none")
        .with_target(prom_target('sum(up{job="smartby-api"})', "api"))
        .thresholds(thresholds("red", (1, "green"))),
        _stat(
            "Devices offline or silent",
            "Active devices that said they are offline, were never heard from, or have been "
            "silent for three reporting intervals before the end of the time range.",
            "none",
        )
        .with_target(
            sql_target(
                f"""
                SELECT count(*) FILTER (WHERE state IN ('offline', 'silent', 'never seen'))
                       AS "Devices"
                FROM (SELECT {_DEVICE_STATE} AS state
                      FROM devices d
                      WHERE d.kind IN ($kind)) states
                """,
                ["Devices"],
                SqlFormat.TABLE,
            )
        )
        .graph_mode(cm.BigValueGraphMode.NONE)
        .thresholds(thresholds("green", (1, "orange"), (5, "red"))),
    ]


def ingest_rate() -> timeseries.Panel:
    return (
        _series_panel(
            "Ingest rate",
            "MQTT messages handled per second by outcome, and readings newly stored per second.",
            "suffix: /s",
        )
        .with_target(
            prom_target(
                "sum by (outcome) (rate(smartby_ingest_messages_total[$__rate_interval]))",
                "messages {{outcome}}",
            )
        )
        .with_target(
            prom_target(
                "sum(rate(smartby_ingest_readings_written_total[$__rate_interval]))",
                "readings stored",
                ref="B",
            )
        )
    )


def commit_latency() -> timeseries.Panel:
    return (
        _series_panel(
            "Commit latency",
            "Time to write and commit one batch (p50 and p99 over all workers). The budget "
            f"for publish-to-commit p99 is {COMMIT_P99_BUDGET_S:g} s.",
            "s",
        )
        .with_target(
            prom_target(
                "histogram_quantile(0.99, sum by (le) "
                "(rate(smartby_ingest_commit_seconds_bucket[$__rate_interval])))",
                "p99",
            )
        )
        .with_target(
            prom_target(
                "histogram_quantile(0.5, sum by (le) "
                "(rate(smartby_ingest_commit_seconds_bucket[$__rate_interval])))",
                "p50",
                ref="B",
            )
        )
        .thresholds(thresholds("green", (COMMIT_P99_BUDGET_S, "red")))
        .thresholds_style(dashed_threshold_lines())
    )


def queue_depth() -> timeseries.Panel:
    return (
        _series_panel(
            "Queue depth per worker",
            "Messages received and not yet written. Near the receive maximum "
            f"({QUEUE_SIZE:,}) the broker holds messages back: the database is not keeping up.",
            "none",
        )
        .with_target(prom_target("sum by (instance) (smartby_ingest_queue_depth)", "{{instance}}"))
        .thresholds(thresholds("green", (QUEUE_SIZE / 2, "orange"), (QUEUE_SIZE * 0.9, "red")))
        .thresholds_style(dashed_threshold_lines())
    )


def quarantine_rate() -> timeseries.Panel:
    return _series_panel(
        "Quarantined per second by reason (workers)",
        "Messages or records the workers quarantined, by reason, as the workers count them.",
        "suffix: /s",
    ).with_target(
        prom_target(
            "sum by (reason) (rate(smartby_ingest_quarantined_total[$__rate_interval]))",
            "{{reason}}",
        )
    )


def api_requests() -> timeseries.Panel:
    return _series_panel(
        "API requests by status",
        "Requests per second to the open-data API by HTTP status.",
        "reqps",
    ).with_target(
        prom_target(
            "sum by (status) (rate(smartby_api_requests_total[$__rate_interval]))", "{{status}}"
        )
    )


def api_latency() -> timeseries.Panel:
    return (
        _series_panel(
            "API latency p99 by route",
            "99th percentile response time per route; the budget is "
            f"{API_P99_BUDGET_S * 1000:g} ms.",
            "s",
        )
        .with_target(
            prom_target(
                "histogram_quantile(0.99, sum by (le, route) "
                "(rate(smartby_api_request_duration_seconds_bucket[$__rate_interval])))",
                "{{route}}",
            )
        )
        .thresholds(thresholds("green", (API_P99_BUDGET_S, "red")))
        .thresholds_style(dashed_threshold_lines())
    )


def quarantine_by_reason() -> timeseries.Panel:
    query = """
        SELECT $__timeGroupAlias(q.received_at, $__interval),
               q.reason AS metric,
               count(*) AS value
        FROM quarantine q
        WHERE $__timeFilter(q.received_at)
        GROUP BY 1, 2
        ORDER BY 1, 2
    """
    return _counts(
        "Quarantined messages by reason (database)",
        "Rejected messages and records stored in the quarantine table, per interval, by "
        "reason. Each keeps its raw payload for inspection.",
        query,
        "1m",
    )


def latest_quarantined() -> table.Panel:
    query = """
        SELECT q.received_at AS "Received",
               q.device_id AS "Device",
               q.topic AS "Topic",
               q.reason AS "Reason",
               q.detail AS "Detail",
               octet_length(q.payload) AS "Bytes"
        FROM quarantine q
        WHERE $__timeFilter(q.received_at)
        ORDER BY q.received_at DESC
        LIMIT 200
    """
    return (
        table.Panel()
        .show_header(True)
        .title("Latest quarantined messages")
        .description("The 200 most recent rejections in the time range, newest first.")
        .span(12)
        .height(8)
        .with_target(
            sql_target(
                query,
                ["Received", "Device", "Topic", "Reason", "Detail", "Bytes"],
                SqlFormat.TABLE,
            )
        )
        .override_by_name("Bytes", [unit("bytes")])
    )


def devices_table() -> table.Panel:
    # each state's colour, problems first
    states = {
        "offline": "red",
        "silent": "orange",
        "never seen": "purple",
        "disabled": "text",
        "ok": "green",
    }
    order = " ".join(f"WHEN '{name}' THEN {rank}" for rank, name in enumerate(states, 1))
    query = f"""
        SELECT d.id AS "Device",
               d.kind AS "Kind",
               coalesce(s.name, d.site_id) AS "Site",
               {_DEVICE_STATE} AS "State",
               d.last_seen AS "Last seen",
               extract(epoch FROM $__timeTo()::timestamptz - d.last_seen) AS "Silent for",
               d.battery AS "Battery",
               d.rssi AS "RSSI"
        FROM devices d
        LEFT JOIN sites s ON s.id = d.site_id
        WHERE d.kind IN ($kind)
        ORDER BY CASE {_DEVICE_STATE} {order} END, d.id
    """
    mapping = value_texts({name: (name, colour) for name, colour in states.items()})
    return (
        table.Panel()
        .show_header(True)
        .title("Devices: offline or silent first")
        .description(
            "Every device of the selected kinds, problems first. Silent: nothing heard for "
            f"{SILENT_AFTER['traffic']} (traffic) or {SILENT_AFTER['other']} (others) before "
            "the end of the time range. Battery as the device reports it (V or %)."
        )
        .span(12)
        .height(10)
        .with_target(
            sql_target(
                query,
                ["Device", "Kind", "Site", "State", "Last seen", "Silent for", "Battery", "RSSI"],
                SqlFormat.TABLE,
            )
        )
        .override_by_name(
            "State",
            [
                dbm.DynamicConfigValue(id_val="mappings", value=mapping),
                cell("color-background"),
            ],
        )
        .override_by_name("Silent for", [unit("dtdurations"), decimals(0)])
        .override_by_name("RSSI", [unit("dBm")])
        .override_by_name("Battery", [unit("none"), decimals(2)])
    )


def qc_by_device() -> table.Panel:
    counts = ",\n".join(
        f'               count(*) FILTER (WHERE r.quality = {flag}) AS "{name.capitalize()}"'
        for flag, name in QC_FLAGS.items()
    )
    query = f"""
        SELECT d.id AS "Device",
               d.kind AS "Kind",
{counts},
               (count(*) FILTER (WHERE r.quality IN (3, 4)))::float8 / count(*)
                   AS "Suspect or failed"
        FROM readings r
        JOIN series se ON se.id = r.series_id
        JOIN devices d ON d.id = se.device_id
        WHERE $__timeFilter(r.time)
          AND d.kind IN ($kind)
          AND se.metric IN ($metric)
        GROUP BY d.id, d.kind
        ORDER BY "Suspect or failed" DESC, d.id
    """
    columns = ["Device", "Kind", *(n.capitalize() for n in QC_FLAGS.values()), "Suspect or failed"]
    return (
        table.Panel()
        .show_header(True)
        .title("QC flags by device")
        .description(
            "Readings in the time range by QARTOD flag (1 good, 2 not evaluated, 3 suspect, "
            "4 fail, 9 missing); devices with the most suspect or failed readings first."
        )
        .span(12)
        .height(10)
        .with_target(sql_target(query, columns, SqlFormat.TABLE))
        .override_by_name(
            "Suspect or failed",
            [
                unit("percentunit"),
                decimals(1),
                cell("color-background"),
                column_thresholds("green", (0.01, "orange"), (0.05, "red")),
            ],
        )
    )


def qc_over_time() -> timeseries.Panel:
    names = " ".join(f"WHEN {flag} THEN '{name}'" for flag, name in QC_FLAGS.items())
    query = f"""
        SELECT $__timeGroupAlias(r.time, $__interval),
               CASE r.quality {names} END AS metric,
               count(*) AS value
        FROM readings r
        JOIN series se ON se.id = r.series_id
        JOIN devices d ON d.id = se.device_id
        WHERE $__timeFilter(r.time)
          AND r.quality <> 1
          AND d.kind IN ($kind)
          AND se.metric IN ($metric)
        GROUP BY 1, 2
        ORDER BY 1, 2
    """
    colours = {"not evaluated": "blue", "suspect": "orange", "fail": "red", "missing": "purple"}
    panel = _counts(
        "Readings not flagged good",
        "Readings per interval flagged not evaluated, suspect, fail or missing.",
        query,
        "5m",
    )
    for name, colour in colours.items():
        panel.override_by_name(name, [fixed_colour(colour)])
    return panel


def stored_per_minute() -> timeseries.Panel:
    query = """
        SELECT $__timeGroupAlias(r.time, $__interval),
               d.kind AS metric,
               count(*) / ($__interval_ms / 60000.0) AS value
        FROM readings r
        JOIN series se ON se.id = r.series_id
        JOIN devices d ON d.id = se.device_id
        WHERE $__timeFilter(r.time)
          AND r.quality NOT IN (4, 9)
          AND d.kind IN ($kind)
        GROUP BY 1, 2
        ORDER BY 1, 2
    """
    # (from the readings: series reporting once a minute or slower have no 1-minute
    # rollup rows, migration 0014)
    return (
        _series_panel(
            "Readings stored per minute by device kind (database)",
            "Usable readings (not failed) stored, per minute: what actually landed, by "
            "device kind.",
            "suffix: /min",
        )
        .interval("1m")
        .with_target(sql_target(query, SERIES_COLUMNS))
    )


def _kind_variable() -> db.CustomVariable:
    return multi_with_all(
        db.CustomVariable("kind")
        .label("Device kind")
        .values("Air quality : air_quality, Energy : energy, Traffic : traffic")
    )


def _metric_variable() -> db.QueryVariable:
    """The metrics the selected kinds of device measure."""
    return sql_variable(
        "metric",
        "Metric",
        "SELECT DISTINCT m.key AS __value, m.name AS __text FROM metrics m "
        "JOIN series se ON se.metric = m.key JOIN devices d ON d.id = se.device_id "
        "WHERE d.kind IN ($kind) ORDER BY 2",
    )


def firing_alerts() -> table.Panel:
    """What Prometheus's alert rules (deploy/prometheus/rules/) raise now: its own
    ``ALERTS`` series, one row per firing alert."""
    hidden = {"Time": True, "__name__": True, "alertstate": True, "Value": True}
    return (
        table.Panel()
        .show_header(True)
        .title("Firing alerts (Prometheus)")
        .description(
            "The alerts Prometheus's rules raise now (sent to Alertmanager, which notifies "
            "the operations team). Empty is good. Each alert's runbook: README, "
            '"Operations: when an alert fires".'
        )
        .span(12)
        .height(6)
        .with_target(prom_target('ALERTS{alertstate="firing"}', "{{alertname}}", instant=True))
        .with_transformation(
            dbm.DataTransformerConfig(
                id_val="organize", options={"excludeByName": hidden, "indexByName": {}}
            )
        )
    )


def _alert_rule_table(alert: SqlAlert, title: str, description: str, value: str) -> table.Panel:
    """The rows a Grafana alert rule (`dashboards.alerting`) fires for now: its own query,
    less the rows under its threshold."""
    query = (
        f"SELECT * FROM (\n{alert.sql}\n) rule\nWHERE rule.{alert.columns[-1]} > {alert.above:g}"
    )
    return (
        table.Panel()
        .show_header(True)
        .title(title)
        .description(f"{description} The same query as Grafana's alert rule {alert.title}.")
        .span(6)
        .height(6)
        .with_target(sql_target(query, alert.columns, SqlFormat.TABLE))
        .override_by_name(alert.columns[-1], [display(value), decimals(1)])
    )


def alert_rule_tables() -> list[table.Panel]:
    return [
        _alert_rule_table(
            DEVICE_SILENT,
            "Alert: devices silent (database)",
            "Active devices quiet for longer than three reporting intervals, now.",
            "Times the allowed silence",
        ),
        _alert_rule_table(
            AIR_QUALITY_POOR,
            "Alert: stations with poor air",
            "Stations whose latest hourly air quality index (within two hours) is Poor "
            "(4) or worse, now.",
            "Index level",
        ),
    ]


def build(timezone: str) -> dbm.Dashboard:
    dashboard = (
        base_dashboard(
            UID,
            "Operations",
            "Platform health: ingest, quarantine, devices, data quality and the API.",
            ["operations"],
            timezone,
            time_from="now-6h",
            refresh="30s",
        )
        .with_variable(_kind_variable())
        .with_variable(_metric_variable())
    )
    for panel in health_stats():
        dashboard.with_panel(panel)
    dashboard.with_row(db.Row("Alerts"))
    dashboard.with_panel(firing_alerts())
    for rule_panel in alert_rule_tables():
        dashboard.with_panel(rule_panel)
    dashboard.with_row(db.Row("Ingest workers (Prometheus)"))
    for series_panel in (ingest_rate(), commit_latency(), queue_depth(), quarantine_rate()):
        dashboard.with_panel(series_panel)
    dashboard.with_row(db.Row("Devices and data (database)"))
    dashboard.with_panel(devices_table()).with_panel(qc_by_device())
    dashboard.with_panel(qc_over_time()).with_panel(stored_per_minute())
    dashboard.with_panel(quarantine_by_reason()).with_panel(latest_quarantined())
    dashboard.with_row(db.Row("Open-data API (Prometheus)"))
    dashboard.with_panel(api_requests()).with_panel(api_latency())
    return dashboard.build()
