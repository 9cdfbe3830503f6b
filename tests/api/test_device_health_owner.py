"""A device's health (issue 14, item 7): public counts for everyone; with the device's
own secret also its last 20 rejected payloads with the reasons, and never without."""

from __future__ import annotations

import time

import orjson
import psycopg

from tests.fixtures.push import PushClientFactory, add_pushing_device, basic, bearer


def test_the_owner_sees_its_last_20_rejections_and_nobody_else_does(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, "aq-owner-1")
    other = add_pushing_device(conn, "aq-owner-2")
    client = push_client()
    headers = {"Content-Type": "application/senml+json", **bearer(secret)}
    for i in range(22):
        bad = [{"bt": time.time(), "n": f"nothing{i}", "v": float(i)}]
        assert client.post("/v1/ingest/aq-owner-1", content=orjson.dumps(bad), headers=headers)
    public = client.get("/v1/devices/aq-owner-1/health")
    assert public.status_code == 200
    assert "rejected" not in public.json()["data"]
    assert public.json()["data"]["quarantined"]["total"] == 22
    # asked again with the secret: not the cached public document
    owner = client.get("/v1/devices/aq-owner-1/health", headers=basic("aq-owner-1", secret))
    assert owner.status_code == 200, owner.text
    assert owner.headers["cache-control"] == "private, no-store"
    rejected = owner.json()["data"]["rejected"]
    assert len(rejected) == 20
    newest = rejected[0]
    assert newest["reason"] == "unknown_metric"
    assert newest["topic"] == "http:/v1/ingest/aq-owner-1"
    assert newest["payload_encoding"] == "utf-8"
    assert orjson.loads(newest["payload"])[0]["n"] == "nothing21"
    assert orjson.loads(rejected[-1]["payload"])[0]["n"] == "nothing2"
    # another device's secret, or a wrong one: 401, never the payloads
    assert client.get("/v1/devices/aq-owner-1/health", headers=bearer(other)).status_code == 401
    wrong = client.get("/v1/devices/aq-owner-1/health", headers=bearer("guess"))
    assert wrong.status_code == 401
    assert "rejected" not in wrong.text
    unknown = client.get("/v1/devices/aq-nobody/health", headers=bearer("guess"))
    assert (unknown.status_code, unknown.json()["detail"]) == (401, wrong.json()["detail"])


def test_a_binary_rejection_is_shown_in_base64(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, "aq-owner-3")
    client = push_client()
    answer = client.post(
        "/v1/ingest/aq-owner-3",
        content=b"\x81\xa1\x00\xff",
        headers={"Content-Type": "application/senml+cbor", **bearer(secret)},
    )
    assert answer.status_code == 400
    owner = client.get("/v1/devices/aq-owner-3/health", headers=bearer(secret))
    [shown] = owner.json()["data"]["rejected"]
    assert (shown["payload_encoding"], shown["payload"]) == ("base64", "gaEA/w==")
