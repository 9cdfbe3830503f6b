"""Generate the dashboards' JSON, the data-source provisioning file and the alert rules,
deterministically.

`smartby dashboards build` writes them where docker-compose.yml mounts them:
``dashboards/generated/<uid>.json`` (Grafana's file provider loads the folder),
``deploy/grafana/provisioning/datasources/datasources.yaml`` and, beside it,
``deploy/grafana/provisioning/alerting/smartby-alerts.yaml`` (`dashboards.alerting`).
The same code always writes the same bytes (sorted keys, fixed panel ids, no
timestamps), so the committed files are checked against the generator by a test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dbm

from dashboards import air_quality, energy, operations, traffic
from dashboards.alerting import provisioning_yaml as alerting_yaml
from dashboards.common import DEFAULT_TIMEZONE
from dashboards.datasources import provisioning_yaml

PACKAGE = Path(__file__).resolve().parent
GENERATED = PACKAGE / "generated"
DATASOURCES_YAML = (
    PACKAGE.parent / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
)
#: the alert rules' file, relative to the provisioning folder that holds datasources/
ALERTING = Path("alerting") / "smartby-alerts.yaml"
ALERTING_YAML = DATASOURCES_YAML.parent.parent / ALERTING

#: every dashboard, in the order of the dashboards' link menu
BUILDERS: tuple[Callable[[str], dbm.Dashboard], ...] = (
    air_quality.build,
    energy.build,
    traffic.build,
    operations.build,
)


def panel_datasource(panel: dbm.Panel) -> dbm.DataSourceRef:
    """The one data source of a panel's targets.  Grafana takes a panel's data source
    from the panel first: without it, a Prometheus panel falls back to the default data
    source (TimescaleDB) in the query editor and in some code paths of the renderer."""
    sources = {
        (source.type_val, source.uid)
        for target in panel.targets or []
        if (source := getattr(target, "datasource", None)) is not None
    }
    if len(sources) != 1:
        raise ValueError(f"panel {panel.title!r}: targets name {len(sources)} data sources")
    ((kind, uid),) = sources
    return dbm.DataSourceRef(type_val=kind, uid=uid)


def _finish(dashboard: dbm.Dashboard) -> None:
    """What every panel and variable needs and no builder should forget: panel ids in
    order, each panel's own data source, and no interval-only fields on variables
    that are not interval variables (the SDK writes ``auto*`` on every variable;
    Grafana 12's dashboard schema has them on none)."""
    for number, panel in enumerate(dashboard.panels or [], start=1):
        panel.id_val = number
        inner = panel.panels if isinstance(panel, dbm.RowPanel) else [panel]
        for each in inner:
            if isinstance(each, dbm.Panel):
                each.datasource = panel_datasource(each)
    templating = dashboard.templating
    for variable in (templating.list_val or []) if templating else []:
        if variable.type_val != "interval":
            variable.auto = variable.auto_min = variable.auto_count = None


def all_dashboards(timezone: str = DEFAULT_TIMEZONE) -> list[dbm.Dashboard]:
    """The dashboards as SDK models, finished (`_finish`)."""
    dashboards = []
    for build in BUILDERS:
        dashboard = build(timezone)
        _finish(dashboard)
        dashboards.append(dashboard)
    return dashboards


def dashboard_json(dashboard: dbm.Dashboard) -> str:
    return (
        json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def dashboard_dict(dashboard: dbm.Dashboard) -> dict[str, object]:
    """The dashboard as plain JSON data (what Grafana's API takes)."""
    data = json.loads(dashboard_json(dashboard))
    assert isinstance(data, dict)
    return data


@dataclass(frozen=True)
class GeneratedFiles:
    """File name (relative to its folder) -> content."""

    dashboards: dict[str, str]
    datasources_yaml: str
    alerting_yaml: str


def generate(timezone: str = DEFAULT_TIMEZONE) -> GeneratedFiles:
    files = {}
    for dashboard in all_dashboards(timezone):
        assert dashboard.uid, "every dashboard needs a fixed uid"
        files[f"{dashboard.uid}.json"] = dashboard_json(dashboard)
    return GeneratedFiles(files, provisioning_yaml(), alerting_yaml())


def write(
    out: Path = GENERATED,
    datasources_path: Path | None = DATASOURCES_YAML,
    timezone: str = DEFAULT_TIMEZONE,
) -> list[Path]:
    """Write the generated files; dashboard JSON in `out` that is no longer generated is
    removed, so the folder holds exactly what the code defines.  The alert rules go to
    the provisioning folder of `datasources_path` (its parent's ``alerting/``).
    Returns what changed."""
    generated = generate(timezone)
    out.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in sorted(generated.dashboards.items()):
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for stale in sorted(out.glob("*.json")):
        if stale.name not in generated.dashboards:
            stale.unlink()
            changed.append(stale)
    if datasources_path is not None:
        provisioning = datasources_path.parent.parent
        for path, text in (
            (datasources_path, generated.datasources_yaml),
            (provisioning / ALERTING, generated.alerting_yaml),
        ):
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                changed.append(path)
    return changed
