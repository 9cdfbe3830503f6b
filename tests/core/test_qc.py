"""QARTOD tests flag hand-made readings as the IOOS manuals describe, across batches too."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import qc
from core.qc import FAIL, GOOD, MISSING, NOT_EVALUATED, SUSPECT, QcConfig, SeriesTail

MIN = 60_000_000  # one minute in µs
T0 = 1_774_000_000_000_000  # 2026-03-20, a whole minute


def _i32(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int32)


def _t(*minutes: float) -> np.ndarray:
    return T0 + (np.array(minutes, dtype=np.float64) * MIN).astype(np.int64)


def _f(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float64)


def _flags(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int16)


# -- gross range and combine ------------------------------------------------------------


def test_gross_range_fails_outside_physical_and_suspects_outside_operational_bounds() -> None:
    values = _f(-1, 0, 5, 95, 100, 101, np.nan)
    flags = qc.gross_range(values, 0.0, 100.0, 1.0, 90.0)
    assert flags.tolist() == [FAIL, SUSPECT, GOOD, SUSPECT, SUSPECT, FAIL, MISSING]


def test_combine_takes_the_worst_verdict_and_any_verdict_beats_not_evaluated() -> None:
    a = _flags(NOT_EVALUATED, NOT_EVALUATED, GOOD, SUSPECT, FAIL, GOOD)
    b = _flags(NOT_EVALUATED, GOOD, SUSPECT, FAIL, GOOD, MISSING)
    assert qc.combine(a, b).tolist() == [NOT_EVALUATED, GOOD, SUSPECT, FAIL, FAIL, MISSING]
    assert qc.combine(b, a).tolist() == qc.combine(a, b).tolist()
    assert qc.combine(_flags()).tolist() == []


def test_combine_refuses_values_that_are_not_qartod_flags() -> None:
    with pytest.raises(ValueError, match="QARTOD"):
        qc.combine(_flags(1, 5))
    with pytest.raises(ValueError, match="shape"):
        qc.combine(_flags(1, 2), _flags(1))
    with pytest.raises(ValueError, match="at least one"):
        qc.combine()


# -- spike ----------------------------------------------------------------------------


def test_spike_compares_each_reading_with_the_mean_of_its_neighbours_in_its_own_series() -> None:
    # two series interleaved and shuffled: neighbours are found by series and time
    series = _i32(1, 2, 1, 2, 1, 2, 1)
    times = _t(0, 0, 1, 1, 2, 2, 3)
    values = _f(10, 500, 70, 500, 10, 500, 250)
    shuffle = np.array([6, 2, 5, 0, 3, 1, 4])
    flags = qc.spike(series[shuffle], times[shuffle], values[shuffle], suspect=50.0, fail=200.0)
    expected = np.empty(7, dtype=np.int16)
    # series 1: 10, 70 (|70 - 10| = 60 > 50: suspect), 10 (|10 - 160| = 150: suspect), 250 (last)
    # series 2: constant 500: good in the middle
    expected[shuffle] = flags
    assert expected.tolist() == [
        NOT_EVALUATED,
        NOT_EVALUATED,
        SUSPECT,
        GOOD,
        SUSPECT,
        NOT_EVALUATED,
        NOT_EVALUATED,
    ]


def test_spike_fails_above_the_fail_threshold_and_takes_per_row_thresholds() -> None:
    series = _i32(1, 1, 1, 2, 2, 2)
    times = _t(0, 1, 2, 0, 1, 2)
    values = _f(10, 300, 10, 10, 300, 10)
    flags = qc.spike(series, times, values, suspect=50.0, fail=200.0)
    assert flags.tolist() == [NOT_EVALUATED, FAIL, NOT_EVALUATED] * 2
    # series 2 is configured more loosely; NaN means "not configured"
    suspect = _f(50, 50, 50, 1000, 1000, 1000)
    fail = _f(200, 200, 200, np.nan, np.nan, np.nan)
    flags = qc.spike(series, times, values, suspect=suspect, fail=fail)
    assert flags[1] == FAIL
    assert flags[4] == GOOD


def test_spike_not_configured_evaluates_nothing() -> None:
    flags = qc.spike(_i32(1, 1, 1), _t(0, 1, 2), _f(0, 100, 0), suspect=None, fail=None)
    assert flags.tolist() == [NOT_EVALUATED] * 3


def test_missing_value_is_flagged_missing_and_is_no_ones_neighbour() -> None:
    flags = qc.spike(_i32(1, 1, 1, 1), _t(0, 1, 2, 3), _f(10, np.nan, 11, 10), 5.0, 20.0)
    # 11's neighbours are 10 (minute 0) and 10 (minute 3)
    assert flags.tolist() == [NOT_EVALUATED, MISSING, GOOD, NOT_EVALUATED]


def test_spike_at_the_start_of_a_batch_looks_back_into_the_history() -> None:
    history = SeriesTail(_i32(1), _t(0), _f(10), _flags(GOOD))
    flags = qc.spike(_i32(1, 1), _t(1, 2), _f(300, 10), 50.0, 200.0, history=history)
    assert flags.tolist() == [FAIL, NOT_EVALUATED]


def test_a_redelivered_reading_takes_the_place_of_its_stored_copy() -> None:
    history = SeriesTail(_i32(1, 1), _t(0, 1), _f(10, 10), _flags(GOOD, GOOD))
    flags = qc.spike(_i32(1, 1), _t(1, 2), _f(10, 10), 1.0, 2.0, history=history)
    assert flags.tolist() == [GOOD, NOT_EVALUATED]


# -- rate of change --------------------------------------------------------------------


def test_rate_of_change_is_suspect_above_the_rate_per_second() -> None:
    # 1 unit/s allowed: +30 in 60 s is fine, +90 in 60 s is not, +90 in 120 s is
    series = _i32(1, 1, 1, 1)
    flags = qc.rate_of_change(series, _t(0, 1, 2, 4), _f(0, 30, 120, 30), 1.0)
    assert flags.tolist() == [NOT_EVALUATED, GOOD, SUSPECT, GOOD]


def test_rate_of_change_between_readings_at_the_same_instant_is_not_evaluated() -> None:
    flags = qc.rate_of_change(_i32(1, 1, 1), _t(0, 1, 1), _f(0, 1, 500), 1.0)
    assert flags.tolist() == [NOT_EVALUATED, GOOD, NOT_EVALUATED]


# -- flat line --------------------------------------------------------------------------


def test_flat_line_is_suspect_then_fails_as_the_run_grows() -> None:
    minutes = np.arange(0, 8)
    values = _f(5, 5, 5.005, 5, 5, 5, 5, 7)
    flags = qc.flat_line(
        np.ones(8, np.int32), _t(*minutes), values, tolerance=0.01, suspect_s=150, fail_s=330
    )
    # run of 5s from minute 0: 0, 60, 120, 180 (> 150 s), …, 360 (> 330 s), then 7 breaks it
    assert flags.tolist() == [NOT_EVALUATED, GOOD, GOOD, SUSPECT, SUSPECT, SUSPECT, FAIL, GOOD]


def test_flat_line_steps_beyond_the_tolerance_restart_the_run() -> None:
    values = _f(1, 2, 1, 2, 1, 2)
    flags = qc.flat_line(np.ones(6, np.int32), _t(*range(6)), values, 0.5, 60.0, 120.0)
    assert set(flags[1:].tolist()) == {GOOD}


def test_flat_line_of_a_count_is_not_evaluated_when_not_configured() -> None:
    flags = qc.flat_line(_i32(1, 1, 1), _t(0, 300, 600), _f(0, 0, 0), None, None, None)
    assert flags.tolist() == [NOT_EVALUATED] * 3


# -- time gap ---------------------------------------------------------------------------


def test_a_reading_after_a_gap_is_suspect() -> None:
    series = _i32(1, 1, 1, 2, 2)
    flags = qc.time_gap(series, _t(0, 1, 40, 0, 1), _f(1, 1, 1, 1, 1), max_gap_s=30 * 60.0)
    assert flags.tolist() == [NOT_EVALUATED, GOOD, SUSPECT, NOT_EVALUATED, GOOD]


def test_a_gap_before_the_batch_is_seen_through_the_history() -> None:
    history = SeriesTail(_i32(1), _t(0), _f(1), _flags(GOOD))
    flags = qc.time_gap(_i32(1, 2), _t(120, 120), _f(1, 1), 1800.0, history=history)
    assert flags.tolist() == [SUSPECT, NOT_EVALUATED]


# -- empty input -----------------------------------------------------------------------


def test_every_test_accepts_an_empty_batch() -> None:
    s, t, v = np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64)
    for flags in (
        qc.spike(s, t, v, 1.0, 2.0),
        qc.rate_of_change(s, t, v, 1.0),
        qc.flat_line(s, t, v, 0.1, 60.0, 120.0),
        qc.time_gap(s, t, v, 60.0),
        qc.evaluate(s, t, v, qc.DEFAULT_QC["pm25"]),
        qc.evaluate(s, t, v, {}),
    ):
        assert flags.dtype == np.int16
        assert flags.shape == (0,)
    outcome = qc.evaluate_batch(s, t, v, qc.DEFAULT_QC["pm25"])
    assert len(outcome.revised) == 0
    assert len(outcome.tail) == 0


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        qc.spike(_i32(1, 1), _t(0), _f(1, 2), 1.0, 2.0)


# -- evaluate --------------------------------------------------------------------------


def _healthy_pm25(rng: np.random.Generator, n: int) -> np.ndarray:
    # a slowly varying background with sensor noise, rounded to 0.1 µg/m³
    background = 8 + 4 * np.sin(np.arange(n) / 240)
    return np.round(np.maximum(background + rng.normal(0, 1.5, n), 0), 1)


def test_evaluate_flags_faulty_sensors_and_mostly_leaves_healthy_ones_alone() -> None:
    rng = np.random.default_rng(5)
    n = 12 * 60  # twelve hours at one reading a minute
    times = T0 + np.arange(n, dtype=np.int64) * MIN
    healthy = _healthy_pm25(rng, n)
    stuck = healthy.copy()
    stuck[60:] = 12.0  # stuck after the first hour
    spiky = healthy.copy()
    spiky[300] = 400.0
    impossible = healthy.copy()
    impossible[100] = -5.0
    series = np.repeat(np.arange(1, 5, dtype=np.int32), n)
    flags = qc.evaluate(
        series,
        np.tile(times, 4),
        np.concatenate([healthy, stuck, spiky, impossible]),
        qc.DEFAULT_QC["pm25"],
    ).reshape(4, n)
    assert (flags[0] >= SUSPECT).mean() < 0.01
    # stuck: suspect after 3 h of the same value, failed after 12 h (not reached here)
    assert (flags[1, 60 + 3 * 60 + 1 :] == SUSPECT).all()
    assert (flags[1, 61 : 60 + 3 * 60] <= NOT_EVALUATED).all()
    assert flags[2, 300] == FAIL
    assert flags[3, 100] == FAIL


def test_evaluate_takes_a_configuration_per_series() -> None:
    series = _i32(1, 1, 1, 7, 7, 7)
    times = _t(0, 1, 2, 0, 1, 2)
    values = _f(-5, 0, 0, -5, 0, 0)  # -5 °C is fine, -5 µg/m³ is not
    config = {1: qc.DEFAULT_QC["temperature"], 7: qc.DEFAULT_QC["pm25"]}
    flags = qc.evaluate(series, times, values, config)
    assert flags[0] == GOOD
    assert flags[3] == FAIL
    with pytest.raises(ValueError, match="no QC configuration"):
        qc.evaluate(series, times, values, {1: qc.DEFAULT_QC["temperature"]})


def test_evaluate_uses_the_operational_suspect_bounds() -> None:
    config = QcConfig(fail_min=0, fail_max=100, suspect_min=10, suspect_max=50)
    flags = qc.evaluate(_i32(1, 1, 1), _t(0, 1, 2), _f(5, 20, 60), config)
    assert flags.tolist() == [SUSPECT, GOOD, SUSPECT]


def test_a_spike_at_the_end_of_a_batch_is_revised_when_the_next_batch_arrives() -> None:
    # thresholds wide enough that 400's neighbours, half as far off, stay good
    config = QcConfig(fail_min=0, fail_max=1000, spike_suspect=250, spike_fail=300)
    first = qc.evaluate_batch(_i32(1, 1, 1), _t(0, 1, 2), _f(10, 10, 400), config)
    assert first.flags.tolist() == [GOOD, GOOD, GOOD]  # 400 has no next neighbour yet
    second = qc.evaluate_batch(_i32(1), _t(3), _f(10), config, history=first.tail)
    assert second.flags.tolist() == [GOOD]
    assert second.revised.times_us.tolist() == _t(2).tolist()
    assert second.revised.quality.tolist() == [FAIL]


def test_the_tail_remembers_when_a_flat_run_began() -> None:
    # one reading per batch, only two tail rows: the run start still travels along
    config = QcConfig(fail_min=0, fail_max=100, flat_tolerance=0.0, flat_suspect_s=600)
    tail = None
    flags = []
    for minute in range(0, 15):
        outcome = qc.evaluate_batch(_i32(1), _t(minute), _f(3.0), config, history=tail)
        tail = outcome.tail
        flags.append(int(outcome.flags[0]))
    assert len(tail) == 2
    assert flags[:11] == [GOOD] * 11  # 0 … 600 s
    assert flags[11:] == [SUSPECT] * 4


def test_default_configuration_covers_the_catalogue_with_its_bounds() -> None:
    sql = (Path(__file__).parents[2] / "db/migrations/0003_metric_catalogue.sql").read_text()
    rows = re.findall(
        r"\('(\w+)', '[^']*', '\w+', '[^']*', '[^']*',\s*'[^']*', "
        r"(-?[\d.e]+), (-?[\d.e]+), '(\w+)'",
        sql,
    )
    assert {key for key, *_ in rows} == set(qc.DEFAULT_QC)
    for key, low, high, _value_type in rows:
        config = qc.DEFAULT_QC[key]
        assert (config.fail_min, config.fail_max) == (float(low), float(high)), key
        assert qc.default_config(key, -1.0, 1.0).fail_max == 1.0
    # counts are legitimately flat (0 at night): no flat-line test
    assert qc.DEFAULT_QC["vehicle_count"].flat_suspect_s is None
    assert qc.default_config("noise", 30.0, 140.0) == QcConfig(30.0, 140.0, max_gap_s=3600.0)


# -- batches add up to the whole ---------------------------------------------------------


@st.composite
def _readings(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_series = draw(st.integers(1, 3))
    series, times, values = [], [], []
    for s in range(n_series):
        steps = draw(st.lists(st.integers(1, 40), min_size=1, max_size=25))
        minutes = np.cumsum(steps)
        series += [s] * len(steps)
        times += minutes.tolist()
        values += draw(st.lists(st.integers(0, 6), min_size=len(steps), max_size=len(steps)))
    return (
        np.array(series, np.int32),
        T0 + np.array(times, np.int64) * MIN,
        np.array(values, np.float64) * 10,
    )


SMALL = QcConfig(
    fail_min=0,
    fail_max=55,
    suspect_max=45,
    spike_suspect=15,
    spike_fail=25,
    max_rate_per_s=0.5,
    flat_tolerance=0,
    flat_suspect_s=20 * 60,
    flat_fail_s=60 * 60,
    max_gap_s=30 * 60,
)


@settings(max_examples=200, deadline=None)
@given(_readings(), st.integers(0, 1000))
def test_two_batches_with_a_tail_flag_like_one_batch(
    readings: tuple[np.ndarray, np.ndarray, np.ndarray], cut_minute: int
) -> None:
    series, times, values = readings
    whole = qc.evaluate(series, times, values, SMALL)
    early = times < T0 + cut_minute * MIN
    first = qc.evaluate_batch(series[early], times[early], values[early], SMALL)
    late = ~early
    second = qc.evaluate_batch(series[late], times[late], values[late], SMALL, history=first.tail)
    stored = np.empty(len(series), dtype=np.int16)
    stored[early] = first.flags
    stored[late] = second.flags
    for s, t, q in zip(
        second.revised.series_ids, second.revised.times_us, second.revised.quality, strict=True
    ):
        stored[(series == s) & (times == t)] = q
    assert stored.tolist() == whole.tolist()


def test_a_compiled_table_configures_series_like_the_mapping_it_came_from() -> None:
    config = {1: qc.DEFAULT_QC["temperature"], 7: qc.DEFAULT_QC["pm25"], 9: SMALL}
    table = qc.QcTable.build(config)
    series = _i32(9, 1, 7, 9, 1, 7, 9, 1, 7)
    times = _t(0, 0, 0, 1, 1, 1, 2, 2, 2)
    values = _f(50, -5, -5, 0, 30, 30, 50, -5, 300)
    assert qc.evaluate(series, times, values, table).tolist() == (
        qc.evaluate(series, times, values, config).tolist()
    )
    with pytest.raises(ValueError, match=r"series \[3\]"):
        qc.evaluate(_i32(1, 3), _t(0, 0), _f(1, 1), table)
    with pytest.raises(ValueError, match="no QC configuration"):
        qc.evaluate(_i32(1), _t(0), _f(1), qc.QcTable.build({}))


def test_a_metric_rows_qc_settings_override_the_defaults_and_are_checked() -> None:
    """A metric added as data gets the tests its catalogue row asks for."""
    plain = qc.default_config("noise_laeq", 0.0, 140.0)
    assert (plain.fail_min, plain.fail_max, plain.spike_suspect, plain.max_gap_s) == (
        0.0,
        140.0,
        None,
        3600.0,
    )
    tuned = qc.default_config("noise_laeq", 0.0, 140.0, {"spike_suspect": 15, "max_gap_s": None})
    assert (tuned.spike_suspect, tuned.max_gap_s) == (15.0, None)
    pm25 = qc.default_config("pm25", 0.0, 1000.0, {"flat_suspect_s": 600})
    assert pm25.flat_suspect_s == 600.0
    assert pm25.spike_suspect == qc.DEFAULT_QC["pm25"].spike_suspect
    for bad_settings in ({"spike": 1}, {"spike_suspect": "high"}, {"max_gap_s": -5}):
        with pytest.raises(ValueError, match="QC setting"):
            qc.qc_settings(bad_settings)
