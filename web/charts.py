"""Charts and the tables that say the same: each chart on the site is a small JSON
spec for the page's script (uPlot draws it) plus the rows of its table alternative,
both made from one /v1 document, whose URL the spec names (``source``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from web.air import bands
from web.formatting import parse_time

ChartKind = Literal["line", "bars"]


@dataclass(slots=True)
class Chart:
    """One chart: ``x`` (epoch seconds) and ``y`` are the document's points as the API
    gave them; ``marks`` puts a marker on the points that need a second look."""

    id: str
    kind: ChartKind
    unit: str
    source: str
    step_s: int
    label: str
    x: list[int] = field(default_factory=list)
    y: list[float | None] = field(default_factory=list)
    marks: list[float | None] | None = None
    marks_label: str = ""
    bands: list[tuple[float, int, str]] = field(default_factory=list)
    summary: str = ""

    def spec(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "unit": self.unit,
            "source": self.source,
            "step": self.step_s,
            "label": self.label,
            "x": self.x,
            "y": self.y,
            "marks": self.marks,
            "marksLabel": self.marks_label,
            "bands": [
                {"from": low, "level": level, "label": name} for low, level, name in self.bands
            ],
        }


def source_url(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params)}"


def epoch(text: str) -> int:
    return int(parse_time(text).timestamp())


def hourly_chart(
    chart_id: str,
    source: str,
    pollutant: str,
    rows: Sequence[dict[str, Any]],
    *,
    label: str,
    marks_label: str,
    translate: Callable[[str], str],
) -> Chart:
    """Hourly means of a pollutant with the EEA index bands behind them, hours that
    held suspect readings marked (failed readings are not in the means: the API's
    aggregates leave them out)."""
    return Chart(
        chart_id,
        "line",
        "µg/m³",
        source,
        3600,
        label,
        x=[epoch(row["time"]) for row in rows],
        y=[row["mean"] for row in rows],
        marks=[row["mean"] if row["suspect_count"] > 0 else None for row in rows],
        marks_label=marks_label,
        bands=[(low, lvl.number, translate(lvl.name)) for low, lvl in bands(pollutant)],
    )


def bar_chart(
    chart_id: str,
    source: str,
    rows: Sequence[dict[str, Any]],
    *,
    time_key: str,
    value_key: str,
    unit: str,
    label: str,
    step_s: int = 86400,
) -> Chart:
    return Chart(
        chart_id,
        "bars",
        unit,
        source,
        step_s,
        label,
        x=[epoch(row[time_key]) for row in rows],
        y=[row[value_key] for row in rows],
    )
