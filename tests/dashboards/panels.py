"""Walk the generated dashboards: their SQL targets, Prometheus targets and variables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from grafana_foundation_sdk.models import dashboard as dbm
from grafana_foundation_sdk.models import prometheus as prom

from dashboards.build import all_dashboards
from dashboards.sql import SqlQuery

Query = TypeVar("Query", SqlQuery, prom.Dataquery)


@dataclass(frozen=True)
class PanelQuery(Generic[Query]):
    """One target of one panel, named for test ids as dashboard:panel:refId."""

    dashboard: str
    panel: dbm.Panel
    query: Query

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.panel.title}:{self.query.ref_id}"


SqlPanelQuery = PanelQuery[SqlQuery]
PromPanelQuery = PanelQuery[prom.Dataquery]


def panels(dashboard: dbm.Dashboard) -> Iterator[dbm.Panel]:
    for panel in dashboard.panels or []:
        if isinstance(panel, dbm.RowPanel):
            yield from panel.panels
        else:
            yield panel


def queries(kind: type[Query]) -> list[PanelQuery[Query]]:
    """Every target of type `kind`, over all dashboards."""
    return [
        PanelQuery(d.uid or "", panel, target)
        for d in all_dashboards()
        for panel in panels(d)
        for target in panel.targets or []
        if isinstance(target, kind)
    ]


def sql_queries() -> list[SqlPanelQuery]:
    return queries(SqlQuery)


def prom_queries() -> list[PromPanelQuery]:
    return queries(prom.Dataquery)


def dashboards_by_uid() -> dict[str, dbm.Dashboard]:
    return {d.uid or "": d for d in all_dashboards()}


def variables(dashboard: dbm.Dashboard) -> list[dbm.VariableModel]:
    templating = dashboard.templating
    return list(templating.list_val or []) if templating else []
