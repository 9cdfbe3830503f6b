"""Two days of three simulated stations go through the real broker and ingest: the
faulty ones (a spiking cell, a hung sensor) are flagged, the healthy one hardly at all."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from devices.catalogue import load_catalogue, narvik_catalogue_path
from devices.provision import import_catalogue
from devices.simulation import Simulator
from tests.fixtures.ingest import count, running_worker, unique_prefix, wait_for
from tests.fixtures.services import Services

END = datetime.fromisoformat("2026-03-09T00:00:00+01:00").timestamp()
STATIONS = ("aq-framneslia", "aq-oscarsborg", "aq-torget")  # spike, flat line, healthy


@pytest.mark.slow
def test_faulty_simulated_devices_are_flagged_and_healthy_ones_mostly_not(
    services: Services, conn: psycopg.Connection
) -> None:
    catalogue = load_catalogue(narvik_catalogue_path())
    import_catalogue(conn, catalogue)
    prefix = unique_prefix()
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    specs = [catalogue.device(d) for d in STATIONS]
    with running_worker(settings):
        with Simulator(specs, port=services.mqtt_port, prefix=prefix, seed=0) as simulator:
            simulator.backfill(2 * 86400, end=END)
        wait_for(
            lambda: (
                count(
                    conn, "SELECT count(*) FROM readings WHERE time >= to_timestamp(%s)", END - 180
                )
                >= len(STATIONS)
            ),
            timeout=60,
            what="the last minutes of all stations stored",
        )

    def flagged_share(device: str, flags: tuple[int, ...]) -> float:
        row = conn.execute(
            "SELECT avg((r.quality = ANY(%s))::int) FROM readings r"
            " JOIN series s ON s.id = r.series_id WHERE s.device_id = %s AND s.metric = 'pm25'",
            (list(flags), device),
        ).fetchone()
        assert row is not None
        assert row[0] is not None, f"no pm25 from {device}"
        return float(row[0])

    spiking = conn.execute(
        "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series_id"
        " WHERE s.device_id = 'aq-framneslia' AND s.metric = 'pm25' AND r.value > 150"
        " AND r.quality IN (3, 4)"
    ).fetchone()[0]
    assert spiking > 0, "the spikes of aq-framneslia were not flagged"
    assert flagged_share("aq-oscarsborg", (3, 4)) > 0.05, "the hung sensor was not flagged"
    assert flagged_share("aq-torget", (3, 4)) < 0.01, "the healthy station was flagged"
