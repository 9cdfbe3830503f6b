"""History import (issue 16): older readings from CSV files go through ingest's own
pipeline.  Two fixtures in the shape of the files a Norwegian city has: a NILU-style
hourly air-quality series (semicolons, decimal commas, Norwegian headers with units,
local wall times across the autumn clock change, empty and "-" cells) and a
trafikkdata.no-style hourly traffic export (volumes per length class, per lane and in
total, ISO times with offsets)."""

from __future__ import annotations

import csv
import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from core.errors import SmartbyError
from core.settings import Settings
from ingest.history import ColumnMap, TimeReader, import_csv, plan_columns
from tests.fixtures.ingest import register

DATA = Path(__file__).parent / "data"
NILU = DATA / "nilu_narvik_sentrum_hourly.csv"
VEGVESEN = DATA / "vegvesen_ornes_hourly.csv"
NILU_MAPS = [
    ColumnMap.parse("Narvik Sentrum PM10 (µg/m³)=pm10"),
    ColumnMap.parse("Narvik Sentrum PM2.5 (µg/m³)=pm25"),
    ColumnMap.parse("Narvik Sentrum NO2 (µg/m³)=no2"),
]
TRAFFIC_MAPS = [
    ColumnMap.parse("Trafikkmengde=vehicle_count"),
    ColumnMap.parse(">= 5,6m=heavy_vehicle_count"),
]
OSLO = ZoneInfo("Europe/Oslo")


def nilu_rows() -> list[dict[str, str]]:
    with NILU.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def stored(conn: psycopg.Connection, device: str, metric: str) -> dict[datetime, float]:
    rows = conn.execute(
        "SELECT r.time, r.value FROM readings r JOIN series s ON s.id = r.series_id"
        " WHERE s.device_id = %s AND s.metric = %s ORDER BY r.time",
        (device, metric),
    ).fetchall()
    return {t: v for t, v in rows}


def test_a_nilu_hourly_series_lands_as_readings_rollups_and_aqi(
    settings: Settings, db_url: str, conn: psycopg.Connection
) -> None:
    register(conn, "nilu-sentrum", "air_quality")
    shares: list[float] = []
    report = import_csv(
        settings, db_url, NILU, "nilu-sentrum", NILU_MAPS, progress=lambda s, _r: shares.append(s)
    )
    rows = nilu_rows()
    cells = 3 * len(rows)
    assert report.rows == len(rows) == 72
    assert report.empty == 2  # one empty PM10 cell, one "-" NO2 cell
    assert report.readings == report.stored == cells - 2
    assert (report.duplicates, report.quarantined) == (0, 0)
    assert shares
    assert shares[-1] == pytest.approx(1.0, abs=0.05)
    # the values as written (decimal comma), at the local hour's start in UTC: the
    # repeated 02:00 of 27 October is two hours, 00:00 and 01:00 UTC
    pm10 = stored(conn, "nilu-sentrum", "pm10")
    first = datetime(2024, 10, 26, tzinfo=OSLO).astimezone(UTC)
    assert pm10[first] == float(rows[0]["Narvik Sentrum PM10 (µg/m³)"].replace(",", "."))
    no2 = stored(conn, "nilu-sentrum", "no2")
    assert datetime(2024, 10, 27, 0, tzinfo=UTC) in no2
    assert datetime(2024, 10, 27, 1, tzinfo=UTC) in no2
    # hourly, but for the hour whose NO2 cell was "-"
    gaps = [b - a for a, b in itertools.pairwise(sorted(no2))]
    assert gaps.count(timedelta(hours=2)) == 1
    assert set(gaps) == {timedelta(hours=1), timedelta(hours=2)}
    assert report.first == first
    # QC ran (every reading has a flag), rollups hold each hour, the AQI was computed
    flags = conn.execute("SELECT DISTINCT quality FROM readings").fetchall()
    assert {f for (f,) in flags} <= {1, 2, 3, 4}
    hours = conn.execute(
        "SELECT count(*) FROM rollups r JOIN series s ON s.id = r.series_id"
        " WHERE s.device_id = 'nilu-sentrum' AND s.metric = 'pm25' AND r.resolution = '1h'"
    ).fetchone()
    assert hours == (72,)
    aqi = conn.execute(
        "SELECT count(*), min(hour), max(hour) FROM aqi_hourly WHERE site_id = 'site-nilu-sentrum'"
    ).fetchone()
    assert aqi is not None
    assert aqi[0] >= 70
    assert report.days >= 3


def test_a_rerun_is_harmless_and_a_changed_value_is_quarantined(
    settings: Settings, db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    register(conn, "nilu-sentrum", "air_quality")
    first = import_csv(settings, db_url, NILU, "nilu-sentrum", NILU_MAPS)
    again = import_csv(settings, db_url, NILU, "nilu-sentrum", NILU_MAPS)
    assert again.stored == 0
    assert again.duplicates == first.stored
    assert again.quarantined == 0
    # the same file with one value changed: that reading conflicts, the first stays
    lines = NILU.read_text(encoding="utf-8-sig").splitlines()
    cells = lines[5].split(";")
    kept = float(cells[2].replace(",", "."))
    cells[2] = "999,9"
    lines[5] = ";".join(cells)
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    third = import_csv(settings, db_url, changed, "nilu-sentrum", NILU_MAPS)
    assert (third.stored, third.quarantined) == (0, 1)
    assert third.reasons == {"conflicting_value": 1}
    assert third.duplicates == first.stored - 1
    moment = datetime.strptime(cells[0], "%d.%m.%Y %H:%M").replace(tzinfo=OSLO).astimezone(UTC)
    assert stored(conn, "nilu-sentrum", "pm10")[moment] == kept
    detail = conn.execute(
        "SELECT detail FROM quarantine WHERE reason = 'conflicting_value'"
    ).fetchone()
    assert detail is not None
    assert "999.9" in detail[0]


def test_a_road_authority_traffic_export_lands_as_hourly_traffic(
    settings: Settings, db_url: str, conn: psycopg.Connection
) -> None:
    register(conn, "tc-ornes", "traffic")
    report = import_csv(settings, db_url, VEGVESEN, "tc-ornes", TRAFFIC_MAPS, where=["Felt=Totalt"])
    with VEGVESEN.open(encoding="utf-8", newline="") as handle:
        totals = [r for r in csv.DictReader(handle, delimiter=";") if r["Felt"] == "Totalt"]
    assert report.rows == 3 * len(totals) == 144
    assert report.skipped == 2 * len(totals)  # the lanes, left out by --where
    assert report.stored == 2 * len(totals)
    volumes = stored(conn, "tc-ornes", "vehicle_count")
    for row in totals:
        moment = datetime.fromisoformat(row["Fra"]).astimezone(UTC)
        assert volumes[moment] == float(row["Trafikkmengde"])
    # the hourly traffic indicator holds the same volumes and heavy vehicles
    indicator = {
        hour: (volume, heavy)
        for hour, volume, heavy in conn.execute(
            "SELECT hour, volume, heavy_volume FROM traffic_hourly WHERE device_id = 'tc-ornes'"
        )
    }
    assert len(indicator) == len(totals)
    for row in totals:
        hour = datetime.fromisoformat(row["Fra"]).astimezone(UTC)
        assert indicator[hour] == (float(row["Trafikkmengde"]), float(row[">= 5,6m"]))


def test_units_are_converted_and_unreadable_rows_quarantined(
    settings: Settings, db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    """NO2 in ppb becomes µg/m³ (EU reference conditions, as live ingest does); a row
    with no time or a cell that is no number is kept in quarantine with its line."""
    register(conn, "old-station", "air_quality")
    source = tmp_path / "old.csv"
    source.write_text(
        "Tid,NO2 (ppb),Temperatur (°C)\n"
        "2024-01-01T00:00:00Z,10,-5.5\n"
        "not a time,12,-5.0\n"
        "2024-01-01T01:00:00Z,twelve,-4.5\n"
        '2024-01-01T02:00:00Z,"1 234,5",-4.0\n',
        encoding="utf-8",
    )
    maps = [ColumnMap.parse("NO2 (ppb)=no2"), ColumnMap.parse("Temperatur (°C)=temperature")]
    report = import_csv(settings, db_url, source, "old-station", maps)
    assert report.quarantined == 2
    assert report.reasons == {"bad_csv_row": 2}
    no2 = stored(conn, "old-station", "no2")
    assert no2[datetime(2024, 1, 1, tzinfo=UTC)] == pytest.approx(10 * 1.912, rel=1e-3)
    assert no2[datetime(2024, 1, 1, 2, tzinfo=UTC)] == pytest.approx(1234.5 * 1.912, rel=1e-3)
    temperature = stored(conn, "old-station", "temperature")
    assert temperature[datetime(2024, 1, 1, tzinfo=UTC)] == -5.5
    lines = conn.execute(
        "SELECT topic, detail FROM quarantine WHERE reason = 'bad_csv_row' ORDER BY topic"
    ).fetchall()
    assert [t for t, _ in lines] == ["import:old.csv:3", "import:old.csv:4"]
    assert "not a time" in lines[0][1]
    assert "'twelve' in the no2 column is not a number" in lines[1][1]


def test_mistakes_in_the_command_are_one_clear_error(
    settings: Settings, db_url: str, conn: psycopg.Connection
) -> None:
    register(conn, "nilu-sentrum", "air_quality")
    with pytest.raises(SmartbyError, match="not registered"):
        import_csv(settings, db_url, NILU, "nobody", NILU_MAPS)
    with pytest.raises(SmartbyError, match="no column 'PM1'"):
        import_csv(settings, db_url, NILU, "nilu-sentrum", [ColumnMap.parse("PM1=pm25")])
    with pytest.raises(SmartbyError, match="no metric 'benzene'"):
        import_csv(settings, db_url, NILU, "nilu-sentrum", [ColumnMap.parse("X=benzene")])
    with pytest.raises(SmartbyError, match="COLUMN=METRIC"):
        ColumnMap.parse("PM10")
    with pytest.raises(SmartbyError, match="cannot convert"):
        plan_columns(["Tid", "SO2 (µg/Nm³)"], [ColumnMap.parse("SO2 (µg/Nm³)=so2")], None, [])
    with pytest.raises(SmartbyError, match="no time column"):
        plan_columns(["When", "PM10"], [ColumnMap.parse("PM10=pm10")], None, [])


def test_local_times_through_the_autumn_repeat_and_fixed_offsets() -> None:
    read = TimeReader(OSLO)
    times = [read(t) for t in ("27.10.2024 01:00", "27.10.2024 02:00", "27.10.2024 02:00")]
    assert [t.hour for t in times] == [23, 0, 1]  # 01:00 CEST, 02:00 CEST, 02:00 CET
    assert read("2024-11-04T00:00+01:00") == datetime(2024, 11, 3, 23, tzinfo=UTC)
    assert read("01.11.2024") == datetime(2024, 10, 31, 23, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a time"):
        read("2024/11/04")


def test_the_command_shows_progress_and_a_summary(db_url: str, conn: psycopg.Connection) -> None:
    register(conn, "tc-ornes", "traffic")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env["SMARTBY_DATABASE_URL"] = db_url
    args = [
        sys.executable, "-m", "smartby", "import", "csv", str(VEGVESEN), "--device", "tc-ornes",
        "--map", "Trafikkmengde=vehicle_count", "--map", ">= 5,6m=heavy_vehicle_count",
        "--where", "Felt=Totalt",
    ]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "import [" in done.stderr
    assert "100%" in done.stderr
    assert "readings: 96 stored, 0 duplicate, 0 quarantined" in done.stdout
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "readings: 0 stored, 96 duplicate, 0 quarantined" in again.stdout
    wrong = subprocess.run(
        [*args[:7], "nobody", *args[8:]], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines() == [
        "smartby: error: device 'nobody' is not registered (smartby devices add, or import the"
        " catalogue that has it)"
    ]
