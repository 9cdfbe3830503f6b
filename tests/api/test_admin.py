"""Device registry operations over HTTP: an API key is required, secrets are shown
once and stored only as a hash, errors are problem+json."""

from __future__ import annotations

import warnings

import psycopg
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from db.registry import verify_secret
from devices.registry import SiteRecord, upsert_site
from smartby.broker import account_sync
from stack.ports import free_port
from tests.api.conftest import ADMIN_KEY, ClientFactory
from tests.fixtures.secure import SecureBroker, close, login

KEY = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def admin(make_client: ClientFactory, db_url: str, conn: psycopg.Connection[tuple[object, ...]]):
    upsert_site(
        conn, SiteRecord("torget", "Torget", "urban_background", "Narvik", 17.43, 68.44, {})
    )
    return make_client(db_url, api_keys=f"ops:{ADMIN_KEY}")


def stored_hash(conn: psycopg.Connection[tuple[object, ...]], device_id: str) -> str:
    row = conn.execute("SELECT secret_hash FROM devices WHERE id = %s", (device_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_admin_routes_need_a_valid_key(admin) -> None:
    for method, path in (
        ("GET", "/v1/admin/devices"),
        ("POST", "/v1/admin/devices"),
        ("POST", "/v1/admin/devices/x/disable"),
        ("POST", "/v1/admin/devices/x/enable"),
        ("POST", "/v1/admin/devices/x/rotate-secret"),
    ):
        for headers in ({}, {"X-API-Key": "wrong-key-wrong-key"}):
            response = admin.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == "X-API-Key"


def test_register_disable_enable_rotate(
    admin, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    body = {"id": "aq-torget", "site_id": "torget", "kind": "air_quality", "model": "AQ-1"}
    created = admin.post("/v1/admin/devices", json=body, headers=KEY)
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    document = created.json()
    secret = document["secret"]
    assert verify_secret(secret, stored_hash(conn, "aq-torget"))
    assert document["data"]["status"] == "active"
    assert document["data"]["has_secret"] is True
    assert "secret_hash" not in created.text

    assert admin.post("/v1/admin/devices", json=body, headers=KEY).status_code == 409

    # the public view follows at once (an admin write empties the response cache)
    assert admin.get("/v1/devices/aq-torget").json()["data"]["status"] == "active"
    disabled = admin.post("/v1/admin/devices/aq-torget/disable", headers=KEY)
    assert disabled.status_code == 200
    assert disabled.json()["data"]["status"] == "disabled"
    assert admin.get("/v1/devices/aq-torget").json()["data"]["status"] == "disabled"
    enabled = admin.post("/v1/admin/devices/aq-torget/enable", headers=KEY)
    assert enabled.json()["data"]["status"] == "active"

    rotated = admin.post("/v1/admin/devices/aq-torget/rotate-secret", headers=KEY)
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    assert verify_secret(new_secret, stored_hash(conn, "aq-torget"))
    assert not verify_secret(secret, stored_hash(conn, "aq-torget"))

    registry = admin.get("/v1/admin/devices", headers=KEY)
    assert registry.status_code == 200
    assert registry.headers["cache-control"] == "no-store"
    (device,) = registry.json()["data"]
    assert device["id"] == "aq-torget"
    assert device["model"] == "AQ-1"
    assert "secret_hash" not in device
    assert new_secret not in registry.text


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"id": "aq-x", "site_id": "nowhere", "kind": "air_quality"}, 422, "nowhere"),
        ({"id": "smartby-ingest-1", "site_id": "torget", "kind": "air_quality"}, 422, "reserved"),
        ({"id": "bad id", "site_id": "torget", "kind": "air_quality"}, 422, "'id'"),
        ({"id": "aq-x", "site_id": "torget", "kind": "weather"}, 422, "'kind'"),
        ({"id": "aq-x", "site_id": "torget"}, 422, "'kind'"),
        ({"id": "aq-x", "site_id": "torget", "kind": "energy", "vendor": "a\x00b"}, 422, "store"),
        ({"id": "aq-x", "site_id": "torget", "kind": "energy", "profile": "zigbee"}, 422, "zigbee"),
        ({"id": "aq-x", "site_id": "torget", "kind": "energy", "profile": "tasmota"}, 422, "topic"),
    ],
)
def test_bad_registrations_are_problems(
    admin, body: dict[str, str], status: int, says: str
) -> None:
    response = admin.post("/v1/admin/devices", json=body, headers=KEY)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.json()["detail"]


def test_a_device_of_another_profile_is_registered_with_its_topic(
    admin, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """What `smartby devices add --profile tasmota --topic ...` does, over the API: the
    registry holds its profile, topic and field map, so ingest and the broker know it."""
    body = {
        "id": "plug-1",
        "site_id": "torget",
        "kind": "energy",
        "profile": "tasmota",
        "topic": "tasmota_4F2A1C",
        "fields": {"ENERGY/Power": "power"},
        "timezone": "Europe/Oslo",
    }
    response = admin.post("/v1/admin/devices", json=body, headers=KEY)
    assert response.status_code == 201, response.text
    row = conn.execute(
        "SELECT profile, external_id, field_map FROM devices WHERE id = 'plug-1'"
    ).fetchone()
    assert row is not None
    assert row[:2] == ("tasmota", "tasmota_4F2A1C")
    assert "power" in str(row[2])


def test_unknown_devices_are_404(admin) -> None:
    for operation in ("disable", "enable", "rotate-secret"):
        for device in ("ghost", "not a valid id"):
            response = admin.post(f"/v1/admin/devices/{device}/{operation}", headers=KEY)
            assert response.status_code == 404, (operation, device)


def test_the_admin_routes_give_the_broker_each_change(
    services, db_url: str, conn: psycopg.Connection[tuple[object, ...]], secure: SecureBroker
) -> None:
    """With the broker link `smartby api` gives the app: a device registered over HTTP
    can log in with the secret in the response under the client id it was given, a
    rotated secret replaces the old one at once, a disabled device is refused."""
    upsert_site(
        conn, SiteRecord("torget", "Torget", "urban_background", "Narvik", 17.43, 68.44, {})
    )
    settings = services.settings(
        database_url=db_url,
        api_keys=f"ops:{ADMIN_KEY}",
        mqtt_port=secure.port,
        broker_admin_password=secure.accounts.admin_password,
    )
    with TestClient(create_app(settings, db_url, account_sync(settings, db_url))) as client:
        body = {
            "id": "aq-http",
            "site_id": "torget",
            "kind": "air_quality",
            "client_id": "DVES_00AA11",
        }
        created = client.post("/v1/admin/devices", json=body, headers=KEY)
        assert created.status_code == 201
        assert "broker" not in created.json()
        secret = created.json()["secret"]
        first = login(secure.port, "aq-http", secret, client_id="DVES_00AA11")
        assert first.client is not None
        close(first.client)

        rotated = client.post("/v1/admin/devices/aq-http/rotate-secret", headers=KEY).json()
        assert login(secure.port, "aq-http", secret, client_id="DVES_00AA11").client is None
        session = login(secure.port, "aq-http", rotated["secret"], client_id="DVES_00AA11")
        assert session.client is not None
        close(session.client)
        client.post("/v1/admin/devices/aq-http/disable", headers=KEY)
        assert (
            login(secure.port, "aq-http", rotated["secret"], client_id="DVES_00AA11").client is None
        )


def test_a_broker_that_cannot_be_updated_is_named_in_the_response(
    services, db_url: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    upsert_site(
        conn, SiteRecord("torget", "Torget", "urban_background", "Narvik", 17.43, 68.44, {})
    )
    settings = services.settings(
        database_url=db_url,
        api_keys=f"ops:{ADMIN_KEY}",
        mqtt_port=free_port(),
        broker_admin_password="x" * 24,
    )
    with TestClient(create_app(settings, db_url, account_sync(settings, db_url))) as client:
        body = {"id": "aq-http", "site_id": "torget", "kind": "air_quality"}
        created = client.post("/v1/admin/devices", json=body, headers=KEY)
    assert created.status_code == 201  # the registry has it; the secret is shown once
    assert created.json()["secret"]
    assert created.json()["broker"].startswith(
        "the broker was not updated: cannot reach the broker at 127.0.0.1:"
    )
