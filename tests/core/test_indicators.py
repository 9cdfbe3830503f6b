"""Indicators turn hand-made readings into the EEA air index, building energy and traffic."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from core import indicators as ind
from core.rollups import HOUR_US, MINUTE_US

OSLO = ZoneInfo("Europe/Oslo")


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=OSLO).timestamp()) * 1_000_000


def _i(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


def _f(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float64)


H = _us("2026-05-04T10:00")
EMPTY_I = np.empty(0, np.int64)
EMPTY_F = np.empty(0, np.float64)


# -- air quality index ---------------------------------------------------------------------


def test_aqi_bands_are_lower_bounds() -> None:
    means = _f(0, 4.9, 5, 14.9, 15, 49.9, 50, 90, 140, 1000, -1, np.nan)
    assert ind.aqi_levels("pm25", means).tolist() == [1, 1, 2, 2, 3, 3, 4, 5, 6, 6, 1, 0]


@pytest.mark.parametrize("pollutant", ind.POLLUTANTS)
def test_each_pollutants_bounds_open_levels_two_to_six(pollutant: str) -> None:
    bounds = np.array(ind.AQI_BANDS[pollutant])
    assert ind.aqi_levels(pollutant, bounds).tolist() == [2, 3, 4, 5, 6]
    assert ind.aqi_levels(pollutant, bounds - 0.01).tolist() == [1, 2, 3, 4, 5]
    assert ind.aqi_levels(pollutant, EMPTY_F).dtype == np.int8


def test_aqi_of_an_unknown_pollutant_is_refused() -> None:
    with pytest.raises(ValueError, match="co"):
        ind.aqi_levels("co", _f(1))


def test_station_index_is_the_worst_pollutant_and_names_it() -> None:
    pm25, pm10, no2, o3, _so2 = range(5)
    rows = [
        # station 1, hour H: PM10 Moderate (3) beats NO2 Fair (2)
        (1, H, no2, 20.0),
        (1, H, pm10, 50.0),
        # station 1, hour H+1: PM2.5 and NO2 both Poor (4): the tie goes to PM2.5
        (1, H + HOUR_US, no2, 70.0),
        (1, H + HOUR_US, pm25, 60.0),
        # station 2: only ozone, Extremely poor
        (2, H, o3, 200.0),
        # station 2, next hour: no valid mean at all
        (2, H + HOUR_US, pm25, np.nan),
    ]
    station, hour, code, mean = (np.array(x) for x in zip(*rows[::-1], strict=True))
    aqi = ind.station_aqi(station, hour, code, mean)
    assert aqi.station_id.tolist() == [1, 1, 2, 2]
    assert aqi.hour.tolist() == [H, H + HOUR_US, H, H + HOUR_US]
    assert aqi.level.tolist() == [3, 4, 6, ind.NO_INDEX]
    assert aqi.dominant.tolist() == [pm10, pm25, o3, -1]


def test_station_index_of_no_means_is_empty() -> None:
    aqi = ind.station_aqi(EMPTY_I, EMPTY_I, EMPTY_I, EMPTY_F)
    assert len(aqi.level) == 0
    assert aqi.level.dtype == np.int8


def test_pollutant_codes_follow_the_pollutant_list() -> None:
    assert ind.pollutant_codes(["so2", "pm25", "o3", "pm25"]).tolist() == [4, 0, 3, 0]
    assert ind.pollutant_codes([]).tolist() == []
    with pytest.raises(ValueError, match="temperature"):
        ind.pollutant_codes(["pm10", "temperature"])


# -- energy ----------------------------------------------------------------------------------


def test_register_differences_are_consumption_and_a_reset_restarts_from_zero() -> None:
    t = H + np.arange(5, dtype=np.int64) * 15 * MINUTE_US
    register = _f(100.0, 101.5, 103.0, 2.0, 3.5)  # reset between the 3rd and 4th reading
    out = ind.consumption_from_register(np.ones(5, np.int64), t, register)
    assert out.kwh.tolist() == [1.5, 1.5, 2.0, 1.5]
    assert out.start_us.tolist() == t[:-1].tolist()
    assert out.end_us.tolist() == t[1:].tolist()


def test_register_jitter_within_tolerance_is_not_a_reset() -> None:
    t = H + np.arange(3, dtype=np.int64) * MINUTE_US
    out = ind.consumption_from_register(
        np.ones(3, np.int64), t, _f(500.0, 499.99, 500.5), reset_tolerance_kwh=0.05
    )
    assert out.kwh == pytest.approx([0.0, 0.51])


def test_registers_of_several_meters_are_differenced_per_series_in_time_order() -> None:
    series = _i(2, 1, 2, 1, 1)
    t = _i(H + 60, H, H, H + 120, H + 60)
    register = _f(10.0, 1.0, 4.0, 3.0, 2.5)
    out = ind.consumption_from_register(series, t, register, group_ids=_i(9, 8, 9, 8, 8))
    assert out.series_id.tolist() == [1, 1, 2]
    assert out.group_id.tolist() == [8, 8, 9]
    assert out.kwh.tolist() == [1.5, 0.5, 6.0]


def test_power_is_integrated_by_trapezoids_but_not_across_a_long_gap() -> None:
    minutes = _i(0, 15, 30, 45, 60, 180)
    power = _f(1000, 1000, 3000, 1000, 1000, 1000)
    out = ind.consumption_from_power(
        np.ones(6, np.int64), H + minutes * MINUTE_US, power, max_gap_s=900
    )
    # 15 min at 1 kW = 0.25 kWh; ramps to and from 3 kW average 2 kW = 0.5 kWh
    assert out.kwh == pytest.approx([0.25, 0.5, 0.5, 0.25])
    assert out.end_us[-1] == H + HOUR_US  # nothing from the 2-hour gap


def test_intervals_are_shared_between_hours_in_proportion_to_time() -> None:
    # read at 08:50, 10:50 and 11:20: nothing used in the first two hours, then 3 kWh
    # over 30 minutes, 10 of them in the 10 o'clock hour
    t = _i(H - 70 * MINUTE_US, H + 50 * MINUTE_US, H + 80 * MINUTE_US)
    out = ind.consumption_from_register(_i(1, 1, 1), t, _f(0, 0, 3))
    totals = ind.energy_totals(out, "1h")
    assert totals.bucket.tolist() == [H - 2 * HOUR_US, H - HOUR_US, H, H + HOUR_US]
    assert totals.kwh == pytest.approx([0.0, 0.0, 1.0, 2.0])
    assert totals.covered_s.tolist() == [10 * 60, 60 * 60, 60 * 60, 20 * 60]


def _steady_kw(day: str, hours: int) -> ind.Intervals:
    midnight = _us(day)
    t = midnight + np.arange(hours * 4 + 1, dtype=np.int64) * 15 * MINUTE_US
    return ind.consumption_from_power(np.ones(len(t), np.int64), t, np.full(len(t), 1000.0))


def test_a_steady_kilowatt_makes_23_and_25_kwh_on_dst_days() -> None:
    for day, hours in (("2026-03-29T00:00", 23), ("2026-10-25T00:00", 25)):
        daily = ind.energy_totals(_steady_kw(day, hours), "1d")
        assert daily.bucket.tolist() == [_us(day)]
        assert daily.kwh == pytest.approx([float(hours)])
        assert daily.covered_s.tolist() == [hours * 3600.0]
        hourly = ind.energy_totals(_steady_kw(day, hours), "1h")
        assert len(hourly.bucket) == hours


def test_buildings_sum_their_meters() -> None:
    t = _i(H, H + HOUR_US)
    out = ind.consumption_from_register(
        _i(1, 1, 2, 2), np.tile(t, 2), _f(0, 5, 10, 12), group_ids=_i(7, 7, 7, 7)
    )
    totals = ind.energy_totals(out, "1d")
    assert totals.group_id.tolist() == [7]
    assert totals.kwh.tolist() == [7.0]


def test_energy_totals_of_the_parts_of_a_day_merge_into_the_days() -> None:
    """Intervals split anywhere (as streaming a day in chunks splits them) give totals
    that merge into those of all the intervals at once."""
    rng = np.random.default_rng(5)
    t = H + np.cumsum(rng.integers(1, 20 * 60, 400)) * 1_000_000
    series = np.repeat(_i(1, 2), 200)
    out = ind.consumption_from_power(series, t, rng.uniform(0, 5000, 400), group_ids=series % 2)
    for resolution in ("1h", "1d"):
        whole = ind.energy_totals(out, resolution)  # type: ignore[arg-type]
        parts = [
            ind.energy_totals(
                ind.Intervals(*(getattr(out, name)[piece] for name in ind.Intervals.__slots__)),
                resolution,  # type: ignore[arg-type]
            )
            for piece in np.array_split(np.arange(len(out)), [1, 50, 51, 300])
        ]
        merged = ind.merge_energy_totals(parts)
        assert merged.group_id.tolist() == whole.group_id.tolist()
        assert merged.bucket.tolist() == whole.bucket.tolist()
        assert merged.kwh == pytest.approx(whole.kwh, rel=1e-12)
        assert merged.covered_s == pytest.approx(whole.covered_s, rel=1e-12)
    assert len(ind.merge_energy_totals([]).kwh) == 0


def test_energy_of_nothing_is_empty() -> None:
    out = ind.consumption_from_register(EMPTY_I, EMPTY_I, EMPTY_F)
    assert len(out) == 0
    assert len(ind.consumption_from_power(EMPTY_I, EMPTY_I, EMPTY_F)) == 0
    assert len(ind.energy_totals(out, "1h").kwh) == 0
    with pytest.raises(ValueError, match="hourly or daily"):
        ind.energy_totals(out, "1m")  # type: ignore[arg-type]


def test_co2e_uses_the_configured_grid_factor() -> None:
    assert ind.co2e_kg(_f(1000.0, 0.0), 19.0).tolist() == [19.0, 0.0]
    with pytest.raises(ValueError, match="grid factor"):
        ind.co2e_kg(1.0, -5.0)


# -- traffic ---------------------------------------------------------------------------------


def test_hourly_volume_speed_and_heavy_share() -> None:
    # 15-minute counts stamped at the end of the interval: 11:00 closes the 10 o'clock hour
    t = H + _i(15, 30, 45, 60, 75) * MINUTE_US
    vehicles = _f(10, 30, 0, 60, 5)
    heavy = _f(1, 3, 0, np.nan, 1)
    speed = _f(40, 60, np.nan, 50, 30)
    out = ind.traffic_buckets(
        np.ones(5, np.int64), t, vehicles, heavy, speed, interval_s=900, bucket_s=3600
    )
    assert out.bucket.tolist() == [H, H + HOUR_US]
    assert out.volume.tolist() == [100.0, 5.0]
    assert out.mean_speed_kmh[0] == pytest.approx((10 * 40 + 30 * 60 + 60 * 50) / 100)
    assert out.heavy_share[0] == pytest.approx(4 / 40)  # the 60 without a heavy count left out
    assert out.coverage.tolist() == [1.0, 0.25]


def test_an_empty_road_has_volume_zero_and_no_speed() -> None:
    t = H + _i(15, 30, 45, 60) * MINUTE_US
    zeros = np.zeros(4)
    out = ind.traffic_buckets(
        np.ones(4, np.int64), t, zeros, zeros, np.full(4, np.nan), interval_s=900
    )
    assert out.volume.tolist() == [0.0]
    assert np.isnan(out.mean_speed_kmh[0])
    assert np.isnan(out.heavy_share[0])


@pytest.mark.parametrize("bucket_s", [60, 300, 600, 899])
def test_traffic_aggregates_under_15_minutes_are_refused_for_privacy(bucket_s: int) -> None:
    with pytest.raises(ValueError, match="privacy"):
        ind.traffic_buckets(_i(1), _i(H), _f(1), _f(0), _f(50), interval_s=60, bucket_s=bucket_s)


def test_traffic_buckets_that_cannot_hold_whole_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match="divide"):
        ind.traffic_buckets(_i(1), _i(H), _f(1), _f(0), _f(50), interval_s=3600, bucket_s=900)
    with pytest.raises(ValueError, match="divide an hour"):
        ind.traffic_buckets(_i(1), _i(H), _f(1), _f(0), _f(50), interval_s=60, bucket_s=7200)


def test_average_daily_traffic_is_the_mean_of_full_days() -> None:
    # counter 1: two full days (one of them the 23-hour spring-forward day) and a partial one
    hourly = 3600
    days = []
    for day, hours, per_hour in (
        ("2026-03-28T00:00", 24, 10.0),
        ("2026-03-29T00:00", 23, 20.0),
        ("2026-03-30T00:00", 12, 50.0),
    ):
        start = _us(day)
        days.append((start + np.arange(1, hours + 1) * HOUR_US, np.full(hours, per_hour)))
    t = np.concatenate([d[0] for d in days]).astype(np.int64)
    vehicles = np.concatenate([d[1] for d in days])
    counters = np.ones(len(t), np.int64)
    daily = ind.daily_traffic(counters, t, vehicles, interval_s=hourly)
    assert daily.day.tolist() == [_us("2026-03-28T00:00"), _us("2026-03-29T00:00"),
                                  _us("2026-03-30T00:00")]  # fmt: skip
    assert daily.volume.tolist() == [240.0, 460.0, 600.0]
    assert daily.coverage.tolist() == [1.0, 1.0, 0.5]
    adt = ind.average_daily_traffic(daily)
    assert adt.counter_id.tolist() == [1]
    assert adt.vehicles_per_day.tolist() == [350.0]
    assert adt.full_days.tolist() == [2]
    assert ind.average_daily_traffic(daily, min_coverage=0.5).full_days.tolist() == [3]


def test_traffic_sums_of_the_parts_of_a_day_merge_and_finish_into_its_buckets() -> None:
    """A counter's day summed in parts (the reporting interval still unknown) and
    finished once equals `traffic_buckets` over the whole day."""
    rng = np.random.default_rng(9)
    starts = H + np.arange(0, 24 * 60, 5) * MINUTE_US
    n = len(starts)
    vehicles = rng.poisson(20, n).astype(float)
    heavy = np.where(rng.random(n) < 0.1, np.nan, rng.poisson(2, n))
    speed = np.where(rng.random(n) < 0.1, np.nan, rng.normal(50, 5, n))
    counters = np.full(n, 3, np.int64)
    whole = ind.traffic_buckets(
        counters, starts, vehicles, heavy, speed, interval_s=300, stamped="start"
    )
    parts = [
        ind.traffic_sums(counters[p], starts[p], vehicles[p], heavy[p], speed[p])
        for p in np.array_split(np.arange(n), [5, 6, 100, 101, 200])
    ]
    out = ind.finish_traffic(ind.merge_traffic_sums(parts), interval_s=300)
    assert out.bucket.tolist() == whole.bucket.tolist()
    assert out.counter_id.tolist() == [3] * 24
    for name in ind.TrafficBuckets.__slots__:
        assert getattr(out, name) == pytest.approx(getattr(whole, name), rel=1e-12, nan_ok=True)
    with pytest.raises(ValueError, match="divide"):
        ind.finish_traffic(ind.merge_traffic_sums(parts), interval_s=420)


def test_traffic_of_nothing_is_empty() -> None:
    out = ind.traffic_buckets(EMPTY_I, EMPTY_I, EMPTY_F, EMPTY_F, EMPTY_F, interval_s=300)
    assert len(out.volume) == 0
    daily = ind.daily_traffic(EMPTY_I, EMPTY_I, EMPTY_F, interval_s=300)
    assert len(daily.volume) == 0
    assert len(ind.average_daily_traffic(daily).vehicles_per_day) == 0
