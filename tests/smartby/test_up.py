"""`smartby up` starts PostgreSQL and Mosquitto, answers on both, stops cleanly, keeps data."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from core.broker import ClientTls
from stack.ports import free_port
from tests.fixtures.ingest import wait_for
from tests.fixtures.mqtt import publish_one
from tests.fixtures.secure import close, login, subscribe
from tests.fixtures.up import READY_LINE, UpProcess, alive


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


def add_with_the_cli(data_dir: Path, device_id: str) -> str:
    """`smartby devices add` beside a running `up`: it finds the stack's database and
    broker, and returns the secret it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env["SMARTBY_DATA_DIR"] = str(data_dir)
    added = subprocess.run(
        [
            *(sys.executable, "-m", "smartby", "devices", "add", device_id),
            *("--site", "torget", "--kind", "air_quality"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    assert "broker updated" in added.stderr, added.stderr
    return added.stdout.rsplit(": ", 1)[1].strip()


def assert_tls_for_devices(up: UpProcess, secret: str) -> None:
    """The device publishes over the TLS listener with the CA `up` printed, and
    `smartby simulate` with SMARTBY_MQTT_TLS=true beside `up` finds the listener and the
    CA itself; the stack's worker stores both."""
    stack = up.stack
    ca_file = up.data_dir / "tls" / "ca.crt"
    tls_port = int(str(stack["mqtt_tls_port"]))
    assert stack["mqtt_ca_file"] == str(ca_file)
    assert any(
        line.startswith("  MQTT TLS    mqtts://")
        and f":{tls_port} " in line
        and line.endswith(f"CA file {ca_file})")
        for line in up.output
    ), up.output
    publish_one(
        tls_port,
        "smartby/aq-torget/telemetry",
        b'{"pm25": 8.5}',
        username="aq-torget",
        password=secret,
        client_id="aq-torget",
        tls=ClientTls(ca_file=str(ca_file)),
    )
    url = str(stack["database_url"])
    with psycopg.connect(url, autocommit=True) as conn:
        wait_for(
            lambda: conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 2,
            what="the reading sent over TLS",
        )
    # the simulated twin of aq-torget, with the secret the registry gave it
    store = up.data_dir / "credentials" / "devices.json"
    store.write_text(json.dumps({"aq-torget": secret}))
    store.chmod(0o600)
    simulated = subprocess.run(
        [sys.executable, "-m", "smartby", "simulate", "--device", "aq-torget", "--backfill", "10m"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")},
            "SMARTBY_DATA_DIR": str(up.data_dir),
            "SMARTBY_MQTT_TLS": "true",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert simulated.returncode == 0, simulated.stderr
    assert f"simulating 1 devices on 127.0.0.1:{tls_port} over TLS" in simulated.stderr
    sent = re.search(r"backfill: ([\d,]+) messages", simulated.stderr)
    assert sent is not None, simulated.stderr
    messages = int(sent.group(1).replace(",", ""))
    assert messages >= 9  # one a minute
    with psycopg.connect(url, autocommit=True) as conn:
        wait_for(
            lambda: (
                conn.execute("SELECT count(DISTINCT time) FROM readings").fetchone()[0]
                == 2 + messages
            ),
            what="the simulated readings sent over TLS",
        )


def assert_public_stream(
    stack: dict[str, object], device: tuple[str, str], public_port: int
) -> None:
    """The stack's API publishes each new reading as a SensorThings Observation on the
    platform's broker with the ``smartby-sta-publisher`` account (no other may
    publish ``v1.1/#``); the bridge carries it to the public broker, where an
    anonymous reader gets it.  The device publishes until one arrives: the API's
    publisher and the bridge connect in the background, after the stack is up."""
    device_id, secret = device
    reader = login(public_port, None, None)
    assert reader.client is not None
    got: queue.Queue[tuple[str, bytes]] = queue.Queue()
    reader.client.on_message = lambda _c, _u, message: got.put((message.topic, message.payload))
    assert subscribe(reader.client, "v1.1/#") == [1]
    port = int(str(stack["mqtt_port"]))
    try:

        def delivered() -> bool:
            publish_one(
                port,
                f"smartby/{device_id}/telemetry",
                b'{"pm25": 7.5}',
                username=device_id,
                password=secret,
                client_id=device_id,
            )
            try:
                topic, payload = got.get(timeout=0.5)
            except queue.Empty:
                return False
            observation = json.loads(payload)
            assert re.fullmatch(r"v1\.1/Datastreams\(\d+\)/Observations", topic), topic
            # its links lead to the stack's API, on whatever port it got
            assert observation["@iot.selfLink"].startswith(f"{stack['web_url']}sta/v1.1/")
            return observation["result"] == 7.5

        wait_for(delivered, timeout=30, what="an Observation at the public broker")
    finally:
        close(reader.client)
    # the service root says where to subscribe (OGC 18-088 §14.2)
    root = httpx.get(f"{stack['web_url']}sta/v1.1", timeout=10).json()["serverSettings"]
    receive = next(c for c in root["conformance"] if "receive-updates-via-mqtt" in c)
    assert root[receive]["endpoints"] == [f"mqtt://127.0.0.1:{public_port}"]


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
            # the taken port was replaced by a free one, loudly, and the one in use printed
            assert stack["mqtt_port"] != taken_mqtt_port
            assert (
                f"WARNING: port {taken_mqtt_port} (SMARTBY_MQTT_PORT) is held by another"
                f" program, so MQTT listens on port {stack['mqtt_port']} instead. Devices"
                f" configured with port {taken_mqtt_port} must be changed to"
                f" {stack['mqtt_port']}." in up.output
            )
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

            # A device registered while the stack runs can connect at once (the command
            # gives the broker its account and secret), and the stack's ingest worker
            # stores what it publishes.
            port = int(str(stack["mqtt_port"]))
            secret = add_with_the_cli(data_dir, "aq-torget")
            publish_one(
                port,
                "smartby/aq-torget/telemetry",
                b'{"pm25": 7.5}',
                username="aq-torget",
                password=secret,
                client_id="aq-torget",
            )
            with psycopg.connect(str(stack["database_url"]), autocommit=True) as conn:
                wait_for(
                    lambda: conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 1,
                    what="the reading stored by the stack's ingest worker",
                )
            # ... and over TLS, trusting the CA whose file `up` printed
            assert_tls_for_devices(up, secret)

            # the API publishes the device's readings as SensorThings Observations, and
            # anonymous readers get them on the public broker
            assert_public_stream(stack, ("aq-torget", secret), int(str(stack["mqtt_public_port"])))

            # `smartby broker sync` beside it finds it agreeing: nothing to change
            synced = subprocess.run(
                [sys.executable, "-m", "smartby", "broker", "sync"],
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")},
                    "SMARTBY_DATA_DIR": str(data_dir),
                },
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert synced.returncode == 0, synced.stderr
            assert synced.stdout.splitlines()[-1].endswith("(0 change(s))"), synced.stdout

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
    secrets and every one of them has readings stored within a minute (but a device
    the simulation has in a dropout, its fault, for the whole of the two hours of
    history `up` sends); no secret appears in the output or the logs."""
    from devices.catalogue import load_catalogue, narvik_catalogue_path
    from devices.simulation.payloads import count_messages

    devices = load_catalogue(narvik_catalogue_path()).devices
    every = {d.id for d in devices}
    up = UpProcess(
        data_dir,
        {"SMARTBY_PG_PORT": str(free_port()), "SMARTBY_MQTT_PORT": str(free_port())},
        simulate=True,
    )
    try:
        up.wait_for(READY_LINE)
        started = time.monotonic()
        # `smartby simulate --history 2h` (seed 0) began before the ready line
        now = time.time()
        expected = {d.id for d in devices if count_messages([d], now - 7000, now - 60, seed=0)}
        silent = every - expected
        assert all(d.fault == "dropout" for d in devices if d.id in silent), silent
        with psycopg.connect(str(up.stack["database_url"]), autocommit=True) as conn:

            def reporting() -> set[str]:
                return {
                    device
                    for (device,) in conn.execute(
                        "SELECT DISTINCT s.device_id FROM readings r"
                        " JOIN series s ON s.id = r.series_id"
                    )
                }

            deadline = started + 60
            while not (seen := reporting()) >= expected and time.monotonic() < deadline:
                time.sleep(0.2)
            assert seen >= expected, f"no readings within a minute from {sorted(expected - seen)}"
            assert seen <= every
            assert time.monotonic() - started < 60
            assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
            stored = reporting()
        # the open data API of the same stack serves them
        api = next(line for line in up.output if line.strip().startswith("API "))
        base = api.split()[1]
        latest = httpx.get(f"{base}/latest", timeout=10)
        assert latest.status_code == 200, latest.text
        assert latest.headers["x-license"] == "NLOD-2.0"
        assert {row["device_id"] for row in latest.json()["data"]} >= stored
        secrets = json.loads((data_dir / "credentials" / "devices.json").read_text())
        assert set(secrets) == every
    finally:
        code = up.stop(signal.SIGTERM)
    assert code == 0, "\n".join(up.output)
    logs = "\n".join(up.output) + "".join(
        p.read_text(errors="replace") for p in (data_dir / "logs").glob("*.log")
    )
    leaked = [device for device, secret in secrets.items() if secret in logs]
    assert not leaked, f"secrets of {leaked} appear in the output or logs"


def explicit_ports() -> dict[str, str]:
    return {
        "SMARTBY_PG_PORT": str(free_port()),
        "SMARTBY_MQTT_PORT": str(free_port()),
        "SMARTBY_MQTT_TLS_PORT": str(free_port()),
        "SMARTBY_API_PORT": str(free_port()),
        "SMARTBY_INGEST_METRICS_PORT": str(free_port()),
    }


def ports_of(up: UpProcess) -> dict[str, int]:
    return {k: int(v) for k, v in json.loads((up.data_dir / "ports.json").read_text()).items()}


def time_wait_ports() -> set[int]:
    """Local ports of IPv4 TCP connections in TIME_WAIT (state 06 in /proc/net/tcp)."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "06":
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def assert_private(data_dir: Path) -> None:
    """No file in the data folder is group- or world-writable or world-readable: files
    are 0600 or 0640, folders at most traversable by others (0711, for the postgres
    user when we are root)."""
    loose = []
    for root, dirs, files in os.walk(data_dir):
        for name in [*dirs, *files]:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            allowed = 0o711 if stat.S_ISDIR(mode) else 0o640
            if stat.S_IMODE(mode) & ~allowed & ~0o100:
                loose.append(f"{stat.filemode(mode)} {path}")
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & ~0o711:
        loose.append(f"{oct(mode)} {data_dir}")
    assert not loose, "files others can read or write:\n" + "\n".join(loose)


@pytest.mark.slow
def test_a_restart_listens_on_the_same_ports_through_time_wait(data_dir: Path) -> None:
    """`up`, publish, stop, and `up` again at once: the next run takes the ports recorded
    in ports.json, though the connections the last one closed are still in TIME_WAIT
    on them (a port is tested by binding it with SO_REUSEADDR, as the servers do).
    Everything in the data folder is private to its owner."""
    first = UpProcess(data_dir, explicit_ports())
    try:
        first.wait_for(READY_LINE)
        ports = ports_of(first)
        stack = first.stack
        url = str(stack["database_url"])
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO sites (id, name, kind, municipality, lon, lat)"
                " VALUES ('torget', 'Torget', 'urban_background', 'Narvik', 17.43, 68.44)"
            )
        secret = add_with_the_cli(data_dir, "aq-torget")
        publish_one(
            ports["mqtt"],
            "smartby/aq-torget/telemetry",
            b'{"pm25": 7.5}',
            username="aq-torget",
            password=secret,
            client_id="aq-torget",
        )
        # connections the servers will close when they stop: theirs go to TIME_WAIT
        device = login(ports["mqtt"], "aq-torget", secret, client_id="aq-torget").client
        assert device is not None
        database = psycopg.connect(url, autocommit=True)
        api = httpx.Client(base_url=f"http://127.0.0.1:{ports['api']}")
        assert api.get("/v1").status_code == 200
    finally:
        assert first.stop(signal.SIGTERM) == 0, "\n".join(first.output)
    device.loop_stop()
    database.close()
    api.close()
    lingering = time_wait_ports() & {ports["mqtt"], ports["postgresql"], ports["api"]}
    assert ports["mqtt"] in lingering, "no TIME_WAIT on the broker's port: nothing was tested"

    again = UpProcess(data_dir, {})  # no ports configured: the recorded ones
    try:
        again.wait_for(READY_LINE)
        assert ports_of(again) == ports
        assert again.stack["mqtt_port"] == ports["mqtt"]
        assert not [line for line in again.output if "WARNING" in line]
        with psycopg.connect(str(again.stack["database_url"])) as conn:
            assert conn.execute("SELECT count(*) FROM readings").fetchone() == (1,)
        assert_private(data_dir)
        assert (data_dir / "mosquitto" / "mosquitto.db").exists()  # checked above, too
    finally:
        assert again.stop(signal.SIGTERM) == 0, "\n".join(again.output)


@pytest.mark.slow
def test_a_port_another_program_holds_is_replaced_with_a_warning(data_dir: Path) -> None:
    first = UpProcess(data_dir, explicit_ports())
    try:
        first.wait_for(READY_LINE)
        ports = ports_of(first)
    finally:
        assert first.stop(signal.SIGTERM) == 0, "\n".join(first.output)
    with socket.socket() as intruder:
        # another server, which (like ours) can bind through the last run's TIME_WAIT
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        intruder.bind(("127.0.0.1", ports["mqtt"]))
        intruder.listen()
        again = UpProcess(data_dir, {})
        try:
            again.wait_for(READY_LINE)
            moved = ports_of(again)
        finally:
            assert again.stop(signal.SIGTERM) == 0, "\n".join(again.output)
    assert moved["mqtt"] != ports["mqtt"]
    assert {k: v for k, v in moved.items() if k != "mqtt"} == {
        k: v for k, v in ports.items() if k != "mqtt"
    }
    warnings = [line for line in again.output if line.startswith("WARNING")]
    assert warnings == [
        f"WARNING: port {ports['mqtt']} (used last time, ports.json) is held by another"
        f" program, so MQTT listens on port {moved['mqtt']} instead. Devices configured with"
        f" port {ports['mqtt']} must be changed to {moved['mqtt']}."
    ]


@pytest.mark.slow
def test_after_a_kill_9_of_up_the_next_up_stops_what_was_left(data_dir: Path) -> None:
    """A killed supervisor's services get SIGTERM from the kernel; PostgreSQL's smart
    shutdown then waits for its clients, and one (here: ours) may hold it up.  The next
    `up` finds it through stack.json, stops it (fast shutdown) and takes its port."""
    env = explicit_ports()
    first = UpProcess(data_dir, env)
    second: UpProcess | None = None
    try:
        first.wait_for(READY_LINE)
        old = {name: pid for name, (pid, _start) in first.stack["processes"].items()}  # type: ignore[union-attr]
        with psycopg.connect(str(first.stack["database_url"]), autocommit=True) as holder:
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            wait_for(lambda: not alive(old["ingest"]), what="the worker to stop on its own")
            assert alive(old["PostgreSQL"]), "PostgreSQL did not wait for its client"
            second = UpProcess(data_dir, env)
            second.wait_for(READY_LINE)
            assert _dropped(holder), "our connection outlived the old PostgreSQL"
        assert (
            f"PostgreSQL (pid {old['PostgreSQL']}) of an earlier `smartby up` is still running;"
            " stopping it first" in second.output
        )
        assert not [name for name, pid in old.items() if alive(pid)]
        assert ports_of(second)["postgresql"] == int(env["SMARTBY_PG_PORT"])
    finally:
        if second is not None:
            assert second.stop(signal.SIGTERM) == 0, "\n".join(second.output)


def _dropped(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


@pytest.mark.slow
def test_a_service_that_keeps_failing_stops_everything(data_dir: Path) -> None:
    """Killed five times within a minute (each time as soon as it is back), the API is
    given up: `up` says so, stops everything and exits 1."""
    up = UpProcess(data_dir, explicit_ports())
    try:
        up.wait_for(READY_LINE)
        pids = {name: pid for name, (pid, _start) in up.stack["processes"].items()}  # type: ignore[union-attr]
        killed: list[int] = []
        while up.proc.poll() is None and len(killed) < 10:
            try:
                pid = up.pid_of("api")
            except (OSError, ValueError, KeyError):
                break  # the record is gone: it stopped
            if pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)
        code = up.proc.wait(60)
    finally:
        up.stop(signal.SIGTERM)
    assert code == 1, "\n".join(up.output)
    assert len(killed) == 5
    failures = [line for line in up.output if line.startswith("api failed (killed by SIGKILL)")]
    assert len(failures) == 5
    assert ": 5 failures within 60 s, giving up and stopping smartby." in failures[-1]
    assert up.output[-1] == "stopped"
    assert not [name for name, pid in pids.items() if alive(pid)]
