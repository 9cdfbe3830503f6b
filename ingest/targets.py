"""Where a reading goes: from a device and a field name to a series and a unit conversion.

A reading arrives named by its payload (``pm25``, ``urn:dev:…:NO2``, ``SDS0X1/PM2.5``,
``pm_2_5``).  The name resolves through the device's field map, then the catalogue's
field aliases, then the metric keys (`core.profiles.resolve_field`), to one of:

* a row of the target table — a series with the scale and offset that bring the
  reading's unit to the metric's canonical unit, and the metric's bounds;
* a `Rejection` for the quarantine (unknown metric, unconvertible unit, …), remembered
  for ``retry_s`` seconds only, so that a metric or an alias added meanwhile (`smartby
  metrics add`) is found without restarting ingest;
* `IGNORED`: a field declared as not worth keeping;
* a `HealthTarget`: a battery level, device health rather than a reading.

Resolution runs once per (device, name, unit, sum) and is remembered, so the per-reading
cost on the ingest hot path stays one dict lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from core.decode import metric_key
from core.profiles import FieldTarget, resolve_field
from core.units import UnitError, conversion, dimension_of
from db.catalogue import Metric

#: Bound on the resolved-target cache (a stream of random names must not grow it forever).
TARGET_CACHE_LIMIT: Final = 200_000
#: A battery value without a unit is volts up to this, a percentage above it.
BATTERY_VOLTS_UP_TO: Final = 10.0


def short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Rejection:
    """A field whose readings go to quarantine, until ``until`` (monotonic seconds)."""

    __slots__ = ("detail", "reason", "until")

    def __init__(self, reason: str, detail: str, until: float) -> None:
        self.reason = reason
        self.detail = detail
        self.until = until


class Ignored:
    """A field declared as not worth keeping (``TotalStartTime``, a PMS5003's counts)."""

    __slots__ = ()


IGNORED: Final = Ignored()


class HealthTarget:
    """A battery level: ``volts`` True (scale to V), False (a percentage), None (guess
    by size: `BATTERY_VOLTS_UP_TO`)."""

    __slots__ = ("scale", "volts")

    def __init__(self, volts: bool | None, scale: float = 1.0) -> None:
        self.volts = volts
        self.scale = scale

    def battery(self, value: float) -> tuple[float | None, float | None]:
        """(volts, percent) of one value."""
        volts = self.volts if self.volts is not None else value <= BATTERY_VOLTS_UP_TO
        return (value * self.scale, None) if volts else (None, value)


Target = int | Rejection | Ignored | HealthTarget
TargetKey = tuple[str, str, str | None, bool]


class TargetResolver:
    """Resolves and remembers targets; the table rows are (series id, scale, offset,
    min, max).  ``series(device, metric)`` gives a series id, ``metric(key)`` a metric,
    ``aliases()`` the catalogue's aliases; ``new_series(series_id, metric)`` is told of
    each series the table gains (for its QC configuration)."""

    def __init__(
        self,
        metric: Callable[[str], Metric | None],
        aliases: Callable[[], Mapping[str, FieldTarget]],
        series: Callable[[str, Metric], int],
        new_series: Callable[[int, Metric], None],
        *,
        many_series: Callable[[Sequence[tuple[str, Metric]]], list[int]] | None = None,
        retry_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metric = metric
        self._aliases = aliases
        self._series = series
        self._new_series = new_series
        #: with ``many_series``, rows get their series ids in one call per batch
        #: (`flush`): (row, device, metric) of the rows still waiting for theirs
        self._many_series = many_series
        self._pending: list[tuple[int, str, Metric]] = []
        self.retry_s = retry_s
        self.clock = clock
        #: (device, name, unit, is_sum) -> target; one dict lookup per reading
        self.cache: dict[TargetKey, Target] = {}
        self.rows: list[tuple[int, float, float, float, float]] = []
        self._arrays: tuple[npt.NDArray[np.int32], npt.NDArray[np.float64]] | None = None
        # (from_unit, metric key) -> (scale, offset) or the UnitError's message
        self._conversions: dict[tuple[str | None, str], tuple[float, float] | str] = {}

    def clear(self) -> None:
        """Forget every target (between batches only: readings point into the table)."""
        self.cache.clear()
        self.rows.clear()
        self._pending.clear()
        self._arrays = None

    def flush(self) -> None:
        """Give the rows resolved since the last call their series ids, in one call of
        ``many_series`` (before the batch's readings are put into arrays).  If that
        fails, every target is forgotten: none may point at a row without a series."""
        pending = self._pending
        if not pending:
            return
        assert self._many_series is not None
        try:
            ids = self._many_series([(device, metric) for _, device, metric in pending])
        except BaseException:
            self.clear()
            raise
        for (row, _, metric), series_id in zip(pending, ids, strict=True):
            self.rows[row] = (series_id, *self.rows[row][1:])
            self._new_series(series_id, metric)
        pending.clear()
        self._arrays = None

    def field(self, fields: Mapping[str, FieldTarget], name: str) -> FieldTarget | None:
        return resolve_field(name, fields, self._aliases())

    def resolve(
        self,
        device_id: str,
        fields: Mapping[str, FieldTarget],
        name: str,
        unit: str | None,
        is_sum: bool,
    ) -> Target:
        """Resolve and remember the target of one (device, name, unit, sum)."""
        target = self._resolve(device_id, fields, name, unit, is_sum)
        self.cache[(device_id, name, unit, is_sum)] = target
        return target

    def _resolve(
        self,
        device_id: str,
        fields: Mapping[str, FieldTarget],
        name: str,
        unit: str | None,
        is_sum: bool,
    ) -> Target:
        declared = self.field(fields, name)
        if declared is not None and declared.ignored:
            return IGNORED
        if declared is not None and declared.health is not None:
            return self._health(name, unit or declared.unit)
        key = declared.metric if declared is not None and declared.metric else metric_key(name)
        if declared is not None and unit is None:
            unit = declared.unit
        metric = self._metric(key) if key else None
        if metric is None:
            return self._reject(
                "unknown_metric", f"{short(name, 60)!r}: no metric {key!r} in the catalogue"
            )
        if is_sum and metric.value_type == "gauge":
            return self._reject(
                "unexpected_sum", f"{key}: a SenML sum for a metric that is not a count or register"
            )
        conv = self._conversion(unit, metric)
        if isinstance(conv, str):
            return self._reject("bad_unit", f"{key}: {conv}")
        if self._many_series is not None:
            series_id = -1  # until `flush`
            self._pending.append((len(self.rows), device_id, metric))
        else:
            series_id = self._series(device_id, metric)
            self._new_series(series_id, metric)
        self.rows.append((series_id, conv[0], conv[1], metric.min_value, metric.max_value))
        self._arrays = None
        return len(self.rows) - 1

    def _reject(self, reason: str, detail: str) -> Rejection:
        return Rejection(reason, detail, self.clock() + self.retry_s)

    def _health(self, name: str, unit: str | None) -> Target:
        if unit is None:
            return HealthTarget(None)
        if unit == "%EL":
            return HealthTarget(False)
        if dimension_of(unit) == "voltage":
            scale, _ = conversion(unit, "V")
            return HealthTarget(True, scale)
        return self._reject(
            "bad_unit", f"{short(name, 60)!r}: a battery is in V, mV or %EL, not {unit!r}"
        )

    def _conversion(self, unit: str | None, metric: Metric) -> tuple[float, float] | str:
        key = (unit, metric.key)
        found = self._conversions.get(key)
        if found is None:
            if unit is None or unit == metric.unit:
                found = (1.0, 0.0)
            else:
                try:
                    found = conversion(unit, metric.unit, metric.molar_mass)
                except UnitError as exc:
                    found = str(exc)
            self._conversions[key] = found
        return found

    def arrays(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64]]:
        """The table as arrays: series ids, and (scale, offset, min, max) columns."""
        assert not self._pending, "flush() first"
        if self._arrays is None:
            series = np.fromiter((t[0] for t in self.rows), dtype=np.int32, count=len(self.rows))
            floats = np.array([t[1:] for t in self.rows], dtype=np.float64).reshape(-1, 4)
            self._arrays = (series, floats)
        return self._arrays
