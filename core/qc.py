"""Quality control flags (QARTOD), computed over whole arrays.

Flag values follow the QARTOD convention (IOOS, "Manual for Real-Time Quality
Control"): 1 pass/good, 2 not evaluated, 3 suspect, 4 fail, 9 missing.  A reading's
stored flag is the worst of the tests that ran on it (`combine`).

Every test takes a batch of many series at once — ``series_ids`` (int32),
``times_us`` (int64 µs since the Unix epoch) and ``values`` (float64), rows in any
order — and returns flags aligned with the input rows.  Internally the rows are put
in (series, time) order once (`np.lexsort`), each test compares a reading with its
neighbours in that order, and the flags are scattered back; there is no Python loop
per reading.

Thresholds are a scalar for the whole batch, None (test not run: NOT_EVALUATED), or
an array aligned with the input rows (so a batch mixing metrics gets each row's own
thresholds; NaN in such an array means "not configured" for that row).

History
-------
A test near the start of a batch needs the series' previous readings, which are
already stored.  `SeriesTail` carries them: a few recent stored readings per series
(same array layout as a batch, plus their stored flags).  Tests concatenate the tail
and the batch, compute on both, and return flags only for the batch rows.  Because
the spike test needs the *next* reading too, the last reading of each series in a
batch cannot be spike-tested until the next batch arrives; `evaluate_batch` then
re-tests the tail and reports stored readings whose flag gets worse
(`QcOutcome.revised`), and hands back the tail to pass with the next batch
(`QcOutcome.tail`, which also remembers when each series' current flat run began, so
the flat-line test sees back further than the tail's few rows).

Missing values (NaN) are flagged MISSING and are no one's neighbour: the reading
before a NaN is compared with the one after it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

GOOD = 1
NOT_EVALUATED = 2
SUSPECT = 3
FAIL = 4
MISSING = 9
#: each flag's name, as exports write it beside the number (QARTOD's words)
FLAG_NAMES: dict[int, str] = {
    GOOD: "good",
    NOT_EVALUATED: "not_evaluated",
    SUSPECT: "suspect",
    FAIL: "fail",
    MISSING: "missing",
}

Flags = npt.NDArray[np.int16]
#: a bound for every reading (an array aligned with the values) or one for all
Bound = float | npt.NDArray[np.float64]
#: a test threshold: one for all rows, one per row (NaN = not configured), or None (not run)
Threshold = float | npt.NDArray[np.float64] | None

_US_PER_S = 1_000_000

SeriesIds = npt.NDArray[np.int32]
Times = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]


def gross_range(
    values: npt.NDArray[np.float64],
    fail_min: Bound,
    fail_max: Bound,
    suspect_min: Bound | None = None,
    suspect_max: Bound | None = None,
) -> Flags:
    """QARTOD gross range test: outside the physical bounds fails, outside the
    (optional, per-device) operational bounds is suspect, otherwise good.

    Bounds may be scalars or arrays aligned with ``values`` (one row per reading,
    each with its own metric's bounds), so a mixed batch is checked in one pass.
    A NaN bound is no bound.  A NaN value is MISSING.
    """
    flags = np.full(values.shape, GOOD, dtype=np.int16)
    if suspect_min is not None and suspect_max is not None:
        flags[(values < suspect_min) | (values > suspect_max)] = SUSPECT
    flags[(values < fail_min) | (values > fail_max)] = FAIL
    flags[np.isnan(values)] = MISSING
    return flags


# -- combining -------------------------------------------------------------------------

# Severity of each flag value: NOT_EVALUATED < GOOD < SUSPECT < FAIL < MISSING.  A test
# that could not run says nothing, so any verdict outranks it (QARTOD's aggregate flag
# is the most severe test result); MISSING only ever comes from a missing value, and
# then no other verdict means anything.
_RANK = np.full(10, -1, dtype=np.int8)
_RANK[[NOT_EVALUATED, GOOD, SUSPECT, FAIL, MISSING]] = [0, 1, 2, 3, 4]
_BY_RANK = np.array([NOT_EVALUATED, GOOD, SUSPECT, FAIL, MISSING], dtype=np.int16)


def combine(*flags: Flags) -> Flags:
    """The QARTOD aggregate flag per row: the worst of the tests' flags
    (FAIL > SUSPECT > GOOD > NOT_EVALUATED; MISSING when a test saw a missing value)."""
    if not flags:
        raise ValueError("combine needs at least one flag array")
    shape = np.shape(flags[0])
    for array in flags:
        a = np.asarray(array)
        if a.shape != shape:
            raise ValueError(f"flag arrays differ in shape: {a.shape} and {shape}")
        if a.size and (a.min() < 0 or a.max() > MISSING or (_RANK[a] < 0).any()):
            raise ValueError("flags must be QARTOD values 1, 2, 3, 4 or 9")
    return _combine(*flags)


def _combine(*flags: Flags) -> Flags:
    """`combine` of flags known to be valid (the tests' own)."""
    worst = _RANK[flags[0]]
    for array in flags[1:]:
        np.maximum(worst, _RANK[array], out=worst)
    return _BY_RANK[worst]


# -- history ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesTail:
    """Stored readings that precede a batch, so tests can look back across batches.

    Typically the last one or two readings of each series in the batch (the spike,
    rate-of-change and time-gap tests need one, revising the last stored reading's
    spike flag needs two), as a batch's arrays.  ``quality`` holds their stored flags.
    ``flat_since_us``, where known (-1 where not), is when the flat run that a row
    belongs to began: the flat-line test uses it for a row whose predecessor is not in
    the tail, so a 24-hour flat line is seen without loading 24 hours of readings.
    `QcOutcome.tail` fills it in.
    """

    series_ids: SeriesIds
    times_us: Times
    values: Values
    quality: Flags
    flat_since_us: Times | None = None

    def __post_init__(self) -> None:
        n = len(self.series_ids)
        arrays: list[npt.NDArray[np.generic]] = [self.times_us, self.values, self.quality]
        if self.flat_since_us is not None:
            arrays.append(self.flat_since_us)
        if any(len(a) != n for a in arrays):
            raise ValueError("SeriesTail arrays differ in length")

    def __len__(self) -> int:
        return len(self.series_ids)

    @classmethod
    def empty(cls) -> SeriesTail:
        return cls(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64), _flags(0))


def _flags(n: int, fill: int = NOT_EVALUATED) -> Flags:
    return np.full(n, fill, dtype=np.int16)


@dataclass(frozen=True, slots=True)
class _Chain:
    """Tail + batch rows that have a value (not NaN), in (series, time) order.

    ``rows`` maps each chain position to its row in the combined (tail, then batch)
    arrays; ``has_prev``/``has_next`` say whether the neighbour in the chain belongs
    to the same series.
    """

    n_tail: int
    n_rows: int  # tail + batch
    missing: npt.NDArray[np.bool_]  # per combined row: value is NaN
    rows: npt.NDArray[np.intp]
    series: SeriesIds
    t: Times
    v: Values
    has_prev: npt.NDArray[np.bool_]
    has_next: npt.NDArray[np.bool_]
    since: Times  # flat-run start carried by tail rows, or -1

    def spread(self, sorted_flags: Flags) -> Flags:
        """Chain-ordered flags → flags per combined row (NOT_EVALUATED for rows dropped
        as duplicates, MISSING for NaN values)."""
        out = _flags(self.n_rows)
        out[self.rows] = sorted_flags
        out[self.missing] = MISSING
        return out

    def per_row(self, threshold: Threshold) -> Values:
        """A threshold given for the batch, in chain order (NaN for tail rows of an
        array: their flags are not returned)."""
        if threshold is None:
            return np.full(len(self.rows), np.nan)
        if np.ndim(threshold) == 0:
            return np.full(len(self.rows), float(threshold))
        array = np.asarray(threshold, dtype=np.float64)
        expected = self.n_rows - self.n_tail
        if array.shape != (expected,):
            raise ValueError(f"threshold array has shape {array.shape}, expected ({expected},)")
        return np.concatenate([np.full(self.n_tail, np.nan), array])[self.rows]


def _check_batch(series_ids: SeriesIds, times_us: Times, values: Values) -> None:
    if not len(series_ids) == len(times_us) == len(values):
        raise ValueError(
            f"series_ids, times_us and values differ in length: "
            f"{len(series_ids)}, {len(times_us)}, {len(values)}"
        )


def _chain(
    series_ids: SeriesIds, times_us: Times, values: Values, history: SeriesTail | None
) -> _Chain:
    _check_batch(series_ids, times_us, values)
    tail = history if history is not None else SeriesTail.empty()
    n_tail = len(tail)
    s = np.concatenate([tail.series_ids, series_ids]).astype(np.int32, copy=False)
    t = np.concatenate([tail.times_us, times_us]).astype(np.int64, copy=False)
    v = np.concatenate([tail.values, values]).astype(np.float64, copy=False)
    since = np.full(len(s), -1, dtype=np.int64)
    if tail.flat_since_us is not None:
        since[:n_tail] = tail.flat_since_us
    missing = np.isnan(v)
    present = np.flatnonzero(~missing)
    is_batch = present >= n_tail
    # batch rows sort after a tail row with the same (series, time): that tail row is
    # the same reading delivered again, and the batch row takes its place
    order = present[np.lexsort((is_batch, t[present], s[present]))]
    ss, ts = s[order], t[order]
    same_as_next = (ss[:-1] == ss[1:]) & (ts[:-1] == ts[1:]) & (order[:-1] < n_tail)
    if same_as_next.any():
        keep = np.ones(len(order), dtype=bool)
        keep[:-1] = ~same_as_next
        order, ss, ts = order[keep], ss[keep], ts[keep]
    same = ss[1:] == ss[:-1]
    edge = np.zeros(min(len(ss), 1), dtype=bool)  # no neighbour before the first row
    has_prev = np.concatenate([edge, same])
    has_next = np.concatenate([same, edge])
    return _Chain(
        n_tail=n_tail,
        n_rows=len(s),
        missing=missing,
        rows=order,
        series=ss,
        t=ts,
        v=v[order],
        has_prev=has_prev,
        has_next=has_next,
        since=since[order],
    )


_G = TypeVar("_G", bound=np.generic)


def _prev(a: npt.NDArray[_G]) -> npt.NDArray[_G]:
    """a shifted by one: element i is a[i-1] (element 0 repeats a[0]; masked by has_prev)."""
    return np.concatenate([a[:1], a[:-1]])


def _next(a: npt.NDArray[_G]) -> npt.NDArray[_G]:
    return np.concatenate([a[1:], a[-1:]])


# -- the tests, in chain order ----------------------------------------------------------


def _verdict(
    ran: npt.NDArray[np.bool_], measure: Values, suspect: Values, fail: Values | None = None
) -> Flags:
    """The flags of a test that ran where ``ran``: good, suspect above ``suspect``,
    fail above ``fail``; not evaluated where it did not run (a NaN threshold is never
    exceeded)."""
    flags = np.where(ran, GOOD, NOT_EVALUATED).astype(np.int16)
    flags[ran & (measure > suspect)] = SUSPECT
    if fail is not None:
        flags[ran & (measure > fail)] = FAIL
    return flags


def _spike(c: _Chain, suspect: Values, fail: Values) -> Flags:
    # QARTOD spike test: the reading against the mean of its two neighbours.
    ran = c.has_prev & c.has_next & (np.isfinite(suspect) | np.isfinite(fail))
    reference = (_prev(c.v) + _next(c.v)) / 2
    return _verdict(ran, np.abs(c.v - reference), suspect, fail)


def _rate_of_change(c: _Chain, max_rate_per_s: Values) -> Flags:
    # QARTOD rate-of-change test: suspect only.  Two readings at the same instant
    # (duplicates within a batch) have no rate: not evaluated.
    dt_s = (c.t - _prev(c.t)) / _US_PER_S
    ran = c.has_prev & (dt_s > 0) & np.isfinite(max_rate_per_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.abs(c.v - _prev(c.v)) / dt_s
    return _verdict(ran, rate, max_rate_per_s)


def _flat_run_start_us(c: _Chain, tolerance: Values) -> Times:
    """When the flat run each reading belongs to began.

    A run continues while each step from the previous reading of the series stays
    within the tolerance.  (QARTOD compares the last N readings with the current one;
    step-by-step is what vectorises, and with a tolerance below the sensor's
    resolution — a stuck sensor repeats itself exactly — the two agree.)
    """
    step = np.abs(c.v - _prev(c.v))
    continues = c.has_prev & (step <= tolerance)
    position = np.arange(len(c.v))
    run_start = np.maximum.accumulate(np.where(continues, 0, position))
    # a tail row that starts the chain of its series may know its run began earlier
    began = np.where(~c.has_prev & (c.since >= 0), np.minimum(c.since, c.t), c.t)
    return began[run_start]


def _flat_line(
    c: _Chain, tolerance: Values, suspect_s: Values, fail_s: Values, started: Times | None = None
) -> Flags:
    # QARTOD flat-line test: suspect / fail when the value has not changed (within
    # tolerance) for longer than the suspect / fail durations.
    if started is None:
        started = _flat_run_start_us(c, tolerance)
    ran = (c.has_prev | (started < c.t)) & np.isfinite(tolerance)
    ran &= np.isfinite(suspect_s) | np.isfinite(fail_s)
    return _verdict(ran, (c.t - started) / _US_PER_S, suspect_s, fail_s)


def _time_gap(c: _Chain, max_gap_s: Values) -> Flags:
    # QARTOD timing/gap test, per reading: the reading that follows a gap longer than
    # allowed is suspect (the data around a gap deserves a look; the reading itself
    # may well be right, hence not fail).
    gap_s = (c.t - _prev(c.t)) / _US_PER_S
    ran = c.has_prev & np.isfinite(max_gap_s)
    return _verdict(ran, gap_s, max_gap_s)


# -- public single tests ---------------------------------------------------------------


def spike(
    series_ids: SeriesIds,
    times_us: Times,
    values: Values,
    suspect: Threshold,
    fail: Threshold,
    history: SeriesTail | None = None,
) -> Flags:
    """QARTOD spike test: |v_i − (v_{i−1} + v_{i+1}) / 2| above ``fail`` fails, above
    ``suspect`` is suspect, using the previous and next reading of the same series in
    time order.  A reading without both neighbours is NOT_EVALUATED (the last one of
    each series in a batch: see `evaluate_batch` for its later revision)."""
    c = _chain(series_ids, times_us, values, history)
    flags = _spike(c, c.per_row(suspect), c.per_row(fail))
    return c.spread(flags)[c.n_tail :]


def rate_of_change(
    series_ids: SeriesIds,
    times_us: Times,
    values: Values,
    max_rate_per_s: Threshold,
    history: SeriesTail | None = None,
) -> Flags:
    """QARTOD rate-of-change test: suspect when |Δv / Δt| from the previous reading of
    the series exceeds ``max_rate_per_s`` (value units per second)."""
    c = _chain(series_ids, times_us, values, history)
    return c.spread(_rate_of_change(c, c.per_row(max_rate_per_s)))[c.n_tail :]


def flat_line(
    series_ids: SeriesIds,
    times_us: Times,
    values: Values,
    tolerance: Threshold,
    suspect_s: Threshold,
    fail_s: Threshold,
    history: SeriesTail | None = None,
) -> Flags:
    """QARTOD flat-line test: suspect when the series has stayed within ``tolerance``
    (step to step) for longer than ``suspect_s`` seconds, fail beyond ``fail_s``."""
    c = _chain(series_ids, times_us, values, history)
    flags = _flat_line(c, c.per_row(tolerance), c.per_row(suspect_s), c.per_row(fail_s))
    return c.spread(flags)[c.n_tail :]


def time_gap(
    series_ids: SeriesIds,
    times_us: Times,
    values: Values,
    max_gap_s: Threshold,
    history: SeriesTail | None = None,
) -> Flags:
    """QARTOD timing/gap test: a reading that follows a gap longer than ``max_gap_s``
    in its series is suspect."""
    c = _chain(series_ids, times_us, values, history)
    return c.spread(_time_gap(c, c.per_row(max_gap_s)))[c.n_tail :]


# -- configuration ---------------------------------------------------------------------

_MINUTE = 60.0
_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class QcConfig:
    """Thresholds of every test for one metric (None: the test does not run).

    Spike thresholds are in the metric's canonical unit and assume readings about a
    minute apart (the QARTOD spike test compares neighbours, whatever their spacing);
    rates are canonical units per second, tested step by step, so they must stay
    above the sensor's noise over one reporting interval; durations are seconds.
    """

    fail_min: float
    fail_max: float
    suspect_min: float | None = None
    suspect_max: float | None = None
    spike_suspect: float | None = None
    spike_fail: float | None = None
    max_rate_per_s: float | None = None
    flat_tolerance: float | None = None
    flat_suspect_s: float | None = None
    flat_fail_s: float | None = None
    max_gap_s: float | None = None


def _pollutant(fail_max: float, spike: tuple[float, float], per_minute: float) -> QcConfig:
    # Clean Arctic air can hold a low-cost sensor at its detection limit (or at a
    # clipped 0.0) for a while, so an unchanged value is suspect only after 3 h and
    # fails after 12 h; the simulated stuck sensors (3–10 h) are caught, healthy
    # simulated ones never are.
    return QcConfig(
        fail_min=0.0,
        fail_max=fail_max,
        spike_suspect=spike[0],
        spike_fail=spike[1],
        max_rate_per_s=per_minute / _MINUTE,
        flat_tolerance=0.01,
        flat_suspect_s=3 * _HOUR,
        flat_fail_s=12 * _HOUR,
        max_gap_s=30 * _MINUTE,
    )


def _counter(fail_max: float) -> QcConfig:
    # Counts are legitimately 0 for hours at night and jump with every bus: only the
    # physical range and gaps are tested.
    return QcConfig(fail_min=0.0, fail_max=fail_max, max_gap_s=_HOUR)


#: Default thresholds per metric key of the smartby catalogue (migration 0003).  The
#: physical bounds mirror the catalogue's; `default_config` takes them from the
#: catalogue itself, so a municipality that edits the bounds there is obeyed.
DEFAULT_QC: Mapping[str, QcConfig] = {
    "pm25": _pollutant(1000.0, (50.0, 200.0), 100.0),
    # studded-tyre road dust gives real minute-scale PM10 peaks in late winter
    "pm10": _pollutant(2000.0, (100.0, 400.0), 200.0),
    "no2": _pollutant(2000.0, (100.0, 400.0), 200.0),
    "o3": _pollutant(1000.0, (60.0, 200.0), 50.0),  # ozone varies slowly
    "so2": _pollutant(2000.0, (100.0, 500.0), 200.0),  # ship plumes at the harbour
    "temperature": QcConfig(
        fail_min=-60.0,
        fail_max=60.0,
        spike_suspect=3.0,
        spike_fail=10.0,
        max_rate_per_s=5.0 / (10 * _MINUTE),  # 5 °C in 10 minutes
        flat_tolerance=0.01,
        flat_suspect_s=3 * _HOUR,
        flat_fail_s=12 * _HOUR,
        max_gap_s=30 * _MINUTE,
    ),
    "humidity": QcConfig(
        fail_min=0.0,
        fail_max=100.0,
        spike_suspect=10.0,
        spike_fail=30.0,
        max_rate_per_s=20.0 / (10 * _MINUTE),
        # fog holds a humidity sensor at 100 %RH for many hours
        flat_tolerance=0.01,
        flat_suspect_s=6 * _HOUR,
        flat_fail_s=24 * _HOUR,
        max_gap_s=30 * _MINUTE,
    ),
    "pressure": QcConfig(
        fail_min=850.0,
        fail_max=1090.0,
        spike_suspect=2.0,
        spike_fail=10.0,
        # storms bring ~10 hPa in 3 h; a cheap barometer's minute-to-minute noise is
        # ±0.3 hPa, so only a step of 1 hPa within a minute is suspect
        max_rate_per_s=1.0 / _MINUTE,
        flat_tolerance=0.01,
        flat_suspect_s=3 * _HOUR,
        flat_fail_s=12 * _HOUR,
        max_gap_s=30 * _MINUTE,
    ),
    # A cumulative register: a step faster than the bound on power (10 MW) is suspect,
    # and so is a reset (worth an operator's look; consumption handles it anyway).
    # Spikes are meaningless for a register; a register that does not move for 6 h
    # in a building that always draws standby power is suspect.
    "energy": QcConfig(
        fail_min=0.0,
        fail_max=1e10,
        max_rate_per_s=1e7 / 1000 / _HOUR,
        flat_tolerance=0.0,
        flat_suspect_s=6 * _HOUR,
        flat_fail_s=24 * _HOUR,
        max_gap_s=30 * _MINUTE,
    ),
    # A building's power steps whenever a heat pump or charger switches, by an amount
    # no default can know: no spike or rate test, only stuck readings.
    "power": QcConfig(
        fail_min=-1e7,
        fail_max=1e7,
        flat_tolerance=0.01,
        flat_suspect_s=2 * _HOUR,
        flat_fail_s=6 * _HOUR,
        max_gap_s=30 * _MINUTE,
    ),
    "vehicle_count": _counter(20000.0),
    "heavy_vehicle_count": _counter(20000.0),
    # mean speed of a handful of vehicles in a minute swings widely, and is absent or
    # constant when the road is empty
    "speed": QcConfig(fail_min=0.0, fail_max=250.0, spike_suspect=50.0, max_gap_s=_HOUR),
}


#: the thresholds a metric's catalogue row may set (its bounds come from its own columns)
QC_SETTINGS: tuple[str, ...] = (
    "suspect_min",
    "suspect_max",
    "spike_suspect",
    "spike_fail",
    "max_rate_per_s",
    "flat_tolerance",
    "flat_suspect_s",
    "flat_fail_s",
    "max_gap_s",
)


def qc_settings(raw: Mapping[str, object]) -> dict[str, float | None]:
    """A catalogue row's QC thresholds, checked: known names, finite numbers (or None
    to switch a test off).  Raises ValueError naming the first problem."""
    checked: dict[str, float | None] = {}
    for name, value in raw.items():
        if name not in QC_SETTINGS:
            raise ValueError(f"unknown QC setting {name!r}; known: {', '.join(QC_SETTINGS)}")
        if value is None:
            checked[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"QC setting {name} must be a number, not {value!r}")
        if not np.isfinite(value) or (
            name != "suspect_min" and name != "suspect_max" and value < 0
        ):
            raise ValueError(f"QC setting {name} must be a finite number of at least 0")
        checked[name] = float(value)
    return checked


def default_config(
    key: str, fail_min: float, fail_max: float, settings: Mapping[str, object] | None = None
) -> QcConfig:
    """A metric's thresholds: the built-in defaults for its key (a metric without any
    gets the gross range and time-gap tests only), the catalogue's physical bounds,
    and the thresholds its catalogue row sets (`QC_SETTINGS`), so that a metric added
    as data gets the tests its row asks for without a code change."""
    base = DEFAULT_QC.get(key)
    if base is None:
        base = QcConfig(fail_min=fail_min, fail_max=fail_max, max_gap_s=_HOUR)
    config = replace(base, fail_min=fail_min, fail_max=fail_max)
    if settings:
        config = replace(config, **qc_settings(settings))  # type: ignore[arg-type]
    return config


_CONFIG_FIELDS = tuple(f.name for f in fields(QcConfig))


@functools.lru_cache(maxsize=1024)  # a catalogue has a handful of distinct configs
def _row(config: QcConfig) -> tuple[float, ...]:
    return tuple(np.nan if (x := getattr(config, f)) is None else float(x) for f in _CONFIG_FIELDS)


@dataclass(frozen=True, slots=True)
class QcTable:
    """Per-series configuration compiled to arrays, to build once and reuse for many
    batches: looking thresholds up is then one `np.searchsorted` per batch."""

    series_ids: SeriesIds  # sorted, distinct
    thresholds: npt.NDArray[np.float64]  # one row per QcConfig field, one column per series

    @classmethod
    def build(cls, config: Mapping[int, QcConfig]) -> QcTable:
        ids = np.array(sorted(config), dtype=np.int32)
        rows = [_row(config[int(i)]) for i in ids]
        table = np.array(rows, dtype=np.float64).reshape(len(ids), len(_CONFIG_FIELDS))
        return cls(ids, np.ascontiguousarray(table.T))

    def lookup(self, series_ids: SeriesIds) -> npt.NDArray[np.float64]:
        """Thresholds per QcConfig field (rows, NaN for None) and series id (columns)."""
        ids = self.series_ids
        at = np.minimum(np.searchsorted(ids, series_ids), max(len(ids) - 1, 0))
        unknown = np.asarray(series_ids)[ids[at] != series_ids] if len(ids) else series_ids
        if len(unknown):
            raise ValueError(f"no QC configuration for series {np.unique(unknown)[:10].tolist()}")
        return self.thresholds[:, at]


Config = QcConfig | Mapping[int, QcConfig] | QcTable


def _thresholds(series_ids: SeriesIds, config: Config) -> npt.NDArray[np.float64]:
    """Thresholds per QcConfig field (rows, see `_FIELD`; NaN for None) and reading.

    The only Python loop is over distinct series of a mapping, never over readings."""
    if isinstance(config, QcConfig):
        row = np.array(_row(config))[:, None]
        return np.broadcast_to(row, (len(_CONFIG_FIELDS), len(series_ids)))
    table = config if isinstance(config, QcTable) else QcTable.build(config)
    return table.lookup(series_ids)


_FIELD = {name: i for i, name in enumerate(_CONFIG_FIELDS)}


# -- everything at once -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QcOutcome:
    """What `evaluate_batch` found.

    ``flags``: one per batch row.  ``revised``: tail readings whose stored flag gets
    worse now that later readings exist (their ``quality`` is the new flag to store).
    ``tail``: the last readings of every series seen, with their flags and flat-run
    starts, to pass as ``history`` with the next batch.
    """

    flags: Flags
    revised: SeriesTail
    tail: SeriesTail


def evaluate_batch(
    series_ids: SeriesIds,
    times_us: Times,
    values: Values,
    config: Config,
    history: SeriesTail | None = None,
    *,
    tail_length: int = 2,
) -> QcOutcome:
    """Run every QARTOD test on a batch and combine them; re-test the history rows,
    and build the next tail.  ``config`` is one for all rows, or per series id (a
    mapping, or a `QcTable` built from one once and reused: cheaper per batch)."""
    if tail_length < 1:
        raise ValueError("tail_length must be at least 1")
    c = _chain(series_ids, times_us, values, history)
    tail = history if history is not None else SeriesTail.empty()
    all_series = np.concatenate([tail.series_ids, series_ids]).astype(np.int32, copy=False)
    per_row = _thresholds(all_series, config)
    chained = per_row[:, c.rows]

    def th(name: str) -> Values:
        return np.asarray(chained[_FIELD[name]], dtype=np.float64)  # a view, typed

    spike_f = _spike(c, th("spike_suspect"), th("spike_fail"))
    rate_f = _rate_of_change(c, th("max_rate_per_s"))
    run_start = _flat_run_start_us(c, th("flat_tolerance"))
    flat_f = _flat_line(c, th("flat_tolerance"), th("flat_suspect_s"), th("flat_fail_s"), run_start)
    gap_f = _time_gap(c, th("max_gap_s"))
    neighbours = c.spread(_combine(spike_f, rate_f, flat_f, gap_f))

    batch = per_row[:, c.n_tail :]
    gross = gross_range(
        np.asarray(values, dtype=np.float64),
        batch[_FIELD["fail_min"]],
        batch[_FIELD["fail_max"]],
        batch[_FIELD["suspect_min"]],
        batch[_FIELD["suspect_max"]],
    )
    flags = _combine(gross, neighbours[c.n_tail :])

    # stored flags only ever get worse: a verdict once given stands
    stored = tail.quality.astype(np.int16, copy=False)
    now = combine(stored, neighbours[: c.n_tail])  # checked: stored flags come from outside
    worse = np.flatnonzero(now != stored)
    revised = SeriesTail(
        tail.series_ids[worse], tail.times_us[worse], tail.values[worse], now[worse]
    )

    quality = np.concatenate([now, flags])
    last = c.has_next.copy()
    for k in range(1, tail_length):  # tail_length is small: a loop over offsets, not rows
        last[: len(last) - k] &= c.has_next[k:]
    keep = ~last  # within tail_length of the end of its series
    rows = c.rows[keep]
    next_tail = SeriesTail(
        c.series[keep],
        c.t[keep],
        c.v[keep],
        quality[rows],
        np.where(np.isfinite(th("flat_tolerance")[keep]), run_start[keep], -1),
    )
    return QcOutcome(flags=flags, revised=revised, tail=next_tail)


def evaluate(
    series_ids: SeriesIds,
    times_us: Times,
    values: Values,
    config: Config,
    history: SeriesTail | None = None,
) -> Flags:
    """The combined QARTOD flag of every batch row: gross range (with the optional
    suspect bounds), spike, rate of change, flat line and time gap."""
    return evaluate_batch(series_ids, times_us, values, config, history).flags
