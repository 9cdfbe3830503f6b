"""`smartby up` starts PostgreSQL and Mosquitto, answers on both, stops cleanly, keeps data."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from devices.registry import INGEST_USER, DeviceRecord, add_device
from stack.ports import free_port
from tests.fixtures.ingest import wait_for
from tests.fixtures.mqtt import Collector, publish_one
from tests.fixtures.services import make_service_root

READY_LINE = "press Ctrl-C to stop"


class UpProcess:
    """`python -m smartby up` as a user would run it, with its output followed live."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str], simulate: bool = False) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
        env.update({"SMARTBY_DATA_DIR": str(data_dir), **extra_env})
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smartby", "up", *([] if simulate else ["--no-simulate"])],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 90) -> None:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"`smartby up` never printed {text!r}; output so far:\n"
                    + "\n".join(self.output)
                ) from None
            self.output.append(line)
            if text in line:
                return

    def drain(self) -> list[str]:
        """Everything printed so far (without waiting)."""
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return self.output

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code

    @property
    def stack(self) -> dict[str, object]:
        return json.loads((self.data_dir / "stack.json").read_text())


@contextmanager
def listening_socket() -> Iterator[int]:
    """Occupy a port, as another program on the user's machine would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def service_pids(data_dir: Path, supervisor: int) -> dict[str, int]:
    """The postmaster (from its pid file), the broker and the platform's own children
    (from /proc) of this data folder's `smartby up`."""
    pids: dict[str, int] = {}
    pid_file = data_dir / "postgresql" / "data" / "postmaster.pid"
    if pid_file.exists():
        pids["postgres"] = int(pid_file.read_text().splitlines()[0])
    conf = str(data_dir / "mosquitto" / "mosquitto.conf")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if conf in cmdline:
                pids["mosquitto"] = int(entry.name)
            elif "-m smartby ingest" in cmdline:
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if parent == supervisor:
                    pids["ingest"] = int(entry.name)
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = make_service_root("smartby-up-")
    yield root / "data"
    import shutil

    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_up_serves_database_and_broker_stops_cleanly_and_keeps_data(data_dir: Path) -> None:
    with listening_socket() as taken_mqtt_port:
        up = UpProcess(
            data_dir,
            {"SMARTBY_PG_PORT": str(free_port()), "SMARTBY_MQTT_PORT": str(taken_mqtt_port)},
        )
        try:
            up.wait_for(READY_LINE)
            stack = up.stack
            # the taken port was replaced by a free one, and the one in use was printed
            assert stack["mqtt_port"] != taken_mqtt_port
            assert any(f"mqtt://127.0.0.1:{stack['mqtt_port']}" in line for line in up.output)
            # the website's address comes first, and the record holds it and the API's
            up_at = up.output.index("smartby is up:")
            assert up.output[up_at + 1] == f"  website     {stack['web_url']}"
            assert stack["api_url"] == f"{stack['web_url']}v1"
            assert "<html" in httpx.get(str(stack["web_url"]), timeout=10).text

            with psycopg.connect(str(stack["database_url"]), autocommit=True) as conn:
                assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] > 0
                conn.execute(
                    "INSERT INTO sites (id, name, kind, municipality, lon, lat)"
                    " VALUES ('torget', 'Torget', 'urban_background', 'Narvik', 17.43, 68.44)"
                )

            # A device registered while the stack runs can connect at once (the broker
            # reloads its password file), and the stack's ingest worker stores what it
            # publishes; a subscriber with the ingest account sees the same message.
            port = int(str(stack["mqtt_port"]))
            ingest_password = (data_dir / "credentials" / "ingest.password").read_text().strip()
            with psycopg.connect(str(stack["database_url"]), autocommit=True) as conn:
                secret = add_device(conn, DeviceRecord("aq-torget", "torget", "air_quality"))
            collector = Collector(
                port, "smartby/+/telemetry", username=INGEST_USER, password=ingest_password
            )
            try:
                wait_for(
                    lambda: "broker credentials reloaded" in "\n".join(up.drain()),
                    what="the broker reload",
                )
                publish_one(
                    port,
                    "smartby/aq-torget/telemetry",
                    b'{"pm25": 7.5}',
                    username="aq-torget",
                    password=secret,
                )
                message = collector.get()
                assert (message.topic, message.payload) == (
                    "smartby/aq-torget/telemetry",
                    b'{"pm25": 7.5}',
                )
            finally:
                collector.close()
            with psycopg.connect(str(stack["database_url"]), autocommit=True) as conn:
                wait_for(
                    lambda: conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 1,
                    what="the reading stored by the stack's ingest worker",
                )

            # a second `up` on the same data folder is refused, in one line
            second = subprocess.run(
                [sys.executable, "-m", "smartby", "up", "--no-simulate"],
                env={**os.environ, "SMARTBY_DATA_DIR": str(data_dir)},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert second.returncode == 1
            assert re.fullmatch(
                r"smartby: error: smartby is already running from .*\n", second.stderr
            )

            pids = service_pids(data_dir, up.proc.pid)
            assert set(pids) == {"postgres", "mosquitto", "ingest"}
        finally:
            code = up.stop(signal.SIGTERM)
    assert code == 0, "\n".join(up.output)
    assert "stopped" in up.output
    left = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not left, f"processes left behind after stop: {left}"
    assert not (data_dir / "stack.json").exists()

    # A second run keeps the data; Ctrl-C (SIGINT) stops it as cleanly.
    again = UpProcess(
        data_dir, {"SMARTBY_PG_PORT": str(free_port()), "SMARTBY_MQTT_PORT": str(free_port())}
    )
    try:
        again.wait_for(READY_LINE)
        with psycopg.connect(str(again.stack["database_url"])) as conn:
            assert conn.execute("SELECT name FROM sites").fetchall() == [("Torget",)]
        pids = service_pids(data_dir, again.proc.pid)
    finally:
        code = again.stop(signal.SIGINT)
    assert code == 0, "\n".join(again.output)
    assert not [pid for pid in pids.values() if alive(pid)]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "SMARTBY_MOSQUITTO_BINARY",
            "/nonexistent/mosquitto",
            "smartby: error: Mosquitto broker not found at /nonexistent/mosquitto:"
            " run scripts/setup, or install it with `apt-get install mosquitto`",
        ),
        (
            "SMARTBY_PG_BINDIR",
            "/nonexistent/bin",
            "smartby: error: PostgreSQL server not found in /nonexistent/bin (no initdb/postgres):"
            " run scripts/setup, or install it with `apt-get install postgresql`",
        ),
    ],
)
def test_a_missing_binary_gives_one_clear_line_and_a_non_zero_exit(
    data_dir: Path, variable: str, value: str, message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    result = subprocess.run(
        [sys.executable, "-m", "smartby", "up"],
        env={**env, "SMARTBY_DATA_DIR": str(data_dir), variable: value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == message + "\n"
    assert not (data_dir / "postgresql").exists(), "nothing should start when a binary is missing"


@pytest.mark.slow
def test_up_shows_data_from_every_catalogue_device_within_a_minute(data_dir: Path) -> None:
    """The default `smartby up`: the simulated Narvik devices log in with their own
    secrets and every one of them has readings stored within a minute; no secret
    appears in the output or the logs."""
    from devices.catalogue import load_catalogue, narvik_catalogue_path

    expected = {d.id for d in load_catalogue(narvik_catalogue_path()).devices}
    up = UpProcess(
        data_dir,
        {"SMARTBY_PG_PORT": str(free_port()), "SMARTBY_MQTT_PORT": str(free_port())},
        simulate=True,
    )
    try:
        up.wait_for(READY_LINE)
        started = time.monotonic()
        with psycopg.connect(str(up.stack["database_url"]), autocommit=True) as conn:

            def reporting() -> set[str]:
                return {
                    device
                    for (device,) in conn.execute(
                        "SELECT DISTINCT s.device_id FROM readings r"
                        " JOIN series s ON s.id = r.series_id"
                    )
                }

            wait_for(
                lambda: reporting() == expected,
                timeout=60,
                what="readings from every catalogue device",
            )
            assert time.monotonic() - started < 60
            assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
        # the open data API of the same stack serves them
        api = next(line for line in up.output if line.strip().startswith("API "))
        base = api.split()[1]
        latest = httpx.get(f"{base}/latest", timeout=10)
        assert latest.status_code == 200, latest.text
        assert latest.headers["x-license"] == "NLOD-2.0"
        assert {row["device_id"] for row in latest.json()["data"]} == expected
        secrets = json.loads((data_dir / "credentials" / "devices.json").read_text())
        assert set(secrets) == expected
    finally:
        code = up.stop(signal.SIGTERM)
    assert code == 0, "\n".join(up.output)
    logs = "\n".join(up.output) + "".join(
        p.read_text(errors="replace") for p in (data_dir / "logs").glob("*.log")
    )
    leaked = [device for device, secret in secrets.items() if secret in logs]
    assert not leaked, f"secrets of {leaked} appear in the output or logs"
