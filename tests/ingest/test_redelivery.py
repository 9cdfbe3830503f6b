"""Redelivery changes nothing: a message without a time that the broker sends again
(the worker committed it, but its PUBACK never reached the broker) is absorbed like
any other, retained telemetry is not ingested again at each subscribe, and a second
value for a stored (series, time) goes to quarantine instead of vanishing."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.settings import Settings
from ingest.pipeline import BatchPreparer, Limits, Message, PreparedBatch
from ingest.redelivery import (
    MAX_RECEIVE_MAXIMUM,
    REUSE_WINDOW,
    RecordedDelivery,
    Remembered,
    Session,
    TimeAnchors,
    digest,
    latest_deliveries,
)
from ingest.worker import IngestWorker
from ingest.writer import BatchWriter, DatabaseRegistry
from tests.fixtures.ingest import (
    count,
    register,
    running_worker,
    unique_prefix,
    wait_for,
    worker_process,
)
from tests.fixtures.mqtt import publish_one
from tests.fixtures.relay import Relay
from tests.fixtures.services import Services


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


def stored(conn: psycopg.Connection, device: str = "aq-1") -> list[tuple[str, float, float]]:
    return [
        (metric, float(t), float(value))
        for metric, t, value in conn.execute(
            """SELECT s.metric, extract(epoch FROM r.time), r.value
               FROM readings r JOIN series s ON s.id = r.series_id
               WHERE s.device_id = %s ORDER BY s.metric, r.time""",
            (device,),
        )
    ]


def quarantined(conn: psycopg.Connection) -> list[tuple[str, str, bytes]]:
    return [
        (reason, detail, bytes(payload))
        for reason, detail, payload in conn.execute(
            "SELECT reason, detail, payload FROM quarantine ORDER BY id"
        )
    ]


def metric(worker: IngestWorker, name: str, labels: dict[str, str] | None = None) -> float:
    return worker.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def commit_and_lose_the_puback(
    services: Services,
    conn: psycopg.Connection,
    prefix: str,
    client_id: str,
    payload: bytes,
    log: Path,
) -> list[tuple[str, float, float]]:
    """A worker process commits ``payload``, but what it sends the broker after the
    message arrived (its PUBACK) is swallowed by a relay; then it is killed with
    SIGKILL.  The broker keeps the message unacknowledged in the worker's session.
    Returns what was stored."""
    with Relay(services.mqtt_port) as relay:
        worker = worker_process(services, prefix, client_id, log, mqtt_port=relay.port)
        try:
            wait_for(lambda: "consuming from" in log.read_text(), what="worker subscribed")
            relay.swallow()
            publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", payload)
            wait_for(lambda: count(conn, "SELECT count(*) FROM readings") > 0, what="commit")
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
    return stored(conn)


TIMELESS = [
    pytest.param(b'{"pm25": 7.5, "no2": 21.0}', id="plain-object"),
    pytest.param(
        orjson.dumps(
            [{"bn": "urn:dev:aq-1:", "n": "pm25", "v": 7.5, "t": -10}, {"n": "no2", "v": 21}]
        ),
        id="senml-relative",
    ),
]


@pytest.mark.parametrize("payload", TIMELESS)
def test_a_time_less_message_redelivered_after_a_kill_9_is_stored_once(
    services: Services, conn: psycopg.Connection, prefix: str, tmp_path: Path, payload: bytes
) -> None:
    """The broker redelivers the committed message to the restarted worker (DUP=1, the
    same packet id, MQTT-4.4.0-1); it takes the time it got the first time, so the
    readings' key absorbs it."""
    register(conn, "aq-1")
    client_id = f"redeliver-{uuid.uuid4().hex[:6]}"
    first = commit_and_lose_the_puback(
        services, conn, prefix, client_id, payload, tmp_path / "worker.log"
    )
    assert len(first) == 2
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    with running_worker(settings, client_id) as worker:
        wait_for(
            lambda: metric(worker, "smartby_ingest_readings_duplicate_total") == 2,
            what="the redelivered readings absorbed",
        )
        assert metric(worker, "smartby_ingest_readings_written_total") == 0
    assert stored(conn) == first
    assert quarantined(conn) == []


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (
            f"UPDATE ingest_sessions SET committed = committed + {REUSE_WINDOW}",
            "32,768 messages committed since: the packet id may name another message",
        ),
        (
            "UPDATE ingest_deliveries SET digests = decode(repeat('00', length(digests)), 'hex')",
            "another topic or payload",
        ),
        ("DELETE FROM ingest_deliveries", "nothing remembered"),
    ],
)
def test_a_redelivery_that_cannot_be_matched_is_stored_as_a_new_message(
    services: Services,
    conn: psycopg.Connection,
    prefix: str,
    tmp_path: Path,
    tamper: str,
    why: str,
) -> None:
    """The remembered time is reused only for the same topic and payload, and only
    while the packet id cannot have come round again; otherwise the message is new."""
    register(conn, "aq-1")
    client_id = f"unmatched-{uuid.uuid4().hex[:6]}"
    payload = b'{"pm25": 7.5}'
    [(_, first_time, _)] = commit_and_lose_the_puback(
        services, conn, prefix, client_id, payload, tmp_path / "worker.log"
    )
    conn.execute(tamper)  # as if: {why}
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    with running_worker(settings, client_id):
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what=why)
    [(_, t1, v1), (_, t2, v2)] = stored(conn)
    assert (t1, v1, v2) == (first_time, 7.5, 7.5)
    assert t2 > t1


def test_a_redelivery_after_a_lost_connection_is_absorbed_in_the_same_batch(
    services: Services, conn: psycopg.Connection, prefix: str
) -> None:
    """The connection breaks before the broker has the PUBACK; paho reconnects and the
    broker resends the message (DUP=1) while the first copy waits in the same batch."""
    register(conn, "aq-1")
    with Relay(services.mqtt_port) as relay:
        settings = services.settings(
            mqtt_port=relay.port,
            mqtt_topic_prefix=prefix,
            ingest_metrics_port=0,
            ingest_batch_ms=5000,
        )
        with running_worker(settings) as worker:
            relay.swallow()
            before = relay.delivered
            publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", b'{"pm25": 4.25}')
            wait_for(lambda: relay.delivered > before, what="the first copy sent to the worker")
            relay.cut()
            wait_for(lambda: relay.connections == 2, what="paho reconnected")
            wait_for(
                lambda: (
                    count(conn, "SELECT count(*) FROM readings") == 1
                    and metric(worker, "smartby_ingest_readings_duplicate_total") == 1
                ),
                what="both copies written",
            )
            assert metric(worker, "smartby_ingest_batch_messages_count") == 1
    assert [(m, v) for m, _, v in stored(conn)] == [("pm25", 4.25)]


def test_the_same_time_less_payload_published_twice_is_two_readings(
    services: Services, conn: psycopg.Connection, prefix: str
) -> None:
    """Two publishes of the same bytes are two measurements (DUP=0, each its own id)."""
    register(conn, "aq-1")
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    with running_worker(settings):
        for _ in range(2):
            publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", b'{"pm25": 1}')
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="2 readings")


def wipe_session(port: int, client_id: str) -> None:
    """Connect as ``client_id`` with Clean Start and no session expiry: the broker
    discards the session (MQTT v5 §3.1.2.4, §3.1.2.11.2)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    wait_for(client.is_connected, what="wiping connection")
    client.disconnect()
    client.loop_stop()


def remembered_ids(conn: psycopg.Connection, client_id: str) -> list[int]:
    rows = conn.execute(
        "SELECT packet_ids FROM ingest_deliveries WHERE client_id = %s", (client_id,)
    )
    return sorted(int(i) for (ids,) in rows for i in np.frombuffer(bytes(ids), "<u2"))


def test_a_session_the_broker_starts_afresh_forgets_the_remembered_packet_ids(
    services: Services, conn: psycopg.Connection, prefix: str
) -> None:
    """After Session Present 0 the broker's packet ids start again at 1: what the worker
    remembered under the old session's ids must not match the new session's messages."""
    register(conn, "aq-1")
    client_id = f"fresh-{uuid.uuid4().hex[:6]}"
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    topic = f"{prefix}/aq-1/telemetry"
    with running_worker(settings, client_id):
        publish_one(services.mqtt_port, topic, b'{"pm25": 1}')
        publish_one(services.mqtt_port, topic, b'{"pm25": 2}')
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="2 readings")
    assert remembered_ids(conn, client_id) == [1, 2]
    wipe_session(services.mqtt_port, client_id)
    with running_worker(settings, client_id):
        publish_one(services.mqtt_port, topic, b'{"pm25": 3}')
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 3, what="3 readings")
    assert remembered_ids(conn, client_id) == [1]


def batch_row(ids: list[int], ordinals: list[int], anchors: list[float]) -> tuple[bytes, ...]:
    return (
        np.asarray(ids, "<u2").tobytes(),
        np.asarray(ordinals, "<u4").tobytes(),
        b"".join(bytes([i]) * 16 for i in ids),
        np.asarray(anchors, "<f8").tobytes(),
    )


def test_the_latest_message_remembered_under_a_packet_id_is_found() -> None:
    """Rows are batches: (count after the batch, its messages with a packet id, arrays).
    Each message's count is last_seq - delivered + ordinal; the latest one wins."""
    rows = [
        (100, 10, *batch_row([7, 8], [2, 9], [1.0, 2.0])),  # counts 92 and 99
        (150, 50, *batch_row([7], [50], [3.0])),  # count 150
    ]
    found = latest_deliveries(rows, 160, [7, 8, 9])  # type: ignore[arg-type]
    assert found == {
        7: RecordedDelivery(bytes([7]) * 16, 3.0, 10),
        8: RecordedDelivery(bytes([8]) * 16, 2.0, 61),
    }


def test_a_redelivery_in_the_same_batch_takes_the_time_of_the_first_copy() -> None:
    """A copy from before a reconnect and its redelivery (DUP) in one batch share a
    time; a DUP message unlike anything remembered is new.  A message of a session the
    broker has dropped is matched within the batch but not remembered."""
    lookups: list[list[int]] = []

    def recorded(ids: list[int]) -> dict[int, RecordedDelivery]:
        lookups.append(ids)
        return {6: RecordedDelivery(digest("smartby/aq-1/telemetry", b"other"), 50.0, 10)}

    topic = "smartby/aq-1/telemetry"
    first = Message(topic, b'{"pm25":1}', mid=5, received=100.0, generation=0)
    again = Message(topic, b'{"pm25":1}', mid=5, received=101.0, generation=1, dup=True)
    unlike = Message(topic, b'{"pm25":2}', mid=6, received=102.0, generation=1, dup=True)
    anchors = TimeAnchors(Session("c", recorded, first_generation=1), [first, again, unlike])
    assert anchors.anchor(first, 1) is None
    assert anchors.anchor(again, 2) == 100.0
    assert anchors.anchor(unlike, 3) is None
    assert lookups == [[5, 6]]  # one query for the batch
    remembered = anchors.remembered()
    assert remembered is not None
    assert np.frombuffer(remembered.packet_ids, "<u2").tolist() == [6]
    assert np.frombuffer(remembered.ordinals, "<u4").tolist() == [3]
    assert np.frombuffer(remembered.anchors, "<f8").tolist() == [102.0]


def test_each_batch_counts_its_messages_and_rows_past_the_window_are_deleted(
    db_url: str, conn: psycopg.Connection
) -> None:
    """The writer adds a batch's messages to the client id's count and remembers its
    time-less ones in the same transaction; once 32,768 more were committed, a row can
    match no redelivery and goes."""
    session = Session("writer-test", lambda ids: {})
    writer = BatchWriter(db_url)

    def write(delivered: int, ids: list[int]) -> None:
        last = list(range(delivered - len(ids) + 1, delivered + 1))  # the batch's last messages
        remembered = Remembered(*batch_row(ids, last, [1.0] * len(ids)))
        writer.write(PreparedBatch(session=session, delivered=delivered, remembered=remembered))

    try:
        write(3, [1, 2])
        write(REUSE_WINDOW - 1, [3])
        rows = "SELECT last_seq FROM ingest_deliveries ORDER BY 1"
        assert [r for (r,) in conn.execute(rows)] == [3, REUSE_WINDOW + 2]
        writer.write(PreparedBatch(session=session, delivered=5))  # no time-less message
        write(1, [4])
        assert [r for (r,) in conn.execute(rows)] == [REUSE_WINDOW + 2, REUSE_WINDOW + 8]
    finally:
        writer.close()
    assert count(conn, "SELECT committed FROM ingest_sessions") == REUSE_WINDOW + 8
    recorded = DatabaseRegistry(db_url)
    try:
        found = recorded.recorded_deliveries("writer-test", [1, 3, 4])
    finally:
        recorded.close()
    assert {i: r.since for i, r in found.items()} == {3: 6, 4: 0}


def test_the_receive_maximum_stays_below_the_reuse_window(services: Services) -> None:
    """The argument of ingest.redelivery needs fewer than 32,768 messages in flight."""
    settings = services.settings(ingest_queue_size=65535)
    worker = IngestWorker(settings, services.database_url, client_id="not-connected")
    assert worker.receive_maximum == MAX_RECEIVE_MAXIMUM == REUSE_WINDOW - 1


# --- retained telemetry -------------------------------------------------------------------


def test_retained_telemetry_is_stored_once_across_worker_and_broker_restarts(
    services: Services, conn: psycopg.Connection, prefix: str
) -> None:
    """Two devices publish retained telemetry, one without a time and one with; the
    worker restarts twice and the broker once: each is stored once (the worker
    subscribes with Retain Handling 2, MQTT v5 §3.8.3.1)."""
    for device in ("aq-1", "aq-2", "aq-3"):
        register(conn, device)
    client_id = f"retained-{uuid.uuid4().hex[:6]}"
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    t0 = int(time.time()) - 60
    retained = {
        f"{prefix}/aq-1/telemetry": b'{"pm25": 5.5}',
        f"{prefix}/aq-2/telemetry": orjson.dumps({"time": t0, "no2": 30.0}),
    }

    def publish_retained(topic: str, payload: bytes) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", services.mqtt_port)
        client.loop_start()
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()

    def caught_up(n: int) -> None:
        """A plain message of a third device, stored: whatever the broker sent before it
        (a retained message sent at subscribe comes first) is written by now."""
        marker = orjson.dumps({"time": t0 + n, "pm25": n})
        publish_one(services.mqtt_port, f"{prefix}/aq-3/telemetry", marker)
        wait_for(lambda: len(stored(conn, "aq-3")) == n, what=f"marker {n} stored")

    try:
        with running_worker(settings, client_id):
            for topic, payload in retained.items():
                publish_retained(topic, payload)
            caught_up(1)
        for n in (2, 3):
            with running_worker(settings, client_id):
                caught_up(n)
        services.broker.stop()
        services.broker.start()
        with running_worker(settings, client_id) as worker:
            caught_up(4)
            replays = metric(
                worker, "smartby_ingest_messages_total", {"outcome": "retained_replay"}
            )
    finally:
        for topic in retained:  # an empty retained message clears the retained one
            publish_retained(topic, b"")
    assert replays == 0
    [(metric_key, stamped, value)] = stored(conn, "aq-1")
    assert (metric_key, value) == ("pm25", 5.5)
    assert time.time() - 120 < stamped <= time.time()
    assert stored(conn, "aq-2") == [("no2", t0, 30.0)]
    assert quarantined(conn) == []


def test_a_retained_message_replayed_anyway_is_not_stored_again_without_a_time(
    db_url: str, conn: psycopg.Connection
) -> None:
    """Should a broker send retained telemetry at subscribe anyway (RETAIN=1, MQTT v5
    §3.3.1.3), a time-less one is counted as a replay, not stored with today's time;
    a time-ful one is absorbed by the key like any redelivery."""
    register(conn, "aq-1")
    now = time.time()
    topic = "smartby/aq-1/telemetry"
    live = [
        Message(topic, b'{"pm25": 5.5}', received=now - 600),
        Message(topic, orjson.dumps({"time": now - 900, "no2": 30.0}), received=now - 600),
    ]
    replays = [Message(m.topic, m.payload, received=now, retain=True) for m in live]
    registry = DatabaseRegistry(db_url)
    preparer = BatchPreparer(registry, Limits(65536, 400 * 86400, 300), "smartby")
    writer = BatchWriter(db_url)
    try:
        writer.write(preparer.prepare(live))
        replayed = preparer.prepare(replays)
        result = writer.write(replayed)
    finally:
        writer.close()
        registry.close()
    assert replayed.outcomes == {"retained_replay": 1, "stored": 1}
    assert (result.inserted, result.duplicates) == (0, 1)
    assert [(m, v) for m, _, v in stored(conn)] == [("no2", 30.0), ("pm25", 5.5)]


# --- conflicting values ---------------------------------------------------------------------


def test_a_second_value_for_a_stored_reading_is_quarantined_with_both_values(
    services: Services, conn: psycopg.Connection, prefix: str
) -> None:
    """Same series, same time, another value: the stored reading stays, the message goes
    to quarantine as conflicting_value; the same value again is a duplicate."""
    register(conn, "aq-1")
    t0 = 1_760_000_000
    settings = services.settings(
        mqtt_topic_prefix=prefix, ingest_metrics_port=0, ingest_max_past_days=3650
    )
    topic = f"{prefix}/aq-1/telemetry"
    correction = orjson.dumps({"time": t0, "pm25": 4.0})
    mixed = orjson.dumps({"time": t0, "pm25": 5.0, "no2": 12.0})  # one conflicts, one is new
    with running_worker(settings) as worker:
        publish_one(services.mqtt_port, topic, orjson.dumps({"time": t0, "pm25": 3.0}))
        wait_for(lambda: len(stored(conn)) == 1, what="the first value")
        publish_one(services.mqtt_port, topic, correction)
        publish_one(services.mqtt_port, topic, mixed)
        publish_one(services.mqtt_port, topic, orjson.dumps({"time": t0, "pm25": 3.0}))
        wait_for(
            lambda: metric(worker, "smartby_ingest_readings_duplicate_total") == 1,
            what="the identical value absorbed",
        )
        assert (
            metric(worker, "smartby_ingest_quarantined_total", {"reason": "conflicting_value"}) == 2
        )
        outcomes = {
            o: metric(worker, "smartby_ingest_messages_total", {"outcome": o})
            for o in ("stored", "partial", "quarantined")
        }
    assert outcomes == {"stored": 2, "partial": 1, "quarantined": 1}
    assert stored(conn) == [("no2", t0, 12.0), ("pm25", t0, 3.0)]
    [(r1, d1, p1), (r2, d2, p2)] = quarantined(conn)
    assert (r1, p1, r2, p2) == ("conflicting_value", correction, "conflicting_value", mixed)
    assert d1 == "pm25 at 2025-10-09T08:53:20+00:00: stored 3.0, received 4.0 µg/m³"
    assert d2 == "pm25 at 2025-10-09T08:53:20+00:00: stored 3.0, received 5.0 µg/m³"


def test_two_values_for_one_reading_in_one_batch_keep_the_first(
    services: Services, conn: psycopg.Connection, prefix: str
) -> None:
    """A SenML pack naming one reading twice, and two messages of one batch for the
    same reading: the first in batch order is stored, the other quarantined."""
    register(conn, "aq-1")
    t0 = int(time.time()) - 120
    pack = orjson.dumps(
        [{"bt": t0, "n": "pm25", "v": 1.0}, {"n": "pm25", "v": 2.0}, {"n": "no2", "v": 9.0}]
    )
    first = orjson.dumps({"time": t0 + 10, "pm25": 6.0})
    second = orjson.dumps({"time": t0 + 10, "pm25": 7.0})
    client_id = f"batch-{uuid.uuid4().hex[:6]}"
    settings = services.settings(
        mqtt_topic_prefix=prefix, ingest_metrics_port=0, ingest_batch_ms=1000
    )
    with running_worker(settings, client_id):
        pass  # the session exists: messages published now wait for the worker
    topic = f"{prefix}/aq-1/telemetry"
    for payload in (pack, first, second):
        publish_one(services.mqtt_port, topic, payload)
    with running_worker(settings, client_id) as worker:
        wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 2, what="quarantine")
        batches = metric(worker, "smartby_ingest_batch_messages_count")
    assert stored(conn) == [("no2", t0, 9.0), ("pm25", t0, 1.0), ("pm25", t0 + 10, 6.0)]
    details = [(reason, detail) for reason, detail, _ in quarantined(conn)]
    assert [reason for reason, _ in details] == ["conflicting_value"] * 2
    assert "stored 1.0, received 2.0" in details[0][1]
    assert "stored 6.0, received 7.0" in details[1][1]
    assert batches == 1, "the three messages were not in one batch; the test proved less"


def test_conflicts_name_the_value_that_stays(db_url: str, conn: psycopg.Connection) -> None:
    """Stored 1; one batch brings 2, 3 and 1 for the same reading: 2 and 3 conflict with
    the stored 1 (not with each other), and 1 is a duplicate."""
    register(conn, "aq-1")
    t0 = time.time() - 60
    topic = "smartby/aq-1/telemetry"

    def message(value: float) -> Message:
        return Message(topic, orjson.dumps({"time": t0, "pm25": value}), received=t0 + 1)

    registry = DatabaseRegistry(db_url)
    preparer = BatchPreparer(registry, Limits(65536, 400 * 86400, 300), "smartby")
    writer = BatchWriter(db_url)
    try:
        writer.write(preparer.prepare([message(1.0)]))
        result = writer.write(preparer.prepare([message(2.0), message(3.0), message(1.0)]))
    finally:
        writer.close()
        registry.close()
    assert (result.inserted, result.duplicates) == (0, 1)
    assert [row.detail.split(": ", 1)[1] for row in result.conflicts] == [
        "stored 1.0, received 2.0 µg/m³",
        "stored 1.0, received 3.0 µg/m³",
    ]
    assert result.outcome_changes == {"stored": -2, "quarantined": 2}
    assert [v for _, _, v in stored(conn)] == [1.0]


def test_a_duplicate_json_key_is_quarantined_whole(
    services: Services, conn: psycopg.Connection, prefix: str
) -> None:
    """{"pm25": 1, "pm25": 2}: which value is meant is undefined (RFC 8259 §4), so the
    message goes to quarantine as duplicate_key, its other members with it."""
    register(conn, "aq-1")
    payload = b'{"pm25": 1, "no2": 3, "pm25": 2}'
    settings: Settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    with running_worker(settings) as worker:
        publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", payload)
        wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 1, what="quarantine")
        assert metric(worker, "smartby_ingest_quarantined_total", {"reason": "duplicate_key"}) == 1
    [(reason, detail, kept)] = quarantined(conn)
    assert (reason, kept) == ("duplicate_key", payload)
    assert "'pm25'" in detail
    assert stored(conn) == []
