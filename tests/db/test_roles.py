"""Least privilege (migration 0011, `db.roles`): the API's role reads and cannot write,
the ingest role writes what ingest writes and nothing else, every table has a
decision, and the whole platform — ingest worker, indicator and warning jobs,
retention, the API and its admin routes — works under those roles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from api.app import create_app
from db.indicators import update_pending
from db.lifecycle import retention_pass
from db.roles import LOGINS, ensure_login, login_url, scram_verifier
from ingest.warnings import WarningJob
from tests.api.conftest import ADMIN_KEY, UNLIMITED, TestClient
from tests.fixtures.ingest import count, register, running_worker, unique_prefix, wait_for
from tests.fixtures.mqtt import publish_one
from tests.fixtures.services import Services
from web.warnings import CatalogueTexts

PASSWORDS = {kind: f"test-{kind}-password-0123456789" for kind in LOGINS}

#: every table and view, and what each group role may do with it (S select, I insert,
#: U update, D delete; "u": some columns only).  A new table must be added here: the
#: test fails for a table nobody decided about.
DECISIONS: dict[str, dict[str, str]] = {
    # table: {role: privileges}
    "sites": {"reader": "S", "writer": "S", "registrar": "S"},
    "devices": {"reader": "s", "writer": "su", "registrar": "SIu"},
    "metrics": {"reader": "S", "writer": "S", "registrar": "S"},
    "series": {"reader": "S", "writer": "SI", "registrar": "S"},
    "readings": {"reader": "S", "writer": "SIu"},
    "rollups": {"reader": "S", "writer": "SIUD"},
    "quarantine": {"reader": "s", "writer": "I"},
    "indicator_days_pending": {"writer": "SIUD"},
    "aqi_hourly": {"reader": "S", "writer": "SID"},
    "energy_hourly": {"reader": "S", "writer": "SID"},
    "energy_daily": {"reader": "S", "writer": "SID"},
    "traffic_hourly": {"reader": "S", "writer": "SID"},
    "traffic_daily": {"reader": "S", "writer": "SID"},
    "traffic_adt": {"reader": "S"},
    "ingest_sessions": {"writer": "SIU"},
    "ingest_deliveries": {"writer": "SID"},
    "http_push_keys": {"writer": "SID"},
    "warning_stations": {"reader": "S", "writer": "SIU"},
    "warning_episodes": {"reader": "S", "writer": "SIU"},
    "warning_messages": {"reader": "S", "writer": "SIU"},
    "lifecycle_settings": {"reader": "S", "writer": "S"},
    "schema_migrations": {"reader": "S"},
    "field_aliases": {"reader": "S", "writer": "S", "registrar": "S"},
    "device_health": {"reader": "S", "writer": "I"},
}
GROUPS = {"reader": "smartby_reader", "writer": "smartby_writer", "registrar": "smartby_registrar"}
PRIVILEGES = {"S": "SELECT", "I": "INSERT", "U": "UPDATE", "D": "DELETE"}


@pytest.fixture
def logins(services: Services, db_url: str) -> dict[str, str]:
    """The three logins on the test database, by kind of login."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for kind, login in LOGINS.items():
            ensure_login(conn, login, PASSWORDS[kind])
    return {kind: login_url(db_url, login, PASSWORDS[kind]) for kind, login in LOGINS.items()}


def refused(url: str, statement: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


def test_every_table_has_a_decision_and_the_grants_are_exactly_it(conn: psycopg.Connection) -> None:
    relations = {
        name
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')"
        )
    }
    assert relations == set(DECISIONS), "decide the roles' privileges in migration 0011 and here"
    for table, roles in DECISIONS.items():
        for role, group in GROUPS.items():
            wanted = roles.get(role, "")
            for letter, privilege in PRIVILEGES.items():
                whole = conn.execute(
                    "SELECT has_table_privilege(%s, %s, %s)", (group, table, privilege)
                ).fetchone()
                assert whole == ((letter in wanted),), (table, group, privilege)
                if privilege != "DELETE":
                    some = conn.execute(
                        "SELECT has_any_column_privilege(%s, %s, %s)", (group, table, privilege)
                    ).fetchone()
                    assert some == ((letter.lower() in wanted.lower()),), (table, group, privilege)


def test_no_role_but_the_owner_reads_a_secret(conn: psycopg.Connection) -> None:
    columns = [
        c
        for (c,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'devices'"
        )
    ]
    for column in columns:
        for role, group in GROUPS.items():
            allowed = conn.execute(
                "SELECT has_column_privilege(%s, 'devices', %s, 'SELECT')", (group, column)
            ).fetchone()
            # every column but the secret's hash is readable; the registrar also says
            # whether a secret is set (the admin view), so it reads that one too
            assert allowed == ((column != "secret_hash" or role == "registrar"),), (role, column)
    for group in GROUPS.values():
        payload = conn.execute(
            "SELECT has_column_privilege(%s, 'quarantine', 'payload', 'SELECT')", (group,)
        ).fetchone()
        assert payload == (False,)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO readings (time, series_id, value) VALUES (now(), 1, 1)",
        "UPDATE sites SET name = 'x'",
        "DELETE FROM rollups",
        "DELETE FROM readings",
        "TRUNCATE aqi_hourly",
        "INSERT INTO devices (id, kind) VALUES ('x', 'air_quality')",
        "UPDATE devices SET status = 'disabled'",
        "CREATE TABLE api_was_here (a int)",
        "ALTER TABLE readings ADD COLUMN x int",
        "DROP TABLE warning_messages",
        "SELECT secret_hash FROM devices",
        "SELECT payload FROM quarantine",
        "SELECT * FROM smartby_retention_step()",
        "UPDATE lifecycle_settings SET raw_retention = '2 days'",
    ],
)
def test_the_api_role_cannot_write(logins: dict[str, str], statement: str) -> None:
    assert refused(logins["reader"], statement)


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE ingest_was_here (a int)",
        "ALTER TABLE readings ADD COLUMN x int",
        "DROP TABLE rollups",
        "DELETE FROM readings",
        "UPDATE readings SET value = 0",
        "TRUNCATE readings",
        "SELECT secret_hash FROM devices",
        "UPDATE devices SET secret_hash = 'x'",
        "UPDATE devices SET status = 'disabled'",
        "INSERT INTO devices (id, kind) VALUES ('x', 'air_quality')",
        "SELECT payload FROM quarantine",
        "DELETE FROM quarantine",
        "UPDATE lifecycle_settings SET raw_retention = '2 days'",
        "SELECT * FROM smartby_expire_readings(now() + interval '10 years')",
        # retention's own (migration 0014): minute rows go only with their readings
        "SELECT smartby_expire_minutes('-infinity', 'infinity')",
        # device health goes only as the owner decided (migration 0016)
        "SELECT smartby_expire_health(now() + interval '10 years')",
        "DELETE FROM device_health",
        "SELECT drop_chunks('readings', older_than => now())",
        "DELETE FROM warning_messages",
    ],
)
def test_the_ingest_role_cannot_do_ddl_delete_readings_or_read_secrets(
    logins: dict[str, str], statement: str
) -> None:
    assert refused(logins["writer"], statement)


def test_the_registrar_writes_the_registry_only(
    logins: dict[str, str], conn: psycopg.Connection
) -> None:
    register(conn, "aq-1")
    assert refused(
        logins["admin"], "INSERT INTO readings (time, series_id, value) VALUES (now(), 1, 1)"
    )
    assert refused(logins["admin"], "DELETE FROM devices")
    assert refused(logins["admin"], "CREATE TABLE x (a int)")
    with psycopg.connect(logins["admin"], autocommit=True) as admin:
        admin.execute("UPDATE devices SET status = 'disabled' WHERE id = 'aq-1'")


def test_a_password_travels_only_as_a_scram_verifier() -> None:
    verifier = scram_verifier("correct-horse-battery")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert "correct-horse" not in verifier
    assert scram_verifier("correct-horse-battery") != verifier  # a fresh salt each time


@pytest.fixture
def platform_app(services: Services, logins: dict[str, str]) -> Iterator[TestClient]:
    settings = services.settings(
        database_url=logins["reader"],
        admin_database_url=logins["admin"],
        api_rate_limit=UNLIMITED,
        api_keys=f"ops:{ADMIN_KEY}",
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_platform_works_under_its_roles(
    services: Services, logins: dict[str, str], conn: psycopg.Connection, platform_app: TestClient
) -> None:
    """Ingest as smartby_ingest (readings, rollups, quarantine, device status, the
    indicator and warning jobs, a retention step), the API as smartby_read, the admin
    routes as smartby_registry."""
    register(conn, "aq-roles")
    prefix = unique_prefix()
    settings = services.settings(database_url=logins["writer"], mqtt_topic_prefix=prefix)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with running_worker(settings) as worker:
        assert worker.registry  # the worker loaded the registry as smartby_ingest
        for minute in range(5):
            moment = (now - timedelta(minutes=minute)).isoformat()
            publish_one(
                services.mqtt_port,
                f"{prefix}/aq-roles/telemetry",
                orjson.dumps({"time": moment, "pm25": 12.5 + minute}),
            )
        publish_one(services.mqtt_port, f"{prefix}/aq-roles/telemetry", b"not json")
        publish_one(services.mqtt_port, f"{prefix}/aq-roles/status", b"online")
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 5, what="readings")
        wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 1, what="quarantine")
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM devices WHERE online") == 1, what="status"
        )
    assert count(conn, "SELECT sum(count) FROM rollups WHERE resolution = '1h'") == 5
    with psycopg.connect(logins["writer"]) as writer:
        assert update_pending(writer, settings)  # the day's indicators, as smartby_ingest
        WarningJob(settings, CatalogueTexts(settings.city)).run(writer)
        writer.autocommit = True
        retention_pass(writer)
    assert count(conn, "SELECT count(*) FROM warning_stations") == 1
    # the API reads as smartby_read
    latest = platform_app.get("/v1/latest")
    assert latest.status_code == 200
    assert [row["value"] for row in latest.json()["data"]] == [12.5]
    minutes = platform_app.get(
        f"/v1/series/{latest.json()['data'][0]['series_id']}/data", params={"bucket": "1m"}
    )
    assert minutes.status_code == 200
    assert [p["mean"] for p in minutes.json()["data"]] == [16.5, 15.5, 14.5, 13.5, 12.5]
    assert platform_app.get("/v1/status").status_code == 200
    assert platform_app.get("/").status_code == 200
    assert platform_app.get("/v1/warnings").status_code == 200
    # and the admin routes write as smartby_registry
    headers = {"x-api-key": ADMIN_KEY}
    device = {"id": f"aq-{uuid.uuid4().hex[:6]}", "site_id": "site-aq-roles", "kind": "air_quality"}
    created = platform_app.post("/v1/admin/devices", json=device, headers=headers)
    assert created.status_code == 201, created.text
    listing = platform_app.get("/v1/admin/devices", headers=headers)
    assert listing.status_code == 200
    assert {d["id"]: d["has_secret"] for d in listing.json()["data"]}[device["id"]] is True
