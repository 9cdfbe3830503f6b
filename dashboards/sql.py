"""A raw-SQL query of Grafana's PostgreSQL data source, as a foundation-SDK dataquery.

grafana-foundation-sdk ships dataquery types for Prometheus, Loki, Elasticsearch and
others, but none for the built-in PostgreSQL plugin (``grafana-postgresql-datasource``,
the "grafana-sql" query model).  This is the minimal typed equivalent, written the way
the SDK writes its own (`cogvariants.Dataquery` with ``to_json``/``from_json`` and a
`Builder`), so SQL targets go into panels like any other query.

The JSON is the query model Grafana's SQL query editor saves in code mode: ``refId``,
``datasource``, ``editorMode: "code"``, ``format`` (``time_series`` or ``table``),
``rawQuery: true`` and ``rawSql``.

``columns`` is not sent to Grafana: it names, in order, the columns the panel reads
from the result, so the tests can run every query against the real schema and check
what comes back.
"""

from __future__ import annotations

import enum
import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

#: the PostgreSQL plugin's id since Grafana 10.2.3 ("postgres" remains an alias)
POSTGRES_PLUGIN = "grafana-postgresql-datasource"


class SqlFormat(enum.StrEnum):
    """How Grafana turns the result into data frames."""

    #: a ``time`` column, an optional text ``metric`` column naming the series, and
    #: numeric value columns; rows sorted by time
    TIME_SERIES = "time_series"
    #: the result as it is
    TABLE = "table"


class SqlQuery(cogvariants.Dataquery):
    """One raw-SQL target of a panel."""

    ref_id: str
    raw_sql: str
    format_val: SqlFormat
    datasource: DataSourceRef | None
    hide: bool | None
    #: the result columns the panel reads, in order (test contract; not serialised)
    columns: tuple[str, ...]

    def __init__(
        self,
        ref_id: str = "",
        raw_sql: str = "",
        format_val: SqlFormat = SqlFormat.TABLE,
        datasource: DataSourceRef | None = None,
        hide: bool | None = None,
        columns: tuple[str, ...] = (),
    ) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format_val = format_val
        self.datasource = datasource
        self.hide = hide
        self.columns = columns

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "editorMode": "code",
            "format": self.format_val,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        datasource = data.get("datasource")
        return cls(
            ref_id=str(data.get("refId", "")),
            raw_sql=str(data.get("rawSql", "")),
            format_val=SqlFormat(data.get("format", SqlFormat.TABLE)),
            datasource=DataSourceRef.from_json(datasource) if datasource else None,
            hide=data.get("hide"),
        )


class SqlQueryBuilder(cogbuilder.Builder[SqlQuery]):
    """Builder of `SqlQuery`, in the SDK's fluent style."""

    _internal: SqlQuery

    def __init__(self) -> None:
        self._internal = SqlQuery()

    def build(self) -> SqlQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def raw_sql(self, raw_sql: str) -> typing.Self:
        self._internal.raw_sql = raw_sql
        return self

    def format(self, format_val: SqlFormat) -> typing.Self:
        self._internal.format_val = format_val
        return self

    def datasource(self, datasource: DataSourceRef) -> typing.Self:
        self._internal.datasource = datasource
        return self

    def hide(self, hide: bool) -> typing.Self:
        self._internal.hide = hide
        return self

    def columns(self, *columns: str) -> typing.Self:
        self._internal.columns = columns
        return self
