"""Rollup partials put readings in Europe/Oslo buckets and merge like one pass over them all."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import rollups
from core.qc import FAIL, GOOD, MISSING, NOT_EVALUATED, SUSPECT
from core.rollups import DAY_US, HOUR_US, MINUTE_US, Partials, Resolution

OSLO = ZoneInfo("Europe/Oslo")


def _us(text: str, tz: ZoneInfo = OSLO, fold: int = 0) -> int:
    """Local wall time → µs since the epoch."""
    return int(datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold).timestamp()) * 1_000_000


def _local(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, OSLO)


def _i64(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


# -- buckets ----------------------------------------------------------------------------


def test_minute_and_hour_buckets_are_utc_minutes_and_hours_in_oslo() -> None:
    t = _i64(_us("2026-06-01T12:34:56.789"), _us("2026-01-01T00:00"), _us("1969-12-31T23:59:30"))
    assert (rollups.bucket_starts(t, "1m") == t - t % MINUTE_US).all()
    assert (rollups.bucket_starts(t, "1h") == t - t % HOUR_US).all()
    assert rollups.bucket_starts(t, "1m")[0] == _us("2026-06-01T12:34")
    assert rollups.bucket_starts(t, "1h")[2] == _us("1969-12-31T23:00")


def test_the_spring_forward_day_is_23_hours_long() -> None:
    # 2026-03-29: clocks go from 02:00 CET to 03:00 CEST
    midnight = _us("2026-03-29T00:00")
    t = _i64(midnight, _us("2026-03-29T01:59"), _us("2026-03-29T03:00"), _us("2026-03-29T23:59"))
    days = rollups.bucket_starts(t, "1d")
    assert (days == midnight).all()
    assert midnight == _us("2026-03-28T23:00", UTC)
    assert rollups.bucket_starts(_i64(midnight - 1), "1d")[0] == _us("2026-03-28T00:00")
    end = rollups.next_bucket_starts(days[:1], "1d")[0]
    assert end == _us("2026-03-30T00:00")
    assert end - midnight == 23 * HOUR_US


def test_the_fall_back_day_is_25_hours_long() -> None:
    # 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET; 02:30 happens twice
    midnight = _us("2026-10-25T00:00")
    t = _i64(_us("2026-10-25T02:30"), _us("2026-10-25T02:30", fold=1), _us("2026-10-25T23:59"))
    assert t[1] - t[0] == HOUR_US
    assert (rollups.bucket_starts(t, "1d") == midnight).all()
    assert midnight == _us("2026-10-24T22:00", UTC)
    end = rollups.next_bucket_starts(_i64(midnight), "1d")[0]
    assert end - midnight == 25 * HOUR_US
    # the repeated hour is two distinct hourly buckets
    assert len(np.unique(rollups.bucket_starts(t[:2], "1h"))) == 2


def test_an_unknown_resolution_is_refused() -> None:
    with pytest.raises(ValueError, match="resolution"):
        rollups.bucket_starts(_i64(0), "5m")  # type: ignore[arg-type]


def test_buckets_of_no_readings_are_no_buckets() -> None:
    for resolution in rollups.RESOLUTIONS:
        assert rollups.bucket_starts(np.empty(0, np.int64), resolution).shape == (0,)


def test_zones_with_half_hour_offsets_get_local_hours() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30
    t = _i64(_us("2026-05-05T10:45", kolkata))
    assert rollups.bucket_starts(t, "1h", "Asia/Kolkata")[0] == _us("2026-05-05T10:00", kolkata)
    assert rollups.bucket_starts(t, "1d", "Asia/Kolkata")[0] == _us("2026-05-05T00:00", kolkata)


TIMES = st.integers(_us("1990-01-01T00:00"), _us("2060-01-01T00:00"))


@settings(max_examples=300, deadline=None)
@given(st.lists(TIMES, min_size=1, max_size=50), st.sampled_from(rollups.RESOLUTIONS))
def test_every_instant_lies_in_its_bucket(times: list[int], resolution: Resolution) -> None:
    t = np.array(times, dtype=np.int64)
    start = rollups.bucket_starts(t, resolution)
    end = rollups.next_bucket_starts(start, resolution)
    assert (start <= t).all()
    assert (t < end).all()
    assert (rollups.bucket_starts(start, resolution) == start).all()
    if resolution == "1d":
        for instant, day in zip(t.tolist(), start.tolist(), strict=True):
            local = _local(day)
            assert (local.hour, local.minute, local.second) == (0, 0, 0)
            assert local.date() == _local(instant).date()
        assert set(((end - start) // HOUR_US).tolist()) <= {23, 24, 25}


# -- partials ---------------------------------------------------------------------------


def _partials(rows: list[tuple[int, int, float, int]], resolution: Resolution) -> Partials:
    s, t, v, q = zip(*rows, strict=True) if rows else ((), (), (), ())
    return rollups.partials(
        np.array(s, dtype=np.int32),
        np.array(t, dtype=np.int64),
        np.array(v, dtype=np.float64),
        np.array(q, dtype=np.int16),
        resolution,
    )


def _as_rows(p: Partials) -> list[tuple[object, ...]]:
    return list(zip(*(getattr(p, c).tolist() for c in rollups.ROLLUP_COLUMNS), strict=True))


H = _us("2026-05-04T10:00")  # an hour start


def test_partials_count_usable_readings_and_leave_out_failed_ones() -> None:
    m = MINUTE_US
    rows = [
        (7, H + 30 * m, 4.0, SUSPECT),
        (7, H + 10 * m, 2.0, GOOD),
        (7, H + 50 * m, 999.0, FAIL),  # impossible: in no aggregate
        (7, H + 40 * m, np.nan, MISSING),
        (7, H + 20 * m, 6.0, NOT_EVALUATED),
        (3, H + HOUR_US + m, 1.0, GOOD),  # next hour, another series
    ]
    p = _partials(rows, "1h")
    assert _as_rows(p) == [
        (3, H + HOUR_US, 1, 1, 1.0, 1.0, 1.0, 1.0, H + HOUR_US + m, 1.0, H + HOUR_US + m, 1.0),
        (7, H, 3, 2, 12.0, 56.0, 2.0, 6.0, H + 10 * m, 2.0, H + 30 * m, 4.0),
    ]
    assert p.series_id.dtype == np.int32
    assert p.bucket.dtype == np.int64


def test_a_bucket_of_failed_readings_has_no_partial() -> None:
    assert len(_partials([(1, H, 5000.0, FAIL)], "1h")) == 0


def test_no_readings_give_no_partials_and_merge_with_anything() -> None:
    empty = _partials([], "1m")
    assert len(empty) == 0
    assert set(empty.columns()) == set(rollups.ROLLUP_COLUMNS)
    some = _partials([(1, H, 1.0, GOOD)], "1m")
    assert _as_rows(rollups.merge(empty, some)) == _as_rows(some)
    assert _as_rows(rollups.merge(some, empty)) == _as_rows(some)
    assert len(rollups.merge(empty, empty)) == 0
    summary = rollups.finalize(empty, expected_interval_s=60)
    assert summary.mean.shape == (0,)
    assert summary.coverage.shape == (0,)


def test_columns_follow_the_rollups_table() -> None:
    assert rollups.ROLLUP_COLUMNS == (
        "series_id",
        "bucket",
        "count",
        "good_count",
        "sum",
        "sum_sq",
        "min",
        "max",
        "first_time",
        "first_value",
        "last_time",
        "last_value",
    )


def test_late_readings_merged_into_a_stored_bucket_equal_a_recomputation() -> None:
    m = MINUTE_US
    on_time = [(1, H + i * m, float(i), GOOD) for i in range(10, 50)]
    late = [(1, H + 5 * m, -3.0, SUSPECT), (1, H + 55 * m, 70.0, GOOD), (2, H, 1.0, GOOD)]
    stored = _partials(on_time, "1h")
    merged = rollups.merge(stored, _partials(late, "1h"))
    assert _as_rows(merged) == _as_rows(_partials(on_time + late, "1h"))
    row = _as_rows(merged)[0]
    assert row[8:] == (H + 5 * m, -3.0, H + 55 * m, 70.0)  # first and last moved outwards


def test_merging_different_resolutions_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        rollups.merge(_partials([(1, H, 1.0, GOOD)], "1h"), _partials([(1, H, 1.0, GOOD)], "1d"))


def test_a_dst_day_rolls_up_its_23_and_25_hours() -> None:
    spring = _us("2026-03-29T00:00")
    fall = _us("2026-10-25T00:00")
    hours = np.concatenate(
        [spring + np.arange(23) * HOUR_US, fall + np.arange(25) * HOUR_US]
    ).astype(np.int64)
    n = len(hours)
    p = rollups.partials(np.ones(n, np.int32), hours, np.ones(n), np.full(n, GOOD, np.int16), "1d")
    assert p.bucket.tolist() == [spring, fall]
    assert p.count.tolist() == [23, 25]
    summary = rollups.finalize(p, expected_interval_s=3600)
    assert summary.coverage.tolist() == [1.0, 1.0]
    assert (summary.bucket_end - summary.bucket).tolist() == [23 * HOUR_US, 25 * HOUR_US]


def test_finalize_gives_mean_population_std_and_shares() -> None:
    m = MINUTE_US
    rows = [(1, H + i * m, v, q) for i, (v, q) in enumerate([(2, GOOD), (4, GOOD), (6, SUSPECT)])]
    p = _partials([*rows, (2, H, 5.0, GOOD)], "1h")
    summary = rollups.finalize(p, expected_interval_s=60)
    assert summary.mean.tolist() == [4.0, 5.0]
    assert summary.std[0] == pytest.approx(np.std([2, 4, 6]))
    assert summary.std[1] == 0.0
    assert summary.good_share.tolist() == [pytest.approx(2 / 3), 1.0]
    assert summary.coverage.tolist() == [3 / 60, 1 / 60]
    sample = rollups.finalize(p, ddof=1)
    assert sample.std[0] == pytest.approx(np.std([2, 4, 6], ddof=1))
    assert np.isnan(sample.std[1])
    assert np.isnan(sample.coverage).all()


def test_a_large_constant_does_not_give_a_negative_variance() -> None:
    t = H + np.arange(60, dtype=np.int64) * MINUTE_US
    p = rollups.partials(np.ones(60, np.int32), t, np.full(60, 1013.1), np.ones(60, np.int16), "1h")
    assert rollups.finalize(p).std[0] == pytest.approx(0.0, abs=1e-4)


# -- merge properties ---------------------------------------------------------------------

# integer-valued readings keep float sums exact, so equality can be exact too
# series ids far apart make the grouping sort instead of addressing slots directly
READINGS = st.lists(
    st.tuples(
        st.sampled_from([1, 2, 3, 4, 40_000_000]),
        st.integers(_us("2026-03-28T20:00"), _us("2026-03-30T04:00")),
        st.integers(-1000, 1000).map(float),
        st.sampled_from([GOOD, NOT_EVALUATED, SUSPECT, FAIL]),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(READINGS, st.data(), st.sampled_from(rollups.RESOLUTIONS))
def test_merging_the_partials_of_any_split_equals_computing_at_once(
    rows: list[tuple[int, int, float, int]], data: st.DataObject, resolution: Resolution
) -> None:
    part = data.draw(st.lists(st.integers(0, 2), min_size=len(rows), max_size=len(rows)))
    a, b, c = ([r for r, k in zip(rows, part, strict=True) if k == i] for i in range(3))
    pa, pb, pc = (_partials(x, resolution) for x in (a, b, c))
    whole = _as_rows(_partials(rows, resolution))
    assert _as_rows(rollups.merge(rollups.merge(pa, pb), pc)) == whole
    assert _as_rows(rollups.merge(pa, rollups.merge(pb, pc))) == whole  # associative
    assert _as_rows(rollups.merge(pb, pa)) == _as_rows(rollups.merge(pa, pb))  # commutative


@settings(max_examples=100, deadline=None)
@given(READINGS, st.data())
def test_readings_at_the_same_instant_merge_the_same_in_any_order(
    rows: list[tuple[int, int, float, int]], data: st.DataObject
) -> None:
    # duplicates that the readings key would absorb still give an order-free result
    twins = [(s, t, v + 1, q) for s, t, v, q in rows]
    order = data.draw(st.permutations(rows + twins))
    assert _as_rows(_partials(order, "1h")) == _as_rows(_partials(rows + twins, "1h"))


def test_sparse_series_ids_group_like_dense_ones() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    dense = rng.integers(1, 4, n).astype(np.int32)
    sparse = np.array([0, 7, 300_000_000, 2_000_000_000], dtype=np.int32)[dense]
    t = (H + rng.integers(0, 5 * DAY_US, n)).astype(np.int64)
    v = rng.integers(-50, 50, n).astype(np.float64)
    q = rng.choice([1, 2, 3, 4], n).astype(np.int16)
    for resolution in rollups.RESOLUTIONS:
        a = _as_rows(rollups.partials(dense, t, v, q, resolution))
        b = _as_rows(rollups.partials(sparse, t, v, q, resolution))
        assert [row[1:] for row in a] == [row[1:] for row in b]
        assert [row[0] for row in b] == [[0, 7, 300_000_000, 2_000_000_000][i] for i, *_ in a]


def test_float_readings_merge_to_the_same_sums_within_rounding() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    s = rng.integers(1, 20, n).astype(np.int32)
    t = (H + rng.integers(0, 3 * DAY_US, n)).astype(np.int64)
    v = rng.normal(10, 3, n)
    q = rng.choice([1, 2, 3, 4], n).astype(np.int16)
    cut = rng.random(n) < 0.3
    whole = rollups.partials(s, t, v, q, "1h")
    merged = rollups.merge(
        rollups.partials(s[cut], t[cut], v[cut], q[cut], "1h"),
        rollups.partials(s[~cut], t[~cut], v[~cut], q[~cut], "1h"),
    )
    for column in rollups.ROLLUP_COLUMNS:
        np.testing.assert_allclose(getattr(merged, column), getattr(whole, column), rtol=1e-12)


# -- which readings get 1-minute rows ----------------------------------------------------

S = 1_000_000  # µs


def test_only_series_reporting_about_twice_a_minute_or_more_get_minute_rows() -> None:
    # series 1 every second, 2 every minute (with jitter), 3 every 30 s, 4 every 45 s
    series = np.array([1] * 5 + [2] * 5 + [3] * 5 + [4] * 5, np.int32)
    times = H + np.concatenate(
        [
            np.arange(5) * S,
            np.array([0, 58, 121, 179, 242]) * S,
            np.arange(5) * 30 * S,
            np.arange(5) * 45 * S,
        ]
    ).astype(np.int64)
    picked = rollups.minute_readings(series, times)
    assert picked.tolist() == [True] * 5 + [False] * 5 + [True] * 5 + [False] * 5


def test_a_batch_of_one_reading_a_series_is_judged_by_the_one_before() -> None:
    latest = rollups.LatestTimes()
    one = np.array([7], np.int32)
    assert not rollups.minute_readings(one, _i64(H), latest).any()  # never seen: no
    assert rollups.minute_readings(one, _i64(H + 1 * S), latest).all()  # a second later
    assert not rollups.minute_readings(one, _i64(H + 61 * S), latest).any()  # a minute later
    # an older reading arriving late changes nothing remembered
    assert rollups.minute_readings(one, _i64(H + 40 * S), latest).all()
    assert latest.of(np.array([7, 8])).tolist() == [H + 61 * S, rollups.UNSEEN]


def test_latest_times_keep_series_in_order_whatever_their_ids() -> None:
    latest = rollups.LatestTimes()
    latest.advance(_i64(5, 2_000_000_000), _i64(10, 20))
    latest.advance(_i64(1, 5, 9), _i64(1, 5, 9))
    assert len(latest) == 4
    assert latest.of(np.array([9, 5, 1, 2_000_000_000, 3])).tolist() == [
        9,
        10,
        1,
        20,
        rollups.UNSEEN,
    ]
