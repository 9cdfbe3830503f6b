"""The Data Array encoding of Observations (OGC 18-088 §14.3), ``$resultFormat=dataArray``."""

from __future__ import annotations

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


def data_array_components(options: QueryOptions) -> list[str]:
    """The components of a dataArray: those $select names (``id`` for the id), in its
    order, or all of `DATA_ARRAY_COMPONENTS`."""
    if options.select is None:
        return list(DATA_ARRAY_COMPONENTS)
    return [
        "id" if name in ("id", "@iot.id") else name
        for name in options.select
        if name in ("id", "@iot.id") or name in OBSERVATION.props
    ]
