"""`smartby devices ...` manages the registry from the shell: secrets printed once,
never listed, and every failure one clear line with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from devices.registry import SiteRecord, upsert_site, verify_secret


def smartby(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env["SMARTBY_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "smartby", *args],
        env=env,
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
        (["--profile", "tasmota", "--topic", "esp-0"], "MQTT user name of device 'esp-0'"),
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


def test_a_device_id_that_is_another_devices_topic_is_refused(db_url: str, site: str) -> None:
    """The broker lets user X publish tele/X/… and X/status: a device called like an
    ESPHome node's topic could publish as that node."""
    node = smartby(
        db_url, "devices", "add", "esp-1", "--site", site, "--kind", "air_quality",
        "--profile", "esphome", "--topic", "balcony",
    )  # fmt: skip
    assert node.returncode == 0, node.stderr
    twin = smartby(db_url, "devices", "add", "balcony", "--site", site, "--kind", "air_quality")
    assert twin.returncode == 1
    assert "'balcony' is the esphome topic of device 'esp-1'" in twin.stderr
