"""Prometheus's alerting rules (deploy/prometheus/rules/) pass ``promtool check rules``,
and their unit tests (deploy/prometheus/tests/) pass ``promtool test rules`` with a
case where each rule fires and one where it does not; every metric a rule reads is
one the platform (or node-exporter) exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from api.device_metrics import DeviceCollector
from api.edge import ApiMetrics
from ingest.worker import IngestMetrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "smartby.yml"
RULE_TESTS = PROMETHEUS / "tests" / "smartby_test.yml"
#: node-exporter's metrics the disk rules read (node-exporter runs in compose only)
NODE_EXPORTER = {"node_filesystem_avail_bytes", "node_filesystem_size_bytes"}
#: series Prometheus makes itself
BUILT_IN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
_FUNCTIONS_AND_WORDS = {
    "sum", "max", "min", "rate", "increase", "time", "absent", "histogram_quantile",
    "predict_linear", "by", "without", "on", "and", "or", "unless", "le", "instance",
}  # fmt: skip


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: scripts/setup installs it (Debian: prometheus)")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def exported_names() -> set[str]:
    """Every sample name the ingest worker and the API export (their registries as
    built by the code, the device collector included)."""
    names: set[str] = set()
    api = ApiMetrics()
    api.registry.register(DeviceCollector())
    for registry in (IngestMetrics().registry, api.registry):
        assert isinstance(registry, CollectorRegistry)
        for family in registry.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
            if family.type in ("counter",):
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def test_the_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_the_prometheus_config_loads_the_rules_and_sends_to_alertmanager() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert any((PROMETHEUS / pattern).parent == RULES.parent for pattern in config["rule_files"])
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["node"]["static_configs"][0]["targets"] == ["node-exporter:9100"]


def test_the_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    document = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert document["rule_files"] == ["../rules/smartby.yml"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in document["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert len(names) == len(rules()), "two rules share a name"
    assert names - fires == set(), "rules never tested firing"
    assert names - silent == set(), "rules never tested staying quiet"
    assert fires | silent <= names, "tests of rules that do not exist"


def test_every_rule_has_a_severity_summary_and_description() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_every_metric_a_rule_reads_is_exported() -> None:
    exported = exported_names()
    for rule in rules():
        expression = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^]]*\]', " ", rule["expr"])
        for name in set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expression)):
            if name in _FUNCTIONS_AND_WORDS or name.isdigit():
                continue
            known = exported | NODE_EXPORTER | BUILT_IN
            assert name in known, f"{rule['alert']} reads {name}, which nothing exports"
