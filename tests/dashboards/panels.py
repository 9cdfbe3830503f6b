"""Walk the generated dashboards: their SQL targets, Prometheus targets and variables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from grafana_foundation_sdk.models import dashboard as dbm
from grafana_foundation_sdk.models import prometheus as prom

from dashboards.build import all_dashboards
from dashboards.sql import SqlQuery


@dataclass(frozen=True)
class SqlPanelQuery:
    dashboard: str
    panel: dbm.Panel
    query: SqlQuery

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.panel.title}:{self.query.ref_id}"


@dataclass(frozen=True)
class PromPanelQuery:
    dashboard: str
    panel: dbm.Panel
    query: prom.Dataquery

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.panel.title}:{self.query.ref_id}"


def panels(dashboard: dbm.Dashboard) -> Iterator[dbm.Panel]:
    for panel in dashboard.panels or []:
        if isinstance(panel, dbm.RowPanel):
            yield from panel.panels
        else:
            yield panel


def sql_queries() -> list[SqlPanelQuery]:
    return [
        SqlPanelQuery(d.uid or "", panel, target)
        for d in all_dashboards()
        for panel in panels(d)
        for target in panel.targets or []
        if isinstance(target, SqlQuery)
    ]


def prom_queries() -> list[PromPanelQuery]:
    return [
        PromPanelQuery(d.uid or "", panel, target)
        for d in all_dashboards()
        for panel in panels(d)
        for target in panel.targets or []
        if isinstance(target, prom.Dataquery)
    ]


def dashboards_by_uid() -> dict[str, dbm.Dashboard]:
    return {d.uid or "": d for d in all_dashboards()}


def variables(dashboard: dbm.Dashboard) -> list[dbm.VariableModel]:
    templating = dashboard.templating
    return list(templating.list_val or []) if templating else []
