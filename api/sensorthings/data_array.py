"""The Data Array encoding of Observations (OGC 18-088 §14.3), ``$resultFormat=dataArray``."""

from __future__ import annotations

from typing import Any

from api.sensorthings.model import OBSERVATION
from api.sensorthings.odata import QueryOptions

#: components of a dataArray when $select names none (§14.3.1)
DATA_ARRAY_COMPONENTS = (
    "id",
    "phenomenonTime",
    "resultTime",
    "result",
    "resultQuality",
    "parameters",
)


def data_arrays(
    base: str, observations: list[dict[str, Any]], options: QueryOptions
) -> list[dict[str, Any]]:
    """Observations as the Data Array encoding (18-088 §14.3.1): one item per
    Datastream, with the component names and one array of values per Observation,
    in the page's order."""
    if options.select is None:
        components = list(DATA_ARRAY_COMPONENTS)
    else:
        components = [
            "id" if name in ("id", "@iot.id") else name
            for name in options.select
            if name in ("id", "@iot.id") or name in OBSERVATION.props
        ]
    groups: dict[int, list[list[Any]]] = {}
    for observation in observations:
        series = int(str(observation["@iot.id"]).split("-")[0])
        row = [
            observation["@iot.id"] if name == "id" else observation.get(name) for name in components
        ]
        groups.setdefault(series, []).append(row)
    return [
        {
            "Datastream@iot.navigationLink": f"{base}/Datastreams({series})",
            "components": components,
            "dataArray@iot.count": len(rows),
            "dataArray": rows,
        }
        for series, rows in groups.items()
    ]
