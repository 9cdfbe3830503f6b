"""Every generated dashboard is valid for the Grafana that docker-compose.yml runs: it
validates against the JSON schema of Grafana's own dashboard model at that version
(npm's ``@grafana/schema``, vendored by scripts/grafana-schema), panel options and
custom field settings included, and the SDK that wrote it is the variant chosen for
that version (README, "How the Grafana SDK pin is chosen")."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from functools import cache
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from dashboards.build import generate

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parent / "grafana_schema"
MANIFEST = json.loads((SCHEMAS / "MANIFEST.json").read_text(encoding="utf-8"))
#: panel types @grafana/schema has no options schema for (their options are TypeScript
#: inside Grafana's app): the dashboard schema still checks the panel itself
NO_OPTIONS_SCHEMA = {"row", "alertlist"}

DASHBOARDS = {name: json.loads(text) for name, text in generate().dashboards.items()}


def compose_grafana_version() -> str:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    (found,) = re.findall(r"^\s*image:\s*grafana/grafana(?:-oss)?:(\d+\.\d+\.\d+)\s*$", text, re.M)
    return str(found)


@cache
def validator(path: str, definition: str | None = None) -> Any:
    schema = json.loads((SCHEMAS / path).read_text(encoding="utf-8"))
    if definition is not None:
        schema = {
            "$schema": schema["$schema"],
            "$ref": f"#/definitions/{definition}",
            "definitions": schema["definitions"],
        }
    return jsonschema_rs.validator_for(schema)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels") or [])
    return found


def problems(dashboard: dict[str, Any]) -> list[str]:
    """Every schema violation of a dashboard, its panels' options and custom field
    settings included."""
    found = [
        f"{e.instance_path}: {e.message}"
        for e in validator("dashboard.json").iter_errors(dashboard)
    ]
    for panel in panels(dashboard):
        kind = panel["type"]
        if kind in NO_OPTIONS_SCHEMA:
            continue
        schema_file = MANIFEST["panels"].get(kind)
        if schema_file is None:
            found.append(f"panel {panel['title']!r}: no vendored schema for type {kind!r}")
            continue
        for error in validator(schema_file, "Options").iter_errors(panel.get("options")):
            found.append(f"panel {panel['title']!r} options{error.instance_path}: {error.message}")
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        definitions = json.loads((SCHEMAS / schema_file).read_text("utf-8"))["definitions"]
        if custom is not None and "FieldConfig" in definitions:
            for error in validator(schema_file, "FieldConfig").iter_errors(custom):
                found.append(
                    f"panel {panel['title']!r} custom{error.instance_path}: {error.message}"
                )
    return found


def test_the_vendored_schemas_match_their_manifest_offline() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "grafana-schema"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert MANIFEST["integrity"].startswith("sha512-")
    assert MANIFEST["generator"]["ts-json-schema-generator"]


def test_the_schema_is_of_the_grafana_compose_runs() -> None:
    assert MANIFEST["version"] == compose_grafana_version()


def test_the_sdk_is_the_newest_variant_not_newer_than_that_grafana() -> None:
    """The SDK publishes one variant per Grafana minor (``<epoch>!<major>.<minor>.0``)
    and none for 12.x: the pin is the newest variant not newer than compose's
    Grafana, and its dashboards carry the schemaVersion that Grafana writes."""
    sdk = installed_version("grafana-foundation-sdk")
    epoch, _, variant = sdk.partition("!")
    assert epoch.isdigit(), f"not a Grafana-variant build: {sdk}"
    assert variant, f"not a Grafana-variant build: {sdk}"
    grafana = tuple(int(p) for p in compose_grafana_version().split("."))
    assert tuple(int(p) for p in variant.split(".")) <= grafana
    assert variant == "11.6.0", "a newer SDK variant exists? see the README before moving"
    for name, dashboard in DASHBOARDS.items():
        assert dashboard["schemaVersion"] == MANIFEST["schemaVersion"], name


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_validates_against_grafanas_schema(name: str) -> None:
    found = problems(DASHBOARDS[name])
    assert not found, f"{name}:\n" + "\n".join(found)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_no_panel_leaves_options_null_or_its_data_source_unset(name: str) -> None:
    for panel in panels(DASHBOARDS[name]):
        if panel["type"] == "row":
            continue
        assert isinstance(panel.get("options"), dict), f"{name}: {panel['title']!r} options"
        source = panel.get("datasource")
        assert source, f"{name}: {panel['title']!r} has no data source"
        assert source.get("uid"), f"{name}: {panel['title']!r} has no data source uid"
        for target in panel.get("targets", []):
            assert target["datasource"] == source, f"{name}: {panel['title']!r} mixes sources"


def test_the_validation_catches_what_grafana_would_not_understand() -> None:
    """The check is not vacuous: null options, an unknown panel field, an unknown
    option and a wrongly typed field setting are all reported."""
    name = "smartby-operations.json"
    broken = copy.deepcopy(DASHBOARDS[name])
    graphs = [p for p in panels(broken) if p["type"] == "timeseries"]
    tables = [p for p in panels(broken) if p["type"] == "table"]
    tables[0]["options"] = None
    graphs[0]["colour"] = "red"
    where = broken["panels"].index(graphs[0])
    graphs[1]["options"]["legend"]["where"] = "left"
    graphs[2]["fieldConfig"]["defaults"]["custom"] = {"lineWidth": "thick"}
    lines = problems(broken)
    found = "\n".join(lines)
    assert "null is not of type" in found
    # a panel is "a Panel or a RowPanel": the error is that it is neither
    assert any(line.startswith(f"['panels', {where}]") and "colour" in line for line in lines)
    assert "'where' was unexpected" in found
    assert "lineWidth" in found
