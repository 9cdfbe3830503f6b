"""`smartby simulate --backfill 7d` sends a week of Narvik through the real broker and
ingest, and the week's daily and weekly rhythms show in plain SQL aggregates."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from devices.catalogue import load_catalogue, narvik_catalogue_path
from devices.provision import import_catalogue
from tests.fixtures.ingest import count, running_worker, unique_prefix, wait_for
from tests.fixtures.services import Services

# A school week well inside the ingest's 400-day window (winter break is week 9).
WEEK_END = "2026-03-09T00:00:00+01:00"
DEVICES = ("aq-sentrum", "em-narvik-vgs", "tc-e6-ornes")


@pytest.mark.slow
def test_a_backfilled_week_shows_rush_hours_and_school_days(
    services: Services, conn: psycopg.Connection
) -> None:
    import_catalogue(conn, load_catalogue(narvik_catalogue_path()))
    prefix = unique_prefix()
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env.update(
        {
            "SMARTBY_MQTT_PORT": str(services.mqtt_port),
            "SMARTBY_MQTT_TOPIC_PREFIX": prefix,
            "SMARTBY_DATA_DIR": str(services.root / "simulate-data"),
        }
    )
    with running_worker(settings):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "smartby",
                "simulate",
                "--backfill",
                "7d",
                "--end",
                WEEK_END,
                *[arg for device in DEVICES for arg in ("--device", device)],
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "backfill: " in result.stderr  # the progress bar and the summary go to stderr
        wait_for(
            lambda: count(conn, "SELECT count(DISTINCT series_id) FROM readings") >= 10,
            timeout=60,
            what="series of all three devices",
        )
        wait_for(
            lambda: (
                count(
                    conn,
                    "SELECT count(*) FROM readings WHERE time >= %s::timestamptz"
                    " - interval '15 minutes'",
                    WEEK_END,
                )
                > 0
            ),
            timeout=120,
            what="the end of the week stored",
        )
    assert count(conn, "SELECT count(*) FROM quarantine") == 0

    def mean(device: str, metric: str, where: str) -> float:
        row = conn.execute(
            "SELECT avg(r.value) FROM readings r JOIN series s ON s.id = r.series_id"
            " WHERE s.device_id = %s AND s.metric = %s AND " + where,
            (device, metric),
        ).fetchone()
        assert row is not None
        assert row[0] is not None, f"no {metric} from {device} where {where}"
        return float(row[0])

    local_hour = "extract(hour FROM r.time AT TIME ZONE 'Europe/Oslo')"
    local_dow = "extract(isodow FROM r.time AT TIME ZONE 'Europe/Oslo')"
    rush = mean("aq-sentrum", "no2", f"{local_dow} <= 5 AND {local_hour} IN (7, 8, 15, 16)")
    night = mean("aq-sentrum", "no2", f"{local_hour} BETWEEN 0 AND 4")
    assert rush > 1.5 * night, (rush, night)

    weekday = mean("em-narvik-vgs", "power", f"{local_dow} <= 5")
    sunday = mean("em-narvik-vgs", "power", f"{local_dow} = 7")
    assert weekday > 1.2 * sunday, (weekday, sunday)

    peak = mean("tc-e6-ornes", "vehicle_count", f"{local_dow} <= 5 AND {local_hour} IN (7, 15, 16)")
    small_hours = mean("tc-e6-ornes", "vehicle_count", f"{local_hour} BETWEEN 1 AND 4")
    assert peak > 3 * small_hours, (peak, small_hours)
