"""A running ingest worker publishes a public warning on MQTT: it issues the CAP alert
in its indicator thread and publishes it retained at QoS 1 on
``<prefix>/public/warnings/<site>``, so a subscriber that arrives later still gets it."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from lxml import etree

from core.settings import Settings
from ingest.warnings import topic
from ingest.worker import IngestWorker
from tests.fixtures.ingest import unique_prefix, wait_for
from tests.fixtures.mqtt import Collector
from tests.fixtures.services import Services
from tests.fixtures.warnings import SITE, load_episode
from web.warnings import CatalogueTexts


def test_a_worker_publishes_the_alert_retained(
    services: Services, db_url: str, conn: psycopg.Connection
) -> None:
    settings: Settings = services.settings(
        mqtt_topic_prefix=unique_prefix(), indicators_interval_s=0.2, ingest_metrics_port=0
    )
    # poor for the last three whole hours: at any minute of now, some are settled
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    load_episode(settings, start, [150.0, 150.0, 150.0])
    worker = IngestWorker(
        settings,
        db_url,
        client_id=f"test-ingest-{uuid.uuid4().hex[:8]}",
        warning_texts=CatalogueTexts(settings.city),
    )
    worker.start()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert worker.wait_connected(10)
        published = "SELECT count(*) FROM warning_messages WHERE published_at IS NOT NULL"
        wait_for(lambda: conn.execute(published).fetchone() == (1,), what="the alert published")
    finally:
        worker.stop()
        thread.join(30)
    # a subscriber that comes afterwards gets the retained alert
    where = topic(settings.mqtt_topic_prefix, SITE)
    later = Collector(services.mqtt_port, f"{settings.mqtt_topic_prefix}/public/warnings/#")
    try:
        message = later.get(10)
    finally:
        later.close()
    assert message.topic == where
    assert message.retain
    stored = conn.execute("SELECT cap FROM warning_messages").fetchone()
    assert stored is not None
    assert message.payload == stored[0].encode()
    alert = etree.fromstring(message.payload)
    assert alert.findtext("{urn:oasis:names:tc:emergency:cap:1.2}msgType") == "Alert"
