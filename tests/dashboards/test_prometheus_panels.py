"""Every Prometheus panel names metrics, and labels, that the services really export:
checked against a scrape of a running ingest worker and of the API app's /metrics."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from stack.ports import free_port
from tests.dashboards.panels import PromPanelQuery, prom_queries
from tests.fixtures.ingest import count, register, running_worker, unique_prefix, wait_for
from tests.fixtures.mqtt import publish_one
from tests.fixtures.services import Services
from tests.fixtures.simulated import SimulatedData

ROOT = Path(__file__).resolve().parents[2]
QUERIES = prom_queries()
#: labels Prometheus adds to every scraped series
SCRAPE_LABELS = {"job", "instance"}

_METRIC = re.compile(r"\b(smartby_[a-zA-Z0-9_]+|up|ALERTS)\b\s*(\{[^}]*\})?")
#: the labels of Prometheus's own ALERTS series: the rule's name and state, and the
#: labels of the rules (deploy/prometheus/rules/)
ALERTS_LABELS = {"alertname", "alertstate", "severity", "device", "kind", "site", "mountpoint"}
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*\"([^\"]*)\"")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exported(text: str) -> dict[str, set[str]]:
    """Sample name -> the label names it carries, from an exposition text."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


@pytest.fixture(scope="module")
def ingest_scrape(services: Services) -> str:
    """One stored and one quarantined message through a worker, then its /metrics."""
    url = services.database_url
    prefix = unique_prefix()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM quarantine")
        conn.execute("DELETE FROM devices WHERE id = 'prom-aq-1'")
        register(conn, "prom-aq-1")
        port = free_port()
        settings = services.settings(
            mqtt_topic_prefix=prefix, ingest_metrics_port=port, ingest_batch_ms=20
        )
        with running_worker(settings):
            publish_one(services.mqtt_port, f"{prefix}/prom-aq-1/telemetry", b'{"pm25": 1}')
            publish_one(services.mqtt_port, f"{prefix}/nobody/telemetry", b'{"pm25": 1}')
            wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 1, what="quarantine")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                return str(reply.read().decode())


@pytest.fixture(scope="module")
def api_scrape(services: Services, simulated: SimulatedData) -> str:
    """A few requests to the API app, then its /metrics."""
    from api.app import create_app

    app = create_app(services.settings(database_url=simulated.url), database_url=simulated.url)
    with TestClient(app) as client:
        client.get("/v1/sites")
        client.get("/v1/no-such-thing")
        reply = client.get("/metrics")
        assert reply.status_code == 200
        return str(reply.text)


@pytest.fixture(scope="module")
def scraped(ingest_scrape: str, api_scrape: str) -> dict[str, set[str]]:
    both = exported(ingest_scrape)
    for name, labels in exported(api_scrape).items():
        both.setdefault(name, set()).update(labels)
    return both


def scrape_jobs() -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml's scrape configs by job name."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_there_are_prometheus_panels() -> None:
    titles = {q.panel.title for q in QUERIES}
    assert {"Ingest rate", "Commit latency", "Queue depth per worker"} <= titles


@pytest.mark.parametrize("item", QUERIES, ids=[q.id for q in QUERIES])
def test_prometheus_panel_names_exported_metrics(
    scraped: dict[str, set[str]], item: PromPanelQuery
) -> None:
    expr = item.query.expr
    uses = _METRIC.findall(expr)
    assert uses, f"{item.id}: names no smartby metric: {expr}"
    labels_available = set(SCRAPE_LABELS)
    for name, selector in uses:
        matchers = dict(_MATCHER.findall(selector))
        if name == "ALERTS":
            labels_available |= ALERTS_LABELS
            assert set(matchers) <= ALERTS_LABELS, f"{item.id}: ALERTS has no label {matchers}"
            continue
        if name == "up":
            # Prometheus's own per-target series: the job must be one it scrapes
            assert matchers.get("job") in scrape_jobs(), f"{item.id}: up of an unknown job"
            continue
        assert name in scraped, f"{item.id}: {name} is not exported (scraped: {sorted(scraped)})"
        labels_available |= scraped[name]
        unknown = set(matchers) - scraped[name] - SCRAPE_LABELS
        assert not unknown, f"{item.id}: {name} has no label {unknown}"
    for group in _GROUPING.findall(expr):
        for label in (part.strip() for part in group.split(",") if part.strip()):
            assert label in labels_available, f"{item.id}: groups by unknown label {label}"
    for template in re.findall(r"\{\{\s*(\w+)\s*\}\}", item.query.legend_format or ""):
        assert template in labels_available, f"{item.id}: legend uses unknown {template}"


def test_the_scrape_config_covers_ingest_and_api() -> None:
    jobs = scrape_jobs()
    ingest = jobs["smartby-ingest"]["dns_sd_configs"][0]
    assert ingest["names"] == ["ingest"]
    assert ingest["port"] == 9101
    assert jobs["smartby-api"]["static_configs"][0]["targets"] == ["api:8000"]
