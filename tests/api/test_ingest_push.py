"""HTTP push (issue 14, item 3) through the API app, the push service of ``smartby
api`` and the real database: the answer comes after the readings are committed, a
retry stores nothing twice, and whatever is refused is in the quarantine with why."""

from __future__ import annotations

import time

import cbor2
import orjson
import psycopg

from tests.fixtures.ingest import count
from tests.fixtures.push import PushClientFactory, add_pushing_device, basic, bearer

SENML = "application/senml+json"


def pack(device: str, when: float, pm25: float = 5.1) -> list[dict[str, object]]:
    """Four records: PM2.5, PM10, temperature, humidity."""
    return [
        {"bn": f"{device}/", "bt": when, "n": "pm25", "u": "ug/m3", "v": pm25},
        {"n": "pm10", "u": "ug/m3", "v": 12.3},
        {"n": "temperature", "u": "Cel", "v": -3.4},
        {"n": "humidity", "u": "%RH", "v": 81.0},
    ]


def readings_of(conn: psycopg.Connection, device: str) -> int:
    return count(
        conn,
        "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series_id"
        " WHERE s.device_id = %s",
        device,
    )


def test_a_senml_post_is_answered_after_its_readings_are_committed(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    """A device posts a SenML pack of four records with its Basic credentials; the 200
    counts four readings, and all four are in the database when the answer arrives."""
    secret = add_pushing_device(conn, "aq-push-1")
    client = push_client()
    now = time.time()
    response = client.post(
        "/v1/ingest/aq-push-1",
        content=orjson.dumps(pack("aq-push-1", now)),
        headers={"Content-Type": SENML, **basic("aq-push-1", secret)},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"device_id": "aq-push-1", "stored": 4, "rejected": 0}
    assert response.headers["cache-control"] == "no-store"
    assert readings_of(conn, "aq-push-1") == 4
    # the same path as MQTT: unit conversion, QC flag, rollups, last seen
    value, quality = conn.execute(
        "SELECT r.value, r.quality FROM readings r JOIN series s ON s.id = r.series_id"
        " WHERE s.device_id = 'aq-push-1' AND s.metric = 'pm25'"
    ).fetchone()
    assert (value, quality) == (5.1, 1)
    assert count(conn, "SELECT count(*) FROM rollups") > 0
    assert count(conn, "SELECT count(*) FROM devices WHERE last_seen IS NOT NULL") == 1


def test_cbor_and_plain_json_and_a_bearer_token(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, "aq-push-2")
    client = push_client()
    now = time.time()
    cbor = cbor2.dumps([{-2: "aq-push-2/", -3: now, 0: "pm25", 1: "ug/m3", 2: 4.0}])
    answer = client.post(
        "/v1/ingest/aq-push-2",
        content=cbor,
        headers={"Content-Type": "application/senml+cbor", **bearer(secret)},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 1
    plain = {"time": now + 1, "pm25": 4.5, "pm10": 9.0}
    answer = client.post(
        "/v1/ingest/aq-push-2",
        content=orjson.dumps(plain),
        headers={"Content-Type": "application/json; charset=utf-8", **bearer(secret)},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 2
    assert readings_of(conn, "aq-push-2") == 3


def test_the_same_batch_twice_stores_no_duplicates(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, "aq-push-3")
    client = push_client()
    body = orjson.dumps(pack("aq-push-3", time.time()))
    headers = {"Content-Type": SENML, **basic("aq-push-3", secret)}
    first = client.post("/v1/ingest/aq-push-3", content=body, headers=headers)
    again = client.post("/v1/ingest/aq-push-3", content=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["stored"] == 4  # in the database, from the first post
    assert readings_of(conn, "aq-push-3") == 4
    assert count(conn, "SELECT count(*) FROM quarantine") == 0


def test_a_time_less_retry_under_an_idempotency_key_keeps_its_first_time(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    """A body without times is stamped on arrival: a retry under the same
    Idempotency-Key gets the first stamp (stored once), a new key is a new post, and the
    key reused for another body is refused."""
    secret = add_pushing_device(conn, "aq-push-4")
    client = push_client()
    headers = {"Content-Type": "application/json", **bearer(secret)}
    body = orjson.dumps({"pm25": 3.0})
    keyed = {**headers, "Idempotency-Key": "post-0001"}
    assert client.post("/v1/ingest/aq-push-4", content=body, headers=keyed).status_code == 200
    time.sleep(0.01)  # a later arrival: without the key it would get another time
    assert client.post("/v1/ingest/aq-push-4", content=body, headers=keyed).status_code == 200
    assert readings_of(conn, "aq-push-4") == 1
    other = {**headers, "Idempotency-Key": "post-0002"}
    assert client.post("/v1/ingest/aq-push-4", content=body, headers=other).status_code == 200
    assert readings_of(conn, "aq-push-4") == 2
    reused = client.post("/v1/ingest/aq-push-4", content=orjson.dumps({"pm25": 4.0}), headers=keyed)
    assert reused.status_code == 422
    assert reused.json()["reason"] == "idempotency_key_reused"
    assert readings_of(conn, "aq-push-4") == 2


def test_an_oversized_body_is_413_and_never_read_whole(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, "aq-push-5")
    client = push_client(ingest_max_payload_bytes=1024)
    headers = {"Content-Type": SENML, **bearer(secret)}
    big = orjson.dumps([{"n": "pm25", "v": 1.0, "t": -i} for i in range(200)])
    assert len(big) > 1024
    declared = client.post("/v1/ingest/aq-push-5", content=big, headers=headers)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"
    assert declared.json()["limit"] == 1024

    def chunks():  # no Content-Length: refused as the stream passes the limit
        for _ in range(100):
            yield b"[" + b" " * 100

    streamed = client.post("/v1/ingest/aq-push-5", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert readings_of(conn, "aq-push-5") == 0


def test_an_unknown_content_type_is_415(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, "aq-push-6")
    client = push_client()
    answer = client.post(
        "/v1/ingest/aq-push-6",
        content=b"pm25=4",
        headers={"Content-Type": "text/plain", **bearer(secret)},
    )
    assert answer.status_code == 415
    assert "application/senml+json" in answer.json()["detail"]
    assert "application/senml+json" in answer.headers["accept-post"]


def test_a_bad_record_is_named_and_quarantined_and_the_others_are_stored(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    """Record 2 names a metric nobody has: 422 naming record 2 and the reason, the
    other three records stored, the post in the quarantine with its own body."""
    secret = add_pushing_device(conn, "aq-push-7")
    client = push_client()
    records = pack("aq-push-7", time.time())
    records[2] = {"n": "radon", "u": "Bq/m3", "v": 40.0}
    body = orjson.dumps(records)
    answer = client.post(
        "/v1/ingest/aq-push-7", content=body, headers={"Content-Type": SENML, **bearer(secret)}
    )
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert (problem["record"], problem["reason"], problem["stored"]) == (2, "unknown_metric", 3)
    assert problem["detail"].startswith("record 2: unknown_metric")
    assert readings_of(conn, "aq-push-7") == 3
    topic, reason, payload = conn.execute(
        "SELECT topic, reason, payload FROM quarantine WHERE device_id = 'aq-push-7'"
    ).fetchone()
    assert (topic, reason, bytes(payload)) == ("http:/v1/ingest/aq-push-7", "unknown_metric", body)
    # a record the decoder refuses is named by its index too
    bad_value = [
        {"bn": "aq-push-7/", "bt": time.time(), "n": "pm25", "v": 1.0},
        {"n": "pm10", "vs": "twelve"},
    ]
    answer = client.post(
        "/v1/ingest/aq-push-7",
        content=orjson.dumps(bad_value),
        headers={"Content-Type": SENML, **bearer(secret)},
    )
    assert answer.status_code == 422
    assert (answer.json()["record"], answer.json()["reason"]) == (1, "non_numeric")


def test_an_undecodable_body_is_400_and_quarantined(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, "aq-push-8")
    client = push_client()
    headers = {"Content-Type": SENML, **bearer(secret)}
    broken = client.post("/v1/ingest/aq-push-8", content=b"[{", headers=headers)
    assert broken.status_code == 400, broken.text
    mismatch = client.post("/v1/ingest/aq-push-8", content=b'{"pm25": 1}', headers=headers)
    assert mismatch.status_code == 400
    assert mismatch.json()["reason"] == "content_type_mismatch"
    reasons = [
        r
        for (r,) in conn.execute(
            "SELECT reason FROM quarantine WHERE device_id = 'aq-push-8' ORDER BY id"
        )
    ]
    assert reasons[1:] == ["content_type_mismatch"]


def test_credentials_are_checked_without_telling_whether_a_device_exists(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, "aq-push-9")
    other = add_pushing_device(conn, "aq-push-10")
    client = push_client()
    body = orjson.dumps(pack("aq-push-9", time.time()))

    def post(device: str, headers: dict[str, str]) -> tuple[int, str]:
        answer = client.post(
            f"/v1/ingest/{device}", content=body, headers={"Content-Type": SENML, **headers}
        )
        return answer.status_code, answer.json()["detail"]

    none = client.post("/v1/ingest/aq-push-9", content=body, headers={"Content-Type": SENML})
    assert none.status_code == 401
    assert none.headers["www-authenticate"].startswith("Basic")
    wrong = post("aq-push-9", bearer("not-the-secret"))
    unknown = post("aq-nobody", bearer(secret))
    anothers = post("aq-push-9", bearer(other))
    user_mismatch = post("aq-push-9", basic("aq-push-10", secret))
    assert wrong == unknown == anothers == user_mismatch
    assert wrong[0] == 401
    assert post("aq-push-9", {"Authorization": "Basic !!!"})[0] == 401
    conn.execute("UPDATE devices SET status = 'disabled' WHERE id = 'aq-push-9'")
    assert post("aq-push-9", bearer(secret))[0] == 403
    assert post("aq-push-9", bearer("not-the-secret"))[0] == 401
    assert count(conn, "SELECT count(*) FROM readings") == 0


def test_a_reading_outside_the_time_window_is_a_rejected_record_not_a_bad_body(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, "aq-push-11")
    client = push_client()
    old = [{"bn": "aq-push-11/", "bt": time.time() - 3 * 365 * 86400, "n": "pm25", "v": 1.0}]
    answer = client.post(
        "/v1/ingest/aq-push-11",
        content=orjson.dumps(old),
        headers={"Content-Type": SENML, **bearer(secret)},
    )
    assert answer.status_code == 422, answer.text
    assert (answer.json()["reason"], answer.json()["stored"]) == ("time_too_old", 0)
    assert count(conn, "SELECT count(*) FROM quarantine WHERE reason = 'time_too_old'") == 1
