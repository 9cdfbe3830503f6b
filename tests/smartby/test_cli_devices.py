"""`smartby devices ...` manages the registry from the shell: secrets printed once,
never listed, and every failure one clear line with a non-zero exit."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from devices.registry import SiteRecord, upsert_site, verify_secret
from stack.ports import free_port
from tests.fixtures.secure import SecureBroker, close, login, publish


def smartby(
    db_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    environment["SMARTBY_DATABASE_URL"] = db_url
    # no running `smartby up` in the checkout's data folder may be found
    environment["SMARTBY_DATA_DIR"] = "/nonexistent/smartby"
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "smartby", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def site(conn: psycopg.Connection) -> str:
    upsert_site(
        conn, SiteRecord("torget", "Torget", "urban_background", "Narvik", 17.43, 68.44, {})
    )
    return "torget"


def test_add_list_show_rotate_and_disable(db_url: str, conn: psycopg.Connection, site: str) -> None:
    added = smartby(
        db_url,
        "devices",
        "add",
        "aq-1",
        "--site",
        site,
        "--kind",
        "air_quality",
        "--vendor",
        "Clarity",
        "--model",
        "Node-S",
    )
    assert added.returncode == 0, added.stderr
    secret = added.stdout.rsplit(": ", 1)[1].strip()
    stored = conn.execute("SELECT secret_hash FROM devices WHERE id = 'aq-1'").fetchone()[0]
    assert verify_secret(secret, stored)

    listed = smartby(db_url, "devices", "list")
    assert listed.returncode == 0
    assert "aq-1" in listed.stdout
    assert "torget" in listed.stdout
    assert secret not in listed.stdout
    assert "$7$" not in listed.stdout

    shown = smartby(db_url, "devices", "show", "aq-1")
    assert "Clarity" in shown.stdout
    assert secret not in shown.stdout
    assert "$7$" not in shown.stdout

    rotated = smartby(db_url, "devices", "rotate-secret", "aq-1")
    new_secret = rotated.stdout.rsplit(": ", 1)[1].strip()
    stored = conn.execute("SELECT secret_hash FROM devices WHERE id = 'aq-1'").fetchone()[0]
    assert verify_secret(new_secret, stored)
    assert not verify_secret(secret, stored)

    assert smartby(db_url, "devices", "disable", "aq-1").returncode == 0
    assert conn.execute("SELECT status FROM devices").fetchone() == ("disabled",)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("devices", "add", "aq-1", "--site", "nowhere", "--kind", "air_quality"),
            "smartby: error: site 'nowhere' does not exist; add or import it first",
        ),
        (("devices", "disable", "ghost"), "smartby: error: device 'ghost' does not exist"),
        (("devices", "rotate-secret", "ghost"), "smartby: error: device 'ghost' does not exist"),
        (
            ("devices", "add", "bad/id", "--site", "torget", "--kind", "air_quality"),
            "smartby: error: device 'bad/id' is not valid",
        ),
    ],
)
def test_failures_are_one_line_and_exit_non_zero(
    db_url: str, site: str, args: tuple[str, ...], message: str
) -> None:
    result = smartby(db_url, *args)
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


def test_an_unreachable_database_is_one_line(site: str) -> None:
    result = smartby("postgresql://smartby:x@127.0.0.1:1/smartby", "devices", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("smartby: error: database unreachable:")
    assert result.stderr.count("\n") == 1


def test_import_is_idempotent_and_keeps_secrets(db_url: str, conn: psycopg.Connection) -> None:
    first = smartby(db_url, "devices", "import", "devices/narvik.yaml")
    assert first.returncode == 0, first.stderr
    assert "devices 38 new, 0 already known" in first.stdout
    before = conn.execute("SELECT id, secret_hash, updated_at FROM devices ORDER BY id").fetchall()
    again = smartby(db_url, "devices", "import", "devices/narvik.yaml")
    assert "devices 0 new, 38 already known" in again.stdout
    assert "secrets of the new devices" not in again.stdout
    after = conn.execute("SELECT id, secret_hash, updated_at FROM devices ORDER BY id").fetchall()
    assert after == before


def test_add_devices_of_other_profiles_with_their_topic_and_field_map(
    db_url: str, conn: psycopg.Connection, site: str
) -> None:
    """A Tasmota plug known by its topic, with a field mapped to a metric in another
    unit and one ignored; `show` tells how ingest will know it."""
    added = smartby(
        db_url,
        "devices",
        "add",
        "plug-1",
        "--site",
        site,
        "--kind",
        "energy",
        "--profile",
        "tasmota",
        "--topic",
        "plug_kitchen",
        "--field",
        "ENERGY/Total=energy:Wh",
        "--field",
        "Analog/A0=-",
        "--timezone",
        "Europe/Oslo",
    )
    assert added.returncode == 0, added.stderr
    assert "ingest knows it by its tasmota topic 'plug_kitchen'" in added.stdout
    row = conn.execute(
        "SELECT profile, external_id, field_map, profile_options FROM devices WHERE id = 'plug-1'"
    ).fetchone()
    assert row == (
        "tasmota",
        "plug_kitchen",
        {"energy/total": {"metric": "energy", "unit": "Wh"}, "analog/a0": None},
        {"timezone": "Europe/Oslo"},
    )
    shown = smartby(db_url, "devices", "show", "plug-1")
    assert "profile      tasmota" in shown.stdout
    assert "topic        plug_kitchen" in shown.stdout


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--profile", "tasmota"], "a tasmota device needs its Tasmota topic (topic)"),
        (["--profile", "lorawan", "--topic", "x"], "unknown profile 'lorawan'"),
        (["--profile", "chirpstack-v4", "--topic", "abc"], "16 hexadecimal digits"),
        (["--topic", "x"], "a smartby device is known by its device id"),
        (["--profile", "esphome", "--topic", "n", "--field", "pm"], "write NAME=METRIC"),
        (
            ["--profile", "esphome", "--topic", "n", "--field", "pm=radon"],
            "unknown metric(s) radon",
        ),
        (["--profile", "esphome", "--topic", "taken"], "already has the key 'taken'"),
    ],
)
def test_a_device_whose_profile_settings_cannot_work_is_refused_in_one_line(
    db_url: str, site: str, args: list[str], problem: str
) -> None:
    first = smartby(
        db_url, "devices", "add", "esp-0", "--site", site, "--kind", "air_quality",
        "--profile", "esphome", "--topic", "taken",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    result = smartby(
        db_url, "devices", "add", "dev-x", "--site", site, "--kind", "air_quality", *args
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("smartby: error:")
    assert problem in line


# ------------------------------------------------------------------------ the broker


def with_broker(secure: SecureBroker, **more: str) -> dict[str, str]:
    """Settings that point the CLI at the secure test broker and its admin."""
    return {
        "SMARTBY_MQTT_PORT": str(secure.port),
        "SMARTBY_BROKER_ADMIN_PASSWORD": secure.accounts.admin_password or "",
        **more,
    }


def test_every_change_reaches_the_broker_at_once(
    db_url: str, site: str, secure: SecureBroker
) -> None:
    env = with_broker(secure)
    added = smartby(
        db_url, "devices", "add", "aq-1", "--site", site, "--kind", "air_quality",
        "--client-id", "DVES_4F2A1C", env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "client id 'DVES_4F2A1C'" in added.stdout
    assert "broker updated" in added.stderr
    secret = added.stdout.rsplit(": ", 1)[1].strip()
    assert connects(secure, "aq-1", secret, "DVES_4F2A1C")
    assert not connects(secure, "aq-1", secret, "aq-1")

    rotated = smartby(db_url, "devices", "rotate-secret", "aq-1", env=env)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.rsplit(": ", 1)[1].strip()
    assert not connects(secure, "aq-1", secret, "DVES_4F2A1C")
    assert connects(secure, "aq-1", new, "DVES_4F2A1C")

    assert smartby(db_url, "devices", "disable", "aq-1", env=env).returncode == 0
    assert not connects(secure, "aq-1", new, "DVES_4F2A1C")
    assert smartby(db_url, "devices", "enable", "aq-1", env=env).returncode == 0
    assert connects(secure, "aq-1", new, "DVES_4F2A1C")

    rebound = smartby(db_url, "devices", "set-client-id", "aq-1", env=env)
    assert rebound.returncode == 0, rebound.stderr
    assert connects(secure, "aq-1", new, "aq-1")
    assert not connects(secure, "aq-1", new, "DVES_4F2A1C")

    deleted = smartby(db_url, "devices", "delete", "aq-1", env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert not connects(secure, "aq-1", new, "aq-1")


def connects(secure: SecureBroker, username: str, password: str, client_id: str) -> bool:
    session = login(secure.port, username, password, client_id=client_id)
    if session.client is None:
        return False
    close(session.client)
    return True


def test_an_unreachable_broker_is_one_line_after_the_commit(db_url: str, site: str) -> None:
    """The registry change stands (the secret is printed); the failure names the broker
    and the fix."""
    env = {"SMARTBY_MQTT_PORT": str(free_port()), "SMARTBY_BROKER_ADMIN_PASSWORD": "x" * 24}
    added = smartby(
        db_url, "devices", "add", "aq-1", "--site", site, "--kind", "air_quality", env=env
    )
    assert added.returncode == 1
    assert "secret (shown once" in added.stdout
    assert added.stderr.count("\n") == 1, added.stderr
    assert added.stderr.startswith(
        "smartby: error: the registry has the change, but the broker was not updated:"
        " cannot reach the broker at 127.0.0.1:"
    )
    assert smartby(db_url, "devices", "show", "aq-1").returncode == 0


def test_without_a_broker_the_change_waits_for_the_next_start(db_url: str, site: str) -> None:
    added = smartby(db_url, "devices", "add", "aq-1", "--site", site, "--kind", "air_quality")
    assert added.returncode == 0
    assert added.stderr.startswith("note: no broker to update")


def test_a_device_with_data_is_disabled_not_deleted(
    db_url: str, conn: psycopg.Connection, site: str
) -> None:
    assert (
        smartby(
            db_url, "devices", "add", "aq-1", "--site", site, "--kind", "air_quality"
        ).returncode
        == 0
    )
    conn.execute("INSERT INTO series (device_id, metric) VALUES ('aq-1', 'pm25')")
    refused = smartby(db_url, "devices", "delete", "aq-1")
    assert refused.returncode == 1
    assert refused.stderr == (
        "smartby: error: device 'aq-1' has stored data and cannot be deleted; disable it instead\n"
    )


def test_broker_sync_reconciles_a_running_broker_and_writes_a_stopped_ones_file(
    db_url: str, conn: psycopg.Connection, site: str, secure: SecureBroker, tmp_path: Path
) -> None:
    """`smartby broker sync`: over $CONTROL when the broker answers (a device whose
    secret it never got is reported with its fix, on stderr, exit 0); into the
    plugin's file when it does not (compose's broker-config before the first start)."""
    conn.execute("DELETE FROM devices")
    assert (
        smartby(
            db_url, "devices", "add", "aq-9", "--site", site, "--kind", "air_quality"
        ).returncode
        == 0
    )
    env = with_broker(secure, SMARTBY_MQTT_PASSWORD=secure.ingest_password)
    synced = smartby(db_url, "broker", "sync", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "account aq-9 created" in synced.stdout
    assert f"broker at 127.0.0.1:{secure.port} agrees with the registry" in synced.stdout
    assert "`smartby devices rotate-secret aq-9`" in synced.stderr

    config = tmp_path / "dynamic-security.json"
    bridge = tmp_path / "bridge" / "bridge.conf"
    stopped = {
        **env,
        "SMARTBY_MQTT_PORT": str(free_port()),
        "SMARTBY_PUBLIC_BRIDGE_PASSWORD": "bridge-pw-0123456789",
        "SMARTBY_STA_PUBLISHER_PASSWORD": "publisher-pw-0123456789",
    }
    written = smartby(
        db_url, "broker", "sync", "--config-file", str(config), "--bridge-file", str(bridge),
        env=stopped,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert stat.S_IMODE(bridge.stat().st_mode) == 0o600
    lines = bridge.read_text().splitlines()
    assert "remote_username smartby-public-bridge" in lines
    assert "remote_password bridge-pw-0123456789" in lines
    assert "topic v1.1/# in 1" in lines
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    document = json.loads(config.read_text())
    clients = {c["username"]: c for c in document["clients"]}
    assert {"aq-9", "smartby-admin", "smartby-ingest-1", "smartby-ingest-4"} <= set(clients)
    assert {"smartby-sta-publisher", "smartby-public-bridge"} <= set(clients)
    assert clients["aq-9"]["clientid"] == "aq-9"
    assert clients["aq-9"]["roles"] == [{"rolename": "smartby-device-aq-9"}]
    assert clients["smartby-ingest-1"]["clientid"] == "smartby-ingest-1"
    assert "clientid" not in clients["smartby-admin"]


def test_broker_sync_needs_the_admin_password(db_url: str) -> None:
    result = smartby(db_url, "broker", "sync")
    assert result.returncode == 1
    assert result.stderr == (
        "smartby: error: SMARTBY_BROKER_ADMIN_PASSWORD must be set: the broker's dynamic"
        " security admin\n"
    )


def test_a_reimport_that_changes_a_tasmota_topic_moves_its_broker_role(
    db_url: str, secure: SecureBroker, tmp_path: Path
) -> None:
    """The catalogue's new `topic` is the device's new role at once: the old topic is
    refused, the new one taken (dynamic security, issue 14 item 5)."""
    catalogue = tmp_path / "city.yaml"
    entry = """municipality: Narvik
sites:
  - id: torget
    name: Torget
    kind: urban_background
    lon: 17.43
    lat: 68.44
devices:
  - id: plug-9
    site: torget
    kind: energy
    metrics: [energy]
    interval_s: 60
    profile: tasmota
    topic: {topic}
"""
    catalogue.write_text(entry.format(topic="tasmota_AAAAAA"))
    env = with_broker(secure)
    first = smartby(db_url, "devices", "import", str(catalogue), env=env)
    assert first.returncode == 0, first.stderr
    [secret] = [line.split()[1] for line in first.stdout.splitlines() if "plug-9" in line]
    catalogue.write_text(entry.format(topic="tasmota_BBBBBB"))
    again = smartby(db_url, "devices", "import", str(catalogue), env=env)
    assert again.returncode == 0, again.stderr
    assert "broker updated" in again.stderr
    session = login(secure.port, "plug-9", secret, client_id="plug-9")
    assert session.client is not None, session.reason
    try:
        assert publish(session.client, "tele/tasmota_BBBBBB/SENSOR", b"{}") == 0x10
        assert publish(session.client, "tele/tasmota_AAAAAA/SENSOR", b"{}") == 0x87
    finally:
        close(session.client)
