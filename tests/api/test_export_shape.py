"""The rows of an export say what they are (issue 16): the shaping between the page
that fetched a row and the encoder, on its own: self-description, rounding to the
metric's resolution, and the wide layout's pivot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.export_datasets import DATASETS, RAW_COLUMNS
from api.export_shape import (
    SeriesInfo,
    column_shaper,
    latest_shaper,
    pivot,
    raw_shaper,
    unit_slug,
    wide_columns,
    wide_combiner,
    wide_key,
    wide_metrics,
)
from core.units import resolution_decimals, rounder

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PM25 = SeriesInfo(
    1, "sentrum", "aq-1", "pm25", "air_quality", "ug/m3", "µg/m³", 0.1, "gauge", 17.4, 68.4
)
NO2 = SeriesInfo(
    2, "sentrum", "aq-1", "no2", "air_quality", "ug/m3", "µg/m³", 0.1, "gauge", 17.4, 68.4
)
TEMP = SeriesInfo(
    3, "fjell", "aq-2", "temperature", "weather", "Cel", "°C", 0.5, "gauge", 17.5, 68.5
)
SERIES = {s.id: s for s in (PM25, NO2, TEMP)}


@pytest.mark.parametrize(
    ("resolution", "value", "out"),
    [
        (0.1, 12.299999999999999, 12.3),
        (0.1, 640609.3069999999, 640609.3),
        (0.001, 640609.3069999999, 640609.307),
        (1.0, 1234.49, 1234.0),
        (0.5, 20.26, 20.5),
        (0.5, 20.24, 20.0),
        (0.25, 3.13, 3.25),
        (10.0, 1234.0, 1230.0),
        (0.1, 0.1 + 0.2, 0.3),
        (0.1, -0.04, 0.0),  # not -0.0
    ],
)
def test_values_are_rounded_to_the_resolution_and_written_without_binary_noise(
    resolution: float, value: float, out: float
) -> None:
    got = rounder(resolution)(value)
    assert got == out
    assert repr(got) == repr(out)  # 0.3, not 0.30000000000000004


def test_rounding_is_stable_and_leaves_unknown_resolution_alone() -> None:
    to = rounder(0.1)
    for value in (0.05, 0.15, 0.25, 12.34, -7.77, 1e6 + 0.06):
        assert to(to(value)) == to(value)  # a rounded value stays as it is
    assert rounder(None)(1.23456789) == 1.23456789
    assert rounder(0.1)(float("nan")) != rounder(0.1)(float("nan"))  # NaN passes through
    assert [resolution_decimals(r) for r in (1, 0.1, 0.25, 0.001, 5)] == [0, 1, 2, 3, 0]
    with pytest.raises(ValueError, match="positive"):
        resolution_decimals(0)


def test_unit_slugs_make_column_names_any_tool_takes() -> None:
    assert unit_slug("µg/m³") == "ug_m3"
    assert unit_slug("°C") == "degc"
    assert unit_slug("%RH") == "pct_rh"
    assert unit_slug("km/h") == "km_h"
    assert unit_slug("vehicles") == "vehicles"
    assert unit_slug("kWh") == "kwh"
    assert PM25.wide_name == "pm25_ug_m3"


def test_a_raw_row_says_where_what_and_in_which_unit() -> None:
    row = raw_shaper(SERIES, geo=False)((T0, 1, 12.299999999999999, 4))
    assert dict(zip([c.name for c in RAW_COLUMNS], row, strict=True)) == {
        "time": T0,
        "series_id": 1,
        "site_id": "sentrum",
        "device_id": "aq-1",
        "metric": "pm25",
        "unit": "ug/m3",
        "value": 12.3,
        "quality": 4,
        "quality_name": "fail",
    }
    assert raw_shaper(SERIES, geo=True)((T0, 3, 1.0, 1))[-2:] == (17.5, 68.5)


def test_latest_rows_gain_the_flag_name_and_indicator_columns_are_rounded_by_column() -> None:
    names = [c.name for c in DATASETS["latest"].columns]
    row = (1, "aq-1", "sentrum", "air_quality", "pm25", "ug/m3", T0, 3.14159, 1, "raw")
    shaped = dict(zip(names, latest_shaper({"pm25": 0.1})(row), strict=True))
    assert (shaped["value"], shaped["quality"], shaped["quality_name"]) == (3.1, 1, "good")
    aggregate = (9, "tc-1", "e6", "traffic", "speed", "km/h", T0, 51.26, None, "1h")
    assert (
        dict(zip(names, latest_shaper({"speed": 0.1})(aggregate), strict=True))["quality_name"]
        is None
    )
    energy = DATASETS["energy-hourly"].columns
    shape = column_shaper(energy, {"energy": 0.001})
    assert shape is not None
    assert shape(("b1", T0, 12.34567, 3.0000001, 0.99949, 17.4, 68.4)) == (
        "b1", T0, 12.346, 3.0, 0.999, 17.4, 68.4,
    )  # fmt: skip
    assert column_shaper(DATASETS["sites"].columns, {}) is None


async def _chunks(chunks: list[list[Any]]) -> AsyncIterator[list[Any]]:
    for chunk in chunks:
        yield chunk


def _collect(chunks: AsyncIterator[list[Any]]) -> list[Any]:
    async def run() -> list[Any]:
        return [row async for chunk in chunks for row in chunk]

    return asyncio.run(run())


def test_wide_rows_put_each_metric_in_its_own_column_even_across_chunks() -> None:
    shape = raw_shaper(SERIES, geo=False)
    t1 = T0 + timedelta(minutes=1)
    long = [
        shape((T0, 1, 10.04, 1)),
        shape((T0, 2, 20.0, 3)),
        shape((t1, 1, 11.0, 1)),
        # the chunk ends inside (aq-1, t1): its no2 comes in the next chunk
        shape((t1, 2, 21.0, 1)),
        shape((T0, 3, -2.3, 1)),
    ]
    metrics = wide_metrics(list(SERIES.values()))
    columns = [c.name for c in wide_columns("raw", metrics)]
    assert columns == [
        "time", "site_id", "device_id", "no2_ug_m3", "no2_quality", "pm25_ug_m3",
        "pm25_quality", "temperature_degc", "temperature_quality",
    ]  # fmt: skip
    combine = wide_combiner("raw", metrics, SERIES, geo=False)
    rows = _collect(pivot(_chunks([long[:3], long[3:]]), wide_key("raw"), combine))
    assert rows == [
        (T0, "sentrum", "aq-1", 20.0, "suspect", 10.0, "good", None, None),
        (t1, "sentrum", "aq-1", 21.0, "good", 11.0, "good", None, None),
        (T0, "fjell", "aq-2", None, None, None, None, -2.5, "good"),
    ]
    units = {c.name: c.unit for c in wide_columns("1h", metrics)}
    assert units["temperature_degc"] == "Cel"
    assert "temperature_quality" not in units  # aggregates have counts, not one flag
