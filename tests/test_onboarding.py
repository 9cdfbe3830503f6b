"""The onboarding guide (docs/onboarding.md) cannot rot: every example in it is a
fixture here.  Its ``smartby devices add`` commands register the devices, its device
configurations agree with what the profiles expect, and the messages it shows travel
through a real broker (or a second one playing the network server) and a real ingest
worker into the readings and device health it promises."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from core.broker import LOCAL_INGEST_CLIENT_ID
from core.profiles import resolve_field
from core.settings import IngestSource
from db.catalogue import load_aliases
from stack.mosquitto import MosquittoBroker
from tests.fixtures.ingest import count, running_worker, wait_for
from tests.fixtures.mqtt import publish_one
from tests.fixtures.network_server import (
    NS_PASSWORD,
    NS_USER,
    NetworkServer,
    publish_as_network_server,
    running_service,
)
from tests.fixtures.profiles import health, quarantine, readings
from tests.fixtures.secure import SecureBroker
from tests.fixtures.services import Services

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "onboarding.md"
_BLOCK = re.compile(r"^```(\w+) id=([\w-]+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: the guide's examples are dated: accept readings from them (the guide shows real
#: formats, not today's date)
DECADES = 20 * 365


def examples() -> dict[str, str]:
    text = GUIDE.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for _language, name, body in _BLOCK.findall(text):
        assert name not in found, f"two examples are called {name}"
        found[name] = body
    return found


EXAMPLES = examples()


def utc(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S")) - time.timezone


def smartby_command(db_url: str, line: str) -> subprocess.CompletedProcess[str]:
    """Run one ``smartby …`` line of the guide against the test database."""
    words = shlex.split(line)
    assert words[0] == "smartby", line
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env["SMARTBY_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "smartby", *words[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def register(db_url: str, conn: psycopg.Connection, example: str) -> tuple[str, str]:
    """Register the guide's device (at site torget); its (device id, topic key)."""
    device, key, _ = register_with_secret(db_url, conn, example)
    return device, key


def register_with_secret(
    db_url: str, conn: psycopg.Connection, example: str
) -> tuple[str, str, str]:
    """Register the guide's device (at site torget); its device id, topic key and the
    secret the command printed."""
    conn.execute(
        "INSERT INTO sites (id, name, kind, municipality, lon, lat) VALUES ('torget', 'Torget',"
        " 'urban_background', 'Narvik', 17.4254, 68.4379) ON CONFLICT DO NOTHING"
    )
    line = EXAMPLES[example].strip()
    result = smartby_command(db_url, line)
    assert result.returncode == 0, result.stderr
    words = shlex.split(line)
    secret = result.stdout.rsplit(": ", 1)[1].strip()
    return words[3], words[words.index("--topic") + 1], secret


def mosquitto_pub(line: str) -> tuple[str, bytes, int]:
    """Topic, message and QoS of a ``mosquitto_pub`` line of the guide."""
    words = shlex.split(line.strip())
    assert words[0] == "mosquitto_pub"
    options = dict(zip(words[1::2], words[2::2], strict=False))
    return options["-t"], options["-m"].encode(), int(options.get("-q", "0"))


def source_of(example: str) -> IngestSource:
    """The ``SMARTBY_INGEST_SOURCES=…`` line of the guide, as the settings read it."""
    [assignment] = shlex.split(EXAMPLES[example].strip())
    name, _, value = assignment.partition("=")
    assert name == "SMARTBY_INGEST_SOURCES"
    [source] = json.loads(value)
    return IngestSource.model_validate(source)


def test_every_example_is_tested() -> None:
    assert set(EXAMPLES) == {
        "tasmota-register",
        "tasmota-console",
        "tasmota-publish",
        "esphome-register",
        "esphome-yaml",
        "esphome-publish",
        "ttn-register",
        "ttn-source",
        "ttn-uplink",
        "chirpstack-toml",
        "chirpstack-register",
        "chirpstack-source",
        "chirpstack-uplink",
    }


def test_tasmota_as_the_guide_sets_it_up(
    db_url: str, conn: psycopg.Connection, secure: SecureBroker, services: Services
) -> None:
    """On the broker as the platform runs it (dynamic security): the device logs in
    with the console's MqttUser, MqttPassword and MqttClient and publishes its topic."""
    device, topic, secret = register_with_secret(db_url, conn, "tasmota-register")
    secure.push(conn, [device], {device: secret})
    backlog = EXAMPLES["tasmota-console"].strip()
    assert backlog.startswith("Backlog ")
    commands = dict(c.strip().split(" ", 1) for c in backlog.removeprefix("Backlog ").split(";"))
    assert commands["Topic"] == topic  # the key the registry knows
    assert commands["MqttUser"] == device  # the broker account is the device
    assert commands["MqttClient"] == device  # ... bound to its client id
    assert commands["FullTopic"] == "%prefix%/%topic%/"  # tele/<topic>/SENSOR
    assert (commands["SetOption52"], commands["SetOption8"], commands["SetOption24"]) == (
        "1",
        "0",
        "0",
    )
    published_topic, message, qos = mosquitto_pub(EXAMPLES["tasmota-publish"])
    assert published_topic == f"tele/{topic}/SENSOR"
    settings = secure.worker_settings(services, ingest_max_past_days=DECADES)
    with running_worker(settings, LOCAL_INGEST_CLIENT_ID):
        publish_one(
            secure.port,
            published_topic,
            message,
            qos=qos,
            username=commands["MqttUser"],
            password=secret,
            client_id=commands["MqttClient"],
        )
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 5, what="5 readings")
    seven = utc("2024-01-15T07:00:00")
    assert readings(conn, device) == {
        "humidity": [(seven, 81.0)],
        "pm10": [(seven, 12.3)],
        "pm25": [(seven, 5.1)],
        "pressure": [(seven, 1002.3)],
        "temperature": [(seven, -3.4)],
    }
    # (the shared secure broker may still hold other tests' retained smartby statuses)
    assert [row for row in quarantine(conn) if row[0].startswith("tele/")] == []


def _secret(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return f"<secret {loader.construct_scalar(node)}>"  # type: ignore[arg-type]


def test_esphome_as_the_guide_sets_it_up(
    db_url: str, conn: psycopg.Connection, secure: SecureBroker, services: Services
) -> None:
    """On the broker as the platform runs it: the node logs in with its ``mqtt:``
    block's username, password and client_id."""
    device, node, secret = register_with_secret(db_url, conn, "esphome-register")
    secure.push(conn, [device], {device: secret})
    loader = type("ESPHomeLoader", (yaml.SafeLoader,), {})
    loader.add_constructor("!secret", _secret)
    config: dict[str, Any] = yaml.load(EXAMPLES["esphome-yaml"], Loader=loader)  # noqa: S506
    assert config["esphome"]["name"] == node
    assert config["mqtt"].get("topic_prefix", node) == node
    assert config["mqtt"]["username"] == device
    assert config["mqtt"]["client_id"] == device
    assert "api" not in config
    names = [
        entry["name"]
        for sensor in config["sensor"]
        for value in sensor.values()
        if isinstance(value, dict)
        for entry in [value]
    ]
    # ESPHome's object id: lower case, spaces and other signs as "_"
    object_ids = [re.sub(r"[^a-z0-9_-]", "_", name.lower().replace(" ", "_")) for name in names]
    aliases = load_aliases(conn)
    metrics = [
        (target.metric if (target := resolve_field(o, {}, aliases)) else o) for o in object_ids
    ]
    assert metrics == ["pm25", "pm10", "temperature", "humidity", "pressure"]
    published_topic, message, qos = mosquitto_pub(EXAMPLES["esphome-publish"])
    assert published_topic == f"{node}/sensor/{object_ids[0]}/state"
    with running_worker(secure.worker_settings(services), LOCAL_INGEST_CLIENT_ID):
        publish_one(
            secure.port,
            published_topic,
            message,
            qos=qos,
            username=config["mqtt"]["username"],
            password=secret,
            client_id=config["mqtt"]["client_id"],
        )
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 1, what="the reading")
    [(when, value)] = readings(conn, device)["pm25"]
    assert value == 8.4
    assert abs(when - time.time()) < 60  # stamped on arrival: ESPHome states have no time


def test_the_things_stack_as_the_guide_sets_it_up(
    services: Services,
    db_url: str,
    conn: psycopg.Connection,
    broker: MosquittoBroker,
    network_server: NetworkServer,
) -> None:
    device, key = register(db_url, conn, "ttn-register")
    guide = source_of("ttn-source")
    assert (guide.profile, guide.mqtt_version, guide.qos, guide.tls) == ("ttn-v3", "3.1.1", 0, True)
    application, _, tenant = (guide.username or "").partition("@")
    uplink = json.loads(EXAMPLES["ttn-uplink"])
    assert uplink["end_device_ids"]["device_id"] == key
    assert uplink["end_device_ids"]["application_ids"]["application_id"] == application
    # the network server of the test in place of TTS's, with its credentials
    here = IngestSource.model_validate(
        {
            **guide.model_dump(),
            "host": "127.0.0.1",
            "port": network_server.tls_port,
            "ca_file": network_server.ca_file,
            "username": NS_USER,
            "password": NS_PASSWORD,
        }
    )
    settings = services.settings(
        mqtt_port=broker.port,
        ingest_metrics_port=0,
        ingest_batch_ms=20,
        ingest_max_past_days=DECADES,
        ingest_sources=(here,),
    )
    topic = f"v3/{application}@{tenant}/devices/{key}/up"
    with running_service(settings, f"guide-{uuid.uuid4().hex[:6]}"):
        publish_as_network_server(network_server, [(topic, EXAMPLES["ttn-uplink"].encode())])
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="2 readings")
    received = utc("2024-01-15T07:00:00") + 0.009585  # nanoseconds are cut to micro
    assert readings(conn, device) == {
        "pm10": [(pytest.approx(received, abs=1e-6), 9.1)],
        "pm25": [(pytest.approx(received, abs=1e-6), 4.2)],
    }
    assert health(conn, device) == [(pytest.approx(received, abs=1e-6), -97.0, 6.5, 1, 3.61, None)]
    assert quarantine(conn) == []


def test_chirpstack_as_the_guide_sets_it_up(
    services: Services,
    db_url: str,
    conn: psycopg.Connection,
    broker: MosquittoBroker,
    network_server: NetworkServer,
) -> None:
    integration = tomllib.loads(EXAMPLES["chirpstack-toml"])["integration"]
    assert integration["enabled"] == ["mqtt"]
    mqtt = integration["mqtt"]
    assert (mqtt["json"], mqtt["qos"], mqtt["clean_session"]) == (True, 1, False)
    assert mqtt["event_topic"] == (
        "application/{{application_id}}/device/{{dev_eui}}/event/{{event}}"
    )
    device, key = register(db_url, conn, "chirpstack-register")
    guide = source_of("chirpstack-source")
    assert (guide.profile, guide.mqtt_version, guide.qos) == ("chirpstack-v4", "5", 1)
    assert guide.password_file is not None
    assert guide.ca_file is not None
    uplink = json.loads(EXAMPLES["chirpstack-uplink"])
    assert uplink["deviceInfo"]["devEui"] == key
    secret = network_server.ca_file.parent / "chirpstack_mqtt"
    secret.write_text(NS_PASSWORD + "\n")
    here = IngestSource.model_validate(
        {
            **guide.model_dump(),
            "host": "127.0.0.1",
            "port": network_server.tls_port,
            "ca_file": network_server.ca_file,
            "username": NS_USER,
            "password_file": secret,
        }
    )
    settings = services.settings(
        mqtt_port=broker.port,
        ingest_metrics_port=0,
        ingest_batch_ms=20,
        ingest_max_past_days=DECADES,
        ingest_sources=(here,),
    )
    application = uplink["deviceInfo"]["applicationId"]
    topic = f"application/{application}/device/{key}/event/up"
    with running_service(settings, f"guide-{uuid.uuid4().hex[:6]}"):
        publish_as_network_server(network_server, [(topic, EXAMPLES["chirpstack-uplink"].encode())])
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="2 readings")
    at = utc("2024-01-15T07:00:15") + 0.775023  # nanoseconds are cut to micro
    assert readings(conn, device) == {
        "pm10": [(pytest.approx(at, abs=1e-6), 11.0)],
        "pm25": [(pytest.approx(at, abs=1e-6), 7.2)],
    }
    assert health(conn, device) == [(pytest.approx(at, abs=1e-6), -36.0, 10.5, 1, 3.55, None)]
