"""The HTTP part of the onboarding guide (docs/onboarding-http.md) cannot rot: every
example in it is a fixture here.  Its ``smartby devices add`` lines register the
devices, its ``curl`` lines run as written (in bash, with the secret and the server's
address filled in) against a real ``smartby api`` and database, and the firmware
settings and document it shows are what that path takes.  (The same convention as the
MQTT guide's test: fenced blocks named ``id=<example>``.)"""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
import yaml

from tests.api.conftest import ServerFactory

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "onboarding-http.md"
_BLOCK = re.compile(r"^```(\w+) id=([\w-]+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: the published address the guide uses, replaced by the test server's
PUBLIC = "https://data.narvik.kommune.no"


def examples() -> dict[str, str]:
    found: dict[str, str] = {}
    for _language, name, body in _BLOCK.findall(GUIDE.read_text(encoding="utf-8")):
        assert name not in found, f"two examples are called {name}"
        found[name] = body
    return found


EXAMPLES = examples()


def test_every_example_is_tested() -> None:
    assert set(EXAMPLES) == {
        "push-register",
        "push-curl",
        "push-answer",
        "push-curl-timeless",
        "push-health",
        "sensor-community-register",
        "sensor-community-config",
        "sensor-community-body",
    }


def register(db_url: str, conn: psycopg.Connection, example: str) -> tuple[str, str]:
    """Run the guide's ``smartby devices add`` (at site torget): (device id, secret)."""
    conn.execute(
        "INSERT INTO sites (id, name, kind, municipality, lon, lat) VALUES ('torget', 'Torget',"
        " 'urban_background', 'Narvik', 17.4254, 68.4379) ON CONFLICT DO NOTHING"
    )
    words = shlex.split(EXAMPLES[example].strip())
    assert words[:3] == ["smartby", "devices", "add"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env["SMARTBY_DATABASE_URL"] = db_url
    result = subprocess.run(
        [sys.executable, "-m", "smartby", *words[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [secret] = re.findall(r"secret \(shown once[^:]*\): (\S+)", result.stdout)
    return words[3], secret


def curl(example: str, secret: str, port: int) -> str:
    """The guide's curl line, as a user pastes it into bash, against the test server."""
    line = EXAMPLES[example].strip()
    assert line.startswith("curl ")
    assert "<secret>" in line
    assert PUBLIC in line
    line = line.replace("<secret>", secret).replace(PUBLIC, f"http://127.0.0.1:{port}")
    result = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def readings(conn: psycopg.Connection, device: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for metric, value in conn.execute(
        "SELECT s.metric, r.value FROM readings r JOIN series s ON s.id = r.series_id"
        " WHERE s.device_id = %s ORDER BY s.metric, r.time",
        (device,),
    ):
        found.setdefault(metric, []).append(value)
    return found


def test_the_push_examples_store_what_the_guide_says(
    api_process: ServerFactory, db_url: str, conn: psycopg.Connection
) -> None:
    device, secret = register(db_url, conn, "push-register")
    server = api_process(db_url)
    answer = curl("push-curl", secret, server.port)
    assert orjson.loads(answer) == orjson.loads(EXAMPLES["push-answer"])
    assert readings(conn, device) == {
        "humidity": [81.0],
        "pm10": [12.3],
        "pm25": [5.1],
        "temperature": [-3.4],
    }
    # the time-less post, sent twice under its Idempotency-Key, is stored once
    for _ in range(2):
        assert orjson.loads(curl("push-curl-timeless", secret, server.port))["stored"] == 2
    assert sorted(readings(conn, device)["pm25"]) == [4.8, 5.1]
    health = orjson.loads(curl("push-health", secret, server.port))
    assert health["data"]["device_id"] == device
    assert health["data"]["rejected"] == []  # the owner's view: nothing went wrong


def test_the_sensor_community_settings_and_document_are_what_the_path_takes(
    api_process: ServerFactory, db_url: str, conn: psycopg.Connection
) -> None:
    device, secret = register(db_url, conn, "sensor-community-register")
    config = yaml.safe_load(EXAMPLES["sensor-community-config"])
    assert config["send_to_own_api"] is True
    assert config["user"] == device
    assert (config["server"], config["port"], config["https"]) == (
        PUBLIC.removeprefix("https://"),
        443,
        True,
    )
    server = api_process(db_url)
    # what the firmware does with those settings (airrohr-firmware.ino, sendData)
    body = EXAMPLES["sensor-community-body"].strip().encode()
    token = base64.b64encode(f"{config['user']}:{secret}".encode()).decode()
    response = httpx.post(
        f"http://127.0.0.1:{server.port}{config['path']}",
        content=body,
        timeout=30,
        headers={
            "Content-Type": "application/json",
            "X-Sensor": device,
            "X-MAC-ID": "esp8266-a4cf12d3e4f5",
            "Authorization": f"Basic {token}",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 5
    stored = readings(conn, device)
    assert stored["pm10"] == [12.3]
    assert stored["pm25"] == [5.1]
    assert stored["temperature"] == [-3.4]
    assert stored["pressure"] == [pytest.approx(1002.3)]
    assert stored["humidity"] == [81.0]
    assert conn.execute("SELECT rssi FROM devices WHERE id = %s", (device,)).fetchone() == (-71,)
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
