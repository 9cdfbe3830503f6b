"""The committed dashboard JSON and data-source file are what the code generates, and the
dashboards are put together so that Grafana shows them correctly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dashboards.build import DATASOURCES_YAML, GENERATED, generate, write
from dashboards.sql import SqlQuery
from smartby.cli import cli
from tests.dashboards.panels import dashboards_by_uid, panels, sql_queries, variables

ROOT = Path(__file__).resolve().parents[2]
KNOWN_SOURCES = {
    ("grafana-postgresql-datasource", "smartby-timescaledb"),
    ("prometheus", "smartby-prometheus"),
}
# panel types whose values are numbers on an axis or a big number: they need a unit
NEEDS_UNIT = {"timeseries", "stat", "bargauge"}


def test_committed_dashboards_are_what_the_code_generates() -> None:
    generated = generate()
    committed = {p.name: p.read_text(encoding="utf-8") for p in GENERATED.glob("*.json")}
    assert set(committed) == set(generated.dashboards), "run `smartby dashboards build`"
    for name, text in generated.dashboards.items():
        assert committed[name] == text, f"{name} is stale: run `smartby dashboards build`"
    assert DATASOURCES_YAML.read_text(encoding="utf-8") == generated.datasources_yaml, (
        "datasources.yaml is stale: run `smartby dashboards build`"
    )


def test_generation_is_deterministic() -> None:
    assert generate() == generate()


def test_build_command_writes_the_files_and_removes_stale_ones(tmp_path: Path) -> None:
    (tmp_path / "old-dashboard.json").write_text("{}")
    yaml_path = tmp_path / "provisioning" / "datasources.yaml"
    result = CliRunner().invoke(
        cli, ["dashboards", "build", "--out", str(tmp_path), "--datasources-out", str(yaml_path)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(generate().dashboards)
    assert yaml_path.read_text(encoding="utf-8") == generate().datasources_yaml
    again = CliRunner().invoke(
        cli, ["dashboards", "build", "--out", str(tmp_path), "--datasources-out", str(yaml_path)]
    )
    assert "up to date" in again.output
    assert write(tmp_path, yaml_path) == []


def test_compose_mounts_the_generated_folder_and_the_provisioning() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./dashboards/generated:/var/lib/grafana/dashboards/smartby:ro" in volumes
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/smartby"
    sources = yaml.safe_load(DATASOURCES_YAML.read_text(encoding="utf-8"))["datasources"]
    (pg,) = (s for s in sources if s["uid"] == "smartby-timescaledb")
    assert pg["jsonData"]["timescaledb"] is True, "the TimescaleDB option makes time_bucket"


def test_dashboards_have_fixed_uids_and_titles() -> None:
    dashboards = dashboards_by_uid()
    assert set(dashboards) == {
        "smartby-air-quality",
        "smartby-energy",
        "smartby-traffic",
        "smartby-operations",
    }
    for uid, dashboard in dashboards.items():
        data = json.loads(generate().dashboards[f"{uid}.json"])
        ids = [p["id"] for p in data["panels"]]
        assert ids == list(range(1, len(ids) + 1)), f"{uid}: panel ids"
        assert dashboard.title
        assert dashboard.tags
        assert "smartby" in dashboard.tags


@pytest.mark.parametrize("uid", sorted(dashboards_by_uid()))
def test_every_panel_is_described_sourced_and_has_units(uid: str) -> None:
    dashboard = dashboards_by_uid()[uid]
    names = {v.name for v in variables(dashboard)}
    for panel in panels(dashboard):
        assert panel.description, f"{uid}: panel {panel.title!r} has no description"
        assert panel.targets, f"{uid}: panel {panel.title!r} has no query"
        for target in panel.targets:
            source = getattr(target, "datasource", None)
            assert source is not None, f"{uid}: {panel.title!r} names no data source"
            assert (source.type_val, source.uid) in KNOWN_SOURCES, f"{panel.title!r}: {source}"
            text = target.raw_sql if isinstance(target, SqlQuery) else getattr(target, "expr", "")
            for used in re.findall(r"\$\{?([a-z]\w*)", text):
                assert used in names, f"{uid}: {panel.title!r} uses ${used}, not a variable"
        if panel.type_val in NEEDS_UNIT:
            defaults = panel.field_config.defaults if panel.field_config else None
            assert defaults is not None, f"{uid}: {panel.title!r} has no field config"
            assert defaults.unit, f"{uid}: {panel.title!r} has no unit"


def test_map_layers_read_columns_the_query_returns() -> None:
    maps = [q for q in sql_queries() if q.panel.type_val == "geomap"]
    assert maps, "the air-quality dashboard has a station map"
    for item in maps:
        options = json.loads(json.dumps(item.panel.options, default=lambda o: o.to_json()))
        for layer in options["layers"]:
            location = layer["location"]
            style = layer["config"]["style"]
            used = {location["latitude"], location["longitude"], style["color"]["field"]}
            used.add(style["text"]["field"])
            assert used <= set(item.query.columns), f"{item.id}: layer reads {used}"


def test_variables_used_in_sql_are_multi_value_with_all() -> None:
    for uid, dashboard in dashboards_by_uid().items():
        for variable in variables(dashboard):
            assert variable.multi, f"{uid}: ${variable.name} should allow several values"
            assert variable.include_all, f"{uid}: ${variable.name} should offer All"
            assert variable.all_value is None, "a custom all-value would bypass quoting"
