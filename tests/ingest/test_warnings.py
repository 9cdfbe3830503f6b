"""Public warnings end to end in the database: PM10 readings of a simulated episode go
through the rollups and the indicator job into aqi_hourly, and the warning job turns
them into exactly one CAP alert and one all-clear, valid against the OASIS schema,
whatever number of passes and workers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from lxml import etree

from core.settings import Settings
from ingest.warnings import WarningJob, topic
from tests.fixtures import warnings as episode
from web.warnings import CatalogueTexts

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
#: the hour the episode starts (a winter morning of road dust), and its hourly PM10
START = datetime(2026, 1, 12, 6, tzinfo=UTC)
EPISODE = [30.0, 130.0, 160.0, 125.0, 60.0, 20.0]  # fair, poor, poor, poor, moderate, fair


@pytest.fixture(scope="module")
def cap_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "CAP-v1.2.xsd")))


def load_episode(conn: psycopg.Connection, settings: Settings, means: list[float]) -> None:
    episode.load_episode(settings, START, means)


def hours_later(hours: float) -> datetime:
    """When the index of the hour ``hours`` after START has been settled for a minute."""
    return START + timedelta(hours=hours, minutes=6)


def messages(conn: psycopg.Connection) -> list[tuple[str, str, str, int]]:
    return conn.execute(
        "SELECT event, msg_type, identifier, level FROM warning_messages ORDER BY id"
    ).fetchall()


def test_a_simulated_episode_is_one_alert_and_one_all_clear_hour_by_hour(
    conn: psycopg.Connection, settings: Settings, cap_schema: etree.XMLSchema
) -> None:
    load_episode(conn, settings, EPISODE)
    levels = conn.execute("SELECT level FROM aqi_hourly ORDER BY hour").fetchall()
    assert [lv for (lv,) in levels] == [2, 4, 4, 4, 3, 2]
    job = WarningJob(settings, CatalogueTexts(settings.city))
    with psycopg.connect(settings.database_url.get_secret_value()) as c:  # type: ignore[union-attr]
        for hour in range(len(EPISODE) + 3):  # every pass the worker would make, twice
            job.run(c, now=hours_later(hour))
            job.run(c, now=hours_later(hour))
    found = messages(conn)
    assert [(event, msg_type) for event, msg_type, _, _ in found] == [
        ("alert", "Alert"),
        ("clear", "Cancel"),
    ]
    alert, clear = (
        etree.fromstring(cap.encode())
        for (cap,) in conn.execute("SELECT cap FROM warning_messages ORDER BY id")
    )
    # the all-clear references the alert: sender,identifier,sent (CAP 1.2 §3.2.1)
    sender = alert.findtext(f"{CAP}sender")
    assert clear.findtext(f"{CAP}references") == (
        f"{sender},{alert.findtext(f'{CAP}identifier')},{alert.findtext(f'{CAP}sent')}"
    )
    for document in (alert, clear):
        languages = [i.findtext(f"{CAP}language") for i in document.iter(f"{CAP}info")]
        assert languages == ["no", "en-GB"]
    assert conn.execute("SELECT onset, cleared_at FROM warning_episodes").fetchall() == [
        (START + timedelta(hours=1), START + timedelta(hours=4))
    ]


def test_every_issued_message_validates_against_the_cap_schema(
    conn: psycopg.Connection, settings: Settings, cap_schema: etree.XMLSchema
) -> None:
    """Alert, Update (the level worsens), all-clear and a withdrawal."""
    load_episode(conn, settings, [130.0, 200.0, 280.0, 30.0, 130.0])
    job = WarningJob(settings, CatalogueTexts(settings.city))
    with psycopg.connect(settings.database_url.get_secret_value()) as c:  # type: ignore[union-attr]
        for hour in range(1, 10):
            job.run(c, now=hours_later(hour))
    events = [event for event, _, _, _ in messages(conn)]
    assert events == ["alert", "update", "update", "clear", "alert", "withdraw"]
    for (cap,) in conn.execute("SELECT cap FROM warning_messages ORDER BY id"):
        document = etree.fromstring(cap.encode())
        assert cap_schema.validate(document), cap_schema.error_log.last_error
    update = etree.fromstring(
        conn.execute("SELECT cap FROM warning_messages WHERE event = 'update' ORDER BY id LIMIT 1")
        .fetchone()[0]
        .encode()
    )
    english = update.xpath("//c:info[c:language='en-GB']", namespaces={"c": CAP.strip("{}")})[0]
    ns = {"c": CAP.strip("{}")}
    assert english.findtext("c:headline", namespaces=ns).startswith("Very poor air quality at ")
    assert english.findtext("c:severity", namespaces=ns) == "Severe"
    # the EEA's advice for Very poor, from the website's own table
    assert "Reduce physical activities, particularly outdoors" in english.findtext(
        "c:instruction", namespaces=ns
    )
    norwegian = update.xpath("//c:info[c:language='no']", namespaces=ns)[0]
    assert norwegian.findtext("c:headline", namespaces=ns).startswith("Svært dårlig luftkvalitet")


def test_two_workers_issue_each_message_once(conn: psycopg.Connection, settings: Settings) -> None:
    load_episode(conn, settings, EPISODE)
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    jobs = [WarningJob(settings, CatalogueTexts(settings.city)) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(job: WarningJob) -> None:
        try:
            with psycopg.connect(url) as c:
                for hour in range(len(EPISODE) + 2):
                    barrier.wait(10)
                    job.run(c, now=hours_later(hour))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert [event for event, _, _, _ in messages(conn)] == ["alert", "clear"]


def test_messages_are_published_once_in_order_and_retried_after_a_refusal(
    conn: psycopg.Connection, settings: Settings
) -> None:
    load_episode(conn, settings, EPISODE)
    job = WarningJob(settings, CatalogueTexts(settings.city))
    sent: list[tuple[str, bytes]] = []
    refuse = [True]

    def publish(where: str, payload: bytes) -> bool:
        if refuse[0]:
            return False
        sent.append((where, payload))
        return True

    with psycopg.connect(settings.database_url.get_secret_value()) as c:  # type: ignore[union-attr]
        for hour in range(len(EPISODE) + 1):
            job.run(c, now=hours_later(hour))
        assert job.publish(c, publish) == 0  # the broker refused: nothing marked
        refuse[0] = False
        assert job.publish(c, publish) == 2
        assert job.publish(c, publish) == 0
    where = topic(settings.mqtt_topic_prefix, "site-aq-dust")
    stored = [
        cap.encode() for (cap,) in conn.execute("SELECT cap FROM warning_messages ORDER BY id")
    ]
    assert sent == [(where, stored[0]), (where, stored[1])]
    unpublished = "SELECT count(*) FROM warning_messages WHERE published_at IS NULL"
    assert conn.execute(unpublished).fetchone() == (0,)
