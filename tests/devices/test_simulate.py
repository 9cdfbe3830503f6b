"""Simulated Narvik sensors: deterministic, decodable by ingest, realistic, faulty where
told to be, and stored end to end through the real broker and ingest worker."""

from __future__ import annotations

import datetime as dt
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import cbor2
import numpy as np
import orjson
import psycopg
import pytest

import db
from core.decode import decode, metric_key
from core.units import conversion
from devices.catalogue import Catalogue, DeviceSpec, load_catalogue, narvik_catalogue_path
from devices.provision import import_catalogue
from devices.simulation import (
    SimulationError,
    Simulator,
    count_messages,
    encode_payload,
    readings,
    simulated_messages,
)
from tests.fixtures.ingest import count, running_worker, unique_prefix, wait_for
from tests.fixtures.mqtt import Collector
from tests.fixtures.services import Services

OSLO = ZoneInfo("Europe/Oslo")
MIGRATIONS = Path(db.__file__).with_name("migrations")


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


# Monday 3 March 2025 to Monday 10 March: a school week in late winter (no holidays).
WEEK = (utc(2025, 3, 3), utc(2025, 3, 10))


def canonical_units() -> dict[str, tuple[str, float | None]]:
    """Metric key -> (canonical unit, molar mass) from migration 0003."""
    text = (MIGRATIONS / "0003_metric_catalogue.sql").read_text()
    rows = re.findall(
        r"\(\s*'([a-z0-9_]+)',\s*'[^']*',\s*'[a-z_]+',\s*'([^']+)',.*?'(?:gauge|count|cumulative)',"
        r"\s*(NULL|[0-9.]+)",
        text,
        flags=re.S,
    )
    return {key: (unit, None if mass == "NULL" else float(mass)) for key, unit, mass in rows}


@pytest.fixture(scope="module")
def narvik() -> Catalogue:
    return load_catalogue(narvik_catalogue_path())


@pytest.fixture(scope="module")
def week(narvik: Catalogue) -> dict[str, dict[str, np.ndarray]]:
    """Seven simulated days of every device (seed 0)."""
    return {spec.id: readings(spec, *WEEK, seed=0) for spec in narvik.devices}


def local(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local (Europe/Oslo) hour and weekday (0 = Monday) of each time, the slow honest way."""
    moments = [dt.datetime.fromtimestamp(t, OSLO) for t in times.tolist()]
    hours = np.array([m.hour + m.minute / 60 for m in moments])
    weekdays = np.array([m.weekday() for m in moments])
    return hours, weekdays


def daily(times: np.ndarray, values: np.ndarray, reduce: Callable[[np.ndarray], float]) -> dict:
    days = np.array([dt.datetime.fromtimestamp(t, OSLO).date() for t in times.tolist()])
    return {day: reduce(values[days == day]) for day in np.unique(days)}


# ------------------------------------------------------------------- determinism


def test_same_seed_same_payloads_other_seed_other_payloads(narvik: Catalogue) -> None:
    start = utc(2025, 11, 3)
    one = list(simulated_messages(narvik.devices, start, start + 6 * 3600, seed=7))
    again = list(simulated_messages(narvik.devices, start, start + 6 * 3600, seed=7))
    other = list(simulated_messages(narvik.devices, start, start + 6 * 3600, seed=8))
    assert one == again
    first = {(sent, topic): payload for sent, topic, payload in one}
    second = {(sent, topic): payload for sent, topic, payload in other}
    common = first.keys() & second.keys()  # a dropout fault's gaps move with the seed
    assert len(common) > 0.9 * len(first)
    assert sum(first[key] == second[key] for key in common) < 0.1 * len(common)


def test_a_reading_does_not_depend_on_the_window_it_is_computed_in(narvik: Catalogue) -> None:
    """Live runs produce a few minutes at a time and must join a backfill seamlessly."""
    start, end = utc(2025, 3, 3), utc(2025, 3, 5)
    cut = start + 86400 * 0.73 + 17
    for spec in narvik.devices:
        whole = readings(spec, start, end, seed=1)
        first, second = readings(spec, start, cut, seed=1), readings(spec, cut, end, seed=1)
        for key, values in whole.items():
            joined = np.concatenate([first[key], second[key]])
            np.testing.assert_array_equal(values, joined, err_msg=f"{spec.id} {key}")


def test_messages_come_in_send_order_and_their_count_is_known_ahead(narvik: Catalogue) -> None:
    start = utc(2025, 3, 3, 5)
    messages = list(simulated_messages(narvik.devices, start, start + 7200, seed=0))
    sent = [m[0] for m in messages]
    assert sent == sorted(sent)
    assert all(start <= t < start + 7200 for t in sent)
    assert len(messages) == count_messages(narvik.devices, start, start + 7200, seed=0)
    topics = {m[1] for m in messages}
    assert topics == {f"smartby/{d.id}/telemetry" for d in narvik.devices}


# ------------------------------------------------------------------------ payloads


def test_every_payload_decodes_without_rejects_in_units_convertible_to_canonical(
    narvik: Catalogue,
) -> None:
    units = canonical_units()
    assert len(units) == 13
    start = utc(2025, 3, 3, 6)
    by_topic = {f"smartby/{d.id}/telemetry": d for d in narvik.devices}
    forms: set[str] = set()
    for sent, topic, payload in simulated_messages(narvik.devices, start, start + 3 * 3600, 0):
        spec = by_topic[topic]
        result = decode(payload, now=sent)
        assert result.rejected == [], (topic, payload)
        forms.add(result.form)
        keys = [metric_key(reading.name) for reading in result.readings]
        assert set(keys) <= set(spec.metrics), payload
        assert len(keys) == len(set(keys)), payload
        missing = set(spec.metrics) - set(keys)
        assert missing <= {"speed"}, payload  # no vehicles, no mean speed
        for reading, key in zip(result.readings, keys, strict=True):
            unit, molar_mass = units[key]
            scale, offset = conversion(reading.unit or unit, unit, molar_mass)
            assert np.isfinite(reading.value * scale + offset)
            assert reading.is_sum == (key == "energy")
    assert forms == {"senml+json", "senml+cbor", "json"}


def test_decoded_values_are_the_simulated_readings_in_canonical_units(narvik: Catalogue) -> None:
    """What ingest will store (after unit conversion) equals what `readings` returns."""
    units = canonical_units()
    start, end = utc(2025, 3, 3, 6), utc(2025, 3, 3, 9)
    for device_id in ("aq-sentrum", "aq-ornes", "em-narvik-vgs", "tc-e6-ornes"):
        spec = narvik.device(device_id)
        expected = readings(spec, start - (900 if spec.kind == "traffic" else 0), end, seed=0)
        decoded: dict[str, list[float]] = {key: [] for key in spec.metrics}
        stamps: list[float] = []
        for sent, _topic, payload in simulated_messages([spec], start, end, seed=0):
            result = decode(payload, now=sent)
            stamps.append(result.readings[0].time)
            for reading in result.readings:
                key = metric_key(reading.name)
                unit, molar_mass = units[key]
                scale, offset = conversion(reading.unit or unit, unit, molar_mass)
                decoded[key].append(reading.value * scale + offset)
        wanted = (expected["sent"] >= start) & (expected["sent"] < end)
        np.testing.assert_array_equal(stamps, expected["time"][wanted])
        for key in spec.metrics:
            values = expected[key][wanted]
            values = values[~np.isnan(values)]
            np.testing.assert_allclose(decoded[key], values, rtol=1e-12, err_msg=key)


def test_payload_forms_look_like_real_devices_send_them(narvik: Catalogue) -> None:
    stamp = utc(2025, 3, 3, 7, 30)
    senml = orjson.loads(
        encode_payload(narvik.device("aq-sentrum"), stamp, {"pm25": 7.3, "no2": 41.2})
    )
    assert senml == [
        {"bn": "aq-sentrum:", "bt": int(stamp), "n": "pm25", "u": "ug/m3", "v": 7.3},
        {"n": "no2", "u": "ug/m3", "v": 41.2},
    ]
    # RFC 8428 §4.2: a sum with u=W is in W·s, so 123.456 kWh is 444,441,600 J
    meter = orjson.loads(
        encode_payload(narvik.device("em-radhus"), stamp, {"energy": 123.456, "power": 52110.0})
    )
    assert meter[0]["s"] == 444_441_600
    assert meter[0]["u"] == "W"
    assert "v" not in meter[0]
    assert meter[1] == {"n": "power", "u": "W", "v": 52110}
    cbor = cbor2.loads(encode_payload(narvik.device("aq-ornes"), stamp, {"pm10": 30.5}))
    assert cbor == [{-2: "aq-ornes:", -3: int(stamp), 0: "pm10", 1: "ug/m3", 2: 30.5}]
    counts = orjson.loads(
        encode_payload(
            narvik.device("tc-e6-ornes"),
            stamp,
            {"vehicle_count": 0.0, "heavy_vehicle_count": 0.0, "speed": float("nan")},
        )
    )
    assert counts == {"time": "2025-03-03T07:30:00Z", "vehicle_count": 0, "heavy_vehicle_count": 0}


# ------------------------------------------------------------------------ patterns


@pytest.mark.parametrize("device_id", ["aq-sentrum", "aq-beisfjordveien", "aq-ornes"])
def test_no2_at_roadside_peaks_in_the_weekday_rush_hours(week: dict, device_id: str) -> None:
    series = week[device_id]
    hours, weekdays = local(series["time"])
    rush = (weekdays < 5) & (((hours >= 7) & (hours < 9)) | ((hours >= 15) & (hours < 17)))
    night = (hours >= 1) & (hours < 5)
    rush_mean, night_mean = series["no2"][rush].mean(), series["no2"][night].mean()
    assert rush_mean > 2.5 * night_mean, (rush_mean, night_mean)


def test_rush_hours_keep_to_local_time_across_daylight_saving(narvik: Catalogue) -> None:
    """People commute by the Oslo clock: the morning peak is at the same local hour in
    winter (UTC+1) and summer (UTC+2), so an hour earlier in UTC in summer."""
    spec = narvik.device("tc-kongens-gate")
    peaks = []
    for month in (1, 6):  # June: before the school summer holiday
        series = readings(spec, utc(2025, month, 6), utc(2025, month, 13), seed=0)
        hours, weekdays = local(series["time"])
        morning = (weekdays < 5) & (hours < 11)
        by_hour = [
            series["vehicle_count"][morning & (hours.astype(int) == h)].sum() for h in range(11)
        ]
        peaks.append(int(np.argmax(by_hour)))
    assert peaks == [7, 7]


def test_an_empty_window_gives_empty_series(narvik: Catalogue) -> None:
    for kind in ("air_quality", "energy", "traffic"):
        spec = narvik.of_kind(kind)[0]
        series = readings(spec, WEEK[0], WEEK[0], seed=0)
        assert set(series) == {"time", "sent", *spec.metrics}
        assert all(values.size == 0 for values in series.values())
    assert list(simulated_messages(narvik.devices, WEEK[0], WEEK[0], seed=0)) == []


def test_roadside_air_is_dirtier_than_urban_background(week: dict, narvik: Catalogue) -> None:
    def mean(kind: str, metric: str) -> float:
        devices = [d.id for d in narvik.of_kind("air_quality") if d.site.kind == kind]
        return float(np.mean([week[d][metric].mean() for d in devices if d != "aq-framneslia"]))

    assert mean("roadside", "no2") > 1.8 * mean("urban_background", "no2")
    assert mean("roadside", "pm10") > 1.5 * mean("urban_background", "pm10")


def test_pm10_road_dust_episodes_come_on_dry_late_winter_days(narvik: Catalogue) -> None:
    spec = narvik.device("aq-sentrum")
    march = readings(spec, utc(2025, 3, 1), utc(2025, 4, 1), seed=0)
    pm10 = daily(march["time"], march["pm10"], np.mean)
    pm25 = daily(march["time"], march["pm25"], np.mean)
    episodes = [day for day, value in pm10.items() if value > 50]  # the EU daily limit value
    assert len(episodes) >= 3
    # road dust is coarse: PM10 far above PM2.5 on those days
    assert all(pm10[day] / pm25[day] > 3 for day in episodes)
    july = readings(spec, utc(2025, 7, 1), utc(2025, 8, 1), seed=0)
    assert max(daily(july["time"], july["pm10"], np.mean).values()) < 30


def test_sub_arctic_temperatures_and_a_spring_ozone_maximum(narvik: Catalogue) -> None:
    spec = narvik.device("aq-torget")
    january = readings(spec, utc(2025, 1, 1), utc(2025, 2, 1), seed=0)
    july = readings(spec, utc(2025, 7, 1), utc(2025, 8, 1), seed=0)
    april = readings(spec, utc(2025, 4, 1), utc(2025, 5, 1), seed=0)
    assert -8 < january["temperature"].mean() < 0
    assert 10 < july["temperature"].mean() < 17
    assert april["o3"].mean() > january["o3"].mean() + 10
    assert january["humidity"].min() >= 0
    assert january["humidity"].max() <= 100


def test_a_school_uses_more_energy_on_weekdays_than_on_sunday(
    week: dict, narvik: Catalogue
) -> None:
    schools = [d.id for d in narvik.of_kind("energy") if d.simulation["building_type"] == "school"]
    assert len(schools) >= 6
    for school in schools:
        series = week[school]
        _hours, weekdays = local(series["time"])
        used = daily(series["time"], series["energy"], lambda kwh: kwh[-1] - kwh[0])
        days = sorted(used)[:-1]  # the last day of the window is cut short
        weekday_kwh = [used[day] for day in days if day.weekday() < 5]
        sunday_kwh = [used[day] for day in days if day.weekday() == 6]
        assert min(weekday_kwh) > 1.3 * max(sunday_kwh), school
        power = series["power"]
        assert power[weekdays < 5].mean() > 1.4 * power[weekdays == 6].mean()


def test_a_care_home_runs_around_the_clock(week: dict) -> None:
    series = week["em-furumoen"]
    hours, _weekdays = local(series["time"])
    night = series["power"][(hours >= 1) & (hours < 5)].mean()
    day = series["power"][(hours >= 9) & (hours < 15)].mean()
    assert 0.6 * day < night < day


def test_the_register_integrates_power_and_only_falls_when_the_meter_resets(
    week: dict, narvik: Catalogue
) -> None:
    for spec in narvik.of_kind("energy"):
        series = week[spec.id]
        register, power, times = series["energy"], series["power"], series["time"]
        steps = np.diff(register)
        resets = np.flatnonzero(steps < 0)
        # a reset takes the register back to about zero: one interval's worth at most
        assert all(register[i + 1] < power.max() * spec.interval_s / 3.6e6 + 0.01 for i in resets)
        if spec.fault == "meter_reset":
            assert len(resets) >= 1  # every few days
        else:
            assert len(resets) <= 1, spec.id
        # between resets, the register grows by what the power says was used
        good = steps >= 0
        from_power = (power[:-1] * np.diff(times) / 3.6e6)[good].sum()
        assert steps[good].sum() == pytest.approx(from_power, rel=0.03), spec.id


def test_traffic_has_commuter_peaks_heavy_vehicles_on_the_e6_and_slower_town_streets(
    week: dict, narvik: Catalogue
) -> None:
    share = {}
    for spec in narvik.of_kind("traffic"):
        series = week[spec.id]
        hours, weekdays = local(series["time"] + 450)  # the middle of each period
        vehicles = series["vehicle_count"]
        peak = (weekdays < 5) & (((hours >= 7) & (hours < 8)) | ((hours >= 15) & (hours < 17)))
        night = (hours >= 1) & (hours < 4)
        assert vehicles[peak].mean() > 8 * vehicles[night].mean(), spec.id
        days = 7 if spec.fault != "dropout" else 7 * len(vehicles) / (7 * 96)
        aadt = spec.simulation["aadt"]
        assert 0.75 * aadt < vehicles.sum() / days < 1.25 * aadt, spec.id
        share[spec.id] = series["heavy_vehicle_count"].sum() / vehicles.sum()
        speed = series["speed"]
        limit = spec.simulation["speed_limit_kmh"]
        if aadt >= 9000 or spec.simulation["road_class"] == "town_street":
            # busy roads and town streets fill up at the peaks
            assert np.nanmean(speed[night]) > np.nanmean(speed[peak]) + 2, spec.id
        assert 0.5 * limit < np.nanmean(speed) < 1.15 * limit
    assert 0.09 < share["tc-e6-ornes"] < 0.16
    assert share["tc-kongens-gate"] < 0.07


# -------------------------------------------------------------------------- faults


def test_a_spiking_sensor_has_values_far_above_the_others(week: dict) -> None:
    spiky = week["aq-framneslia"]["pm25"]
    healthy = np.concatenate([week[d]["pm25"] for d in ("aq-torget", "aq-frydenlund")])
    assert (spiky > 5 * np.percentile(healthy, 99.9)).sum() >= 10
    assert (spiky > 150).sum() >= 10
    assert (healthy > 150).sum() == 0
    assert (week["aq-framneslia"]["temperature"] == 85.0).sum() >= 5


def longest_constant_run(series: dict[str, np.ndarray], metrics: tuple[str, ...]) -> int:
    rows = np.column_stack([series[m] for m in metrics])
    same = np.all(rows[1:] == rows[:-1], axis=1)
    longest = current = 0
    for flag in same.tolist():
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest + 1


def test_a_flat_lining_sensor_repeats_one_reading_for_hours(week: dict, narvik: Catalogue) -> None:
    metrics = narvik.device("aq-oscarsborg").metrics
    assert longest_constant_run(week["aq-oscarsborg"], metrics) >= 3 * 60  # minutes
    assert longest_constant_run(week["aq-sentrum"], metrics) <= 3


def test_a_dropping_out_counter_leaves_gaps(week: dict) -> None:
    gaps = np.diff(week["tc-dronningens-gate"]["time"])
    assert (gaps >= 3600).sum() >= 3
    assert set(np.diff(week["tc-kongens-gate"]["time"]).tolist()) == {900.0}


def test_a_skewed_clock_stamps_readings_off_the_time_they_are_sent(week: dict) -> None:
    skewed = week["aq-bjerkvik"]
    assert set((skewed["time"] - skewed["sent"]).tolist()) == {-5400.0}
    honest = week["aq-sentrum"]
    assert set((honest["time"] - honest["sent"]).tolist()) == {0.0}
    counter = week["tc-e6-ornes"]  # a counter stamps its period's start, sends at its end
    assert set((counter["sent"] - counter["time"]).tolist()) == {900.0}


# ----------------------------------------------------------------------- simulator


def test_a_device_the_model_cannot_simulate_is_refused_up_front(narvik: Catalogue) -> None:
    spec = narvik.device("aq-sentrum")
    odd = DeviceSpec(
        id="aq-odd",
        site=spec.site,
        kind="air_quality",
        metrics=("pm25", "radon"),
        interval_s=60,
        payload="senml",
    )
    with pytest.raises(SimulationError, match="cannot measure radon"):
        readings(odd, *WEEK, seed=0)
    with pytest.raises(SimulationError, match="cannot measure radon"):
        Simulator([odd])
    with pytest.raises(SimulationError, match="no secret for device"):
        Simulator(narvik.devices, credentials={"aq-sentrum": "s3cret"})


def test_stop_ends_a_live_run_promptly(services: Services, narvik: Catalogue) -> None:
    """A live run replays the last ten minutes fast, then waits in real time; a stop
    (as from a signal handler) ends it within a fraction of a second."""
    devices = [narvik.device("aq-sentrum"), narvik.device("aq-torget")]
    with Simulator(devices, port=services.mqtt_port, prefix=unique_prefix(), seed=0) as sim:
        timer = threading.Timer(1.5, sim.stop)
        timer.start()
        began = time.monotonic()
        report = sim.run(speed=600, start=time.time() - 600)
        took = time.monotonic() - began
        timer.join()
    assert report.stopped
    assert 1.4 < took < 4.0
    assert report.per_device.keys() == {"aq-sentrum", "aq-torget"}
    assert 15 <= report.messages <= 24  # ten minutes of two devices at one a minute


def test_a_live_run_continues_where_the_backfill_ended(
    services: Services, narvik: Catalogue
) -> None:
    """A backfill up to two minutes ago, then a live run: the two minutes in between go
    out at once, every message exactly once, no gap."""
    prefix = unique_prefix()
    devices = [narvik.device("aq-sentrum"), narvik.device("em-radhus")]
    collector = Collector(services.mqtt_port, f"{prefix}/+/telemetry")
    try:
        with Simulator(devices, port=services.mqtt_port, prefix=prefix, seed=0) as sim:
            handover = time.time() - 120
            backfilled = sim.backfill(600, end=handover)
            live = sim.run(until=time.time())
        assert live.start == handover
        expected = list(simulated_messages(devices, handover - 600, live.end, 0, prefix))
        received = [collector.get() for _ in expected]
        assert backfilled.messages + live.messages == len(expected)
        assert sorted((m.topic, m.payload) for m in received) == sorted(
            (topic, payload) for _sent, topic, payload in expected
        )
        with pytest.raises(queue.Empty):
            collector.get(timeout=0.3)
    finally:
        collector.close()


# -------------------------------------------------------------------- end to end


def test_a_backfill_through_the_broker_lands_every_reading_and_nothing_in_quarantine(
    services: Services, conn: psycopg.Connection, narvik: Catalogue
) -> None:
    """Four healthy devices, one of each kind and payload form, backfill six hours; the
    ingest worker stores every reading once, in canonical units, flagged good."""
    prefix = unique_prefix()
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    ids = ["aq-sentrum", "aq-ornes", "em-narvik-vgs", "tc-e6-ornes"]
    import_catalogue(conn, narvik)  # as `smartby devices import` does
    specs = [narvik.device(device_id) for device_id in ids]
    end = float(int(time.time()))
    expected = {spec.id: readings(spec, end - 6 * 3600 - 900, end, seed=5) for spec in specs}
    for spec in specs:
        series = expected[spec.id]
        wanted = (series["sent"] >= end - 6 * 3600) & (series["sent"] < end)
        expected[spec.id] = {key: values[wanted] for key, values in series.items()}
    total_readings = sum(
        int((~np.isnan(series[metric])).sum())
        for spec in specs
        for metric, series in [(m, expected[spec.id]) for m in spec.metrics]
    )
    progress: list[tuple[int, int]] = []

    with running_worker(settings):
        with Simulator(specs, port=services.mqtt_port, prefix=prefix, seed=5) as sim:
            report = sim.backfill(6 * 3600, end=end, progress=lambda *p: progress.append(p))
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM readings") >= total_readings,
            what=f"{total_readings} readings",
        )
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM devices WHERE online = false") == len(ids),
            what="every device's retained 'offline' at close",
        )

    assert report.messages == sum(len(expected[spec.id]["time"]) for spec in specs)
    assert report.per_device == {spec.id: len(expected[spec.id]["time"]) for spec in specs}
    assert not report.stopped
    assert progress[0] == (0, report.messages)
    assert progress[-1] == (report.messages,) * 2
    assert count(conn, "SELECT count(*) FROM quarantine") == 0
    assert count(conn, "SELECT count(*) FROM readings") == total_readings
    assert count(conn, "SELECT count(*) FROM readings WHERE quality <> 1") == 0
    for spec in specs:
        for metric in spec.metrics:
            rows = conn.execute(
                """SELECT extract(epoch FROM r.time)::float8, r.value FROM readings r
                   JOIN series s ON s.id = r.series_id
                   WHERE s.device_id = %s AND s.metric = %s ORDER BY r.time""",
                (spec.id, metric),
            ).fetchall()
            series = expected[spec.id]
            present = ~np.isnan(series[metric])
            assert [t for t, _ in rows] == series["time"][present].tolist(), (spec.id, metric)
            np.testing.assert_allclose(
                [v for _, v in rows], series[metric][present], rtol=1e-9, err_msg=metric
            )
