"""`smartby metrics ...` extends the catalogue without a migration: a metric added from
the shell, with its unit checked against the SenML units, flows through a running
ingest worker into /v1, the SensorThings ObservedProperties and the dashboards'
metric variable, without restarting or changing anything."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from stack.mosquitto import MosquittoBroker
from tests.dashboards.grafana_macros import Variable, expand
from tests.dashboards.panels import dashboards_by_uid, variables
from tests.fixtures.ingest import count, running_worker, wait_for
from tests.fixtures.mqtt import publish_one
from tests.fixtures.profiles import readings, register_device
from tests.fixtures.services import Services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app

NOISE = [
    "noise_laeq",
    "--name",
    "Noise level (LAeq)",
    "--unit",
    "dB",
    "--symbol",
    "dB(A)",
    "--domain",
    "noise",
    "--min",
    "0",
    "--max",
    "140",
    "--definition",
    "http://qudt.org/vocab/quantitykind/SoundPressureLevel",
    "--alias",
    "laeq",
    "--qc",
    "spike_suspect=15",
    "--resolution",
    "0.1",
]


def smartby(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env["SMARTBY_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "smartby", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def added_metrics(db_url: str) -> Iterator[list[str]]:
    """Metrics a test adds: removed afterwards (the catalogue outlives a test)."""
    keys: list[str] = []
    yield keys
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, rollups, series RESTART IDENTITY CASCADE")
        conn.execute("DELETE FROM metrics WHERE key = ANY(%s)", (keys,))


def test_add_list_and_show_a_metric(db_url: str, added_metrics: list[str]) -> None:
    added_metrics.append("noise_laeq")
    added = smartby(db_url, "metrics", "add", *NOISE)
    assert added.returncode == 0, added.stderr
    assert "added noise_laeq: Noise level (LAeq) in dB(A), 0 .. 140" in added.stdout
    listed = smartby(db_url, "metrics", "list")
    assert listed.returncode == 0
    assert any(
        line.split()[:3] == ["noise_laeq", "noise", "dB(A)"] for line in listed.stdout.splitlines()
    )
    shown = smartby(db_url, "metrics", "show", "noise_laeq")
    assert shown.returncode == 0
    assert "aliases     laeq" in shown.stdout
    assert "qc          spike_suspect=15.0" in shown.stdout
    assert "resolution  0.1 dB(A)" in shown.stdout  # exports round to it (issue 16)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"--unit": "dBA"}, "'dBA' is not a SenML unit"),
        ({"--min": "200"}, "lower bound 200 is not below the upper bound 140"),
        ({"--domain": "Noise Level"}, "must be one lower-case word"),
        ({"--definition": "see the manual"}, "must be an http(s) or urn URI"),
        ({"--qc": "spike=3"}, "unknown QC setting 'spike'"),
        ({"--resolution": "0"}, "the resolution must be a positive number"),
        ({"--alias": "pm2.5"}, None),  # re-pointing an alias is allowed (checked below)
    ],
)
def test_a_metric_that_cannot_work_is_refused_in_one_line(
    db_url: str, added_metrics: list[str], change: dict[str, str], problem: str | None
) -> None:
    args = list(NOISE)
    for option, value in change.items():
        args[args.index(option) + 1] = value
    result = smartby(db_url, "metrics", "add", *args)
    if problem is None:
        added_metrics.append("noise_laeq")
        assert result.returncode == 0, result.stderr
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT metric FROM field_aliases WHERE field = 'pm2.5'").fetchone()
            assert row == ("noise_laeq",)
            conn.execute("UPDATE field_aliases SET metric = 'pm25' WHERE field = 'pm2.5'")
        return
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("smartby: error: metric noise_laeq:")
    assert problem in line


def test_adding_a_metric_twice_or_showing_an_unknown_one_fails_cleanly(
    db_url: str, added_metrics: list[str]
) -> None:
    added_metrics.append("noise_laeq")
    assert smartby(db_url, "metrics", "add", *NOISE).returncode == 0
    again = smartby(db_url, "metrics", "add", *NOISE)
    assert (again.returncode, again.stderr.strip()) == (
        1,
        "smartby: error: metric 'noise_laeq' already exists",
    )
    unknown = smartby(db_url, "metrics", "show", "radon")
    assert unknown.returncode == 1
    assert "there is no metric 'radon'" in unknown.stderr


def test_a_new_metric_flows_through_ingest_the_api_sensorthings_and_the_dashboards(
    services: Services,
    db_url: str,
    conn: psycopg.Connection,
    broker: MosquittoBroker,
    added_metrics: list[str],
) -> None:
    """A noise sensor (an ESPHome node) publishes while the worker runs; its readings
    are quarantined as unknown_metric until `smartby metrics add` declares the metric,
    and are stored from then on, without a restart."""
    register_device(conn, "noise-1", "esphome", "noise1")
    settings = services.settings(mqtt_port=broker.port, ingest_metrics_port=0, ingest_batch_ms=20)
    with running_worker(settings):
        publish_one(broker.port, "noise1/sensor/laeq/state", b"50.0")
        wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 1, what="quarantine")
        [(reason,)] = conn.execute("SELECT reason FROM quarantine").fetchall()
        assert reason == "unknown_metric"
        added_metrics.append("noise_laeq")
        assert smartby(db_url, "metrics", "add", *NOISE).returncode == 0

        def stored() -> bool:
            publish_one(broker.port, "noise1/sensor/laeq/state", b"54.2")
            return count(conn, "SELECT count(*) FROM readings") > 0

        wait_for(stored, timeout=60, what="the catalogue read again and the reading stored")
    assert {v for _, v in readings(conn, "noise-1")["noise_laeq"]} == {54.2}

    app_settings = services.settings(database_url=db_url, api_rate_limit="1000000/minute")
    with TestClient(create_app(app_settings)) as client:
        metric = client.get("/v1/metrics/noise_laeq")
        assert metric.status_code == 200
        document = metric.json()["data"]
        assert (document["unit"], document["unit_symbol"], document["domain"]) == (
            "dB",
            "dB(A)",
            "noise",
        )
        latest = client.get("/v1/latest").json()
        assert any(row["metric"] == "noise_laeq" and row["value"] == 54.2 for row in latest["data"])
        sta = client.get("/sta/v1.1/ObservedProperties")
        assert sta.status_code == 200
        names = {item["name"] for item in sta.json()["value"]}
        assert "Noise level (LAeq)" in names

    [metric_variable] = [
        v for v in variables(dashboards_by_uid()["smartby-operations"]) if v.name == "metric"
    ]
    assert isinstance(metric_variable.query, str)
    now = datetime.now(UTC)
    sql = expand(
        metric_variable.query,
        now - timedelta(hours=6),
        now,
        {"kind": Variable(["air_quality"], multi=True, include_all=True)},
    )
    offered = conn.execute(sql).fetchall()
    assert ("noise_laeq", "Noise level (LAeq)") in offered


def readme_metric_commands() -> list[list[str]]:
    """The ``smartby metrics add`` examples of the README, as argument lists."""
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    joined = text.replace("\\\n", " ")
    return [
        shlex.split(line.strip())[1:]
        for line in joined.splitlines()
        if line.strip().startswith("smartby metrics add ")
    ]


def test_the_readmes_new_metrics_are_accepted_as_written(
    db_url: str, added_metrics: list[str]
) -> None:
    """Noise in dB(A), CO2 in ppm, snow depth in cm and water level in m."""
    commands = readme_metric_commands()
    assert [args[2] for args in commands] == ["noise_laeq", "co2", "snow_depth", "water_level"]
    for args in commands:
        added_metrics.append(args[2])
        result = smartby(db_url, *args)
        assert result.returncode == 0, result.stderr
    with psycopg.connect(db_url) as conn:
        units = dict(
            conn.execute(
                "SELECT key, unit FROM metrics WHERE key = ANY(%s)", (added_metrics,)
            ).fetchall()
        )
    assert units == {"noise_laeq": "dB", "co2": "ppm", "snow_depth": "cm", "water_level": "m"}
