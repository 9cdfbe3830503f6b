"""What the benchmarks share: the stack they start, how they publish, how they time.

No benchmark imports another; each imports this module.

* Services: a private PostgreSQL (durable, TimescaleDB when installed) and Mosquitto on
  free ports, migrated, with `DEVICES` registered devices; and `Worker`, one
  ``smartby ingest`` process as deployed.
* Publishing: a lean MQTT 3.1.1 QoS 1 publisher for load generation, and the messages
  the ingest benchmarks send.
* Narvik: `load_month`, the catalogue and days of its simulated history loaded
  through ingest's own pipeline with the indicators computed, for the read benchmarks
  (API, website).
* Timing: polling for a condition, the commit time of the last readings
  (``track_commit_timestamp``), the best of a few rounds, and CPU seconds of processes
  from ``/proc``.

Why a publisher of our own: paho's tops out near 7-10k QoS 1 messages/s per process
here (it rescans its outgoing queue on every PUBACK), which would make the benchmark
measure the load generator rather than ingest, on a machine whose two cores the broker, the
worker and PostgreSQL already share.  This one writes pre-encoded PUBLISH packets
(MQTT 3.1.1 §3.3) in large chunks and counts PUBACKs (§3.4) on a reader thread,
keeping at most ``window`` unacknowledged, so it costs little CPU per message.
Packet ids cycle through 1..65535; the window keeps any id from being reused while
still unacknowledged (§2.3.1).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import orjson
import psycopg

from db.migrate import migrate
from stack.mosquitto import MosquittoBroker
from stack.ports import free_port
from stack.postgres import PostgresCluster

T = TypeVar("T")

DEVICES = 100
PACK_METRICS = (
    "pm25",
    "pm10",
    "no2",
    "o3",
    "so2",
    "temperature",
    "humidity",
    "pressure",
    "power",
    "speed",
)


def say(text: str, end: str = "\n") -> None:
    print(text, file=sys.stderr, end=end, flush=True)


# ------------------------------------------------------------------------- services


@dataclass
class Stack:
    root: Path
    cluster: PostgresCluster
    broker: MosquittoBroker

    @property
    def url(self) -> str:
        return self.cluster.url("smartby")


@contextmanager
def scratch_database(name: str) -> Iterator[tuple[Path, str]]:
    """A throw-away PostgreSQL (no fsync: what is measured is smartby, not the disk)
    with an empty ``smartby`` database: its folder (for logs beside it) and URL.
    Removed afterwards, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix=f"smartby-bench-{name}-"))
    root.chmod(0o755)
    cluster = PostgresCluster(root / "pg", port=free_port(), durable=False)
    try:
        say(f"PostgreSQL in {root} (TimescaleDB {'on' if cluster.with_timescaledb else 'off'})")
        cluster.start()
        cluster.ensure_database("smartby")
        yield root, cluster.url("smartby")
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def start_stack() -> Stack:
    root = Path(tempfile.mkdtemp(prefix="smartby-bench-"))
    root.chmod(0o755)
    cluster = PostgresCluster(
        root / "pg",
        port=free_port(),
        durable=True,
        extra_settings=["track_commit_timestamp = on", "max_wal_size = '4GB'"],
    )
    broker = MosquittoBroker(root / "mq", port=free_port())
    cluster.start()
    broker.start()
    with psycopg.connect(cluster.url("smartby"), autocommit=True) as conn:
        migrate(conn)
        for i in range(DEVICES):
            conn.execute(
                "INSERT INTO sites (id, name, kind, municipality, lon, lat)"
                " VALUES (%s, %s, 'roadside', 'Narvik', 17.4, 68.4)",
                (f"s{i}", f"Site {i}"),
            )
            conn.execute(
                "INSERT INTO devices (id, site_id, kind) VALUES (%s, %s, 'air_quality')",
                (f"d{i}", f"s{i}"),
            )
    return Stack(root, cluster, broker)


def stop_stack(stack: Stack) -> None:
    stack.broker.stop()
    stack.cluster.stop()
    shutil.rmtree(stack.root, ignore_errors=True)


class Worker:
    """One `smartby ingest` process, as deployed; with ``code``, the smartby of that
    folder (another commit's, for an A/B in one run) instead of this one."""

    def __init__(self, stack: Stack, prefix: str, client_id: str, code: Path | None = None) -> None:
        self.metrics_port = free_port()
        # the caller's SMARTBY_INGEST_* tuning applies; nothing else of theirs does
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SMARTBY_") or k.startswith("SMARTBY_INGEST_")
        }
        env.update(
            {
                "SMARTBY_DATABASE_URL": stack.url,
                "SMARTBY_MQTT_PORT": str(stack.broker.port),
                "SMARTBY_MQTT_TOPIC_PREFIX": prefix,
                "SMARTBY_INGEST_METRICS_PORT": str(self.metrics_port),
            }
        )
        self.log = stack.root / f"worker-{client_id}-{uuid.uuid4().hex[:6]}.log"
        self.out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        if code is not None:
            env["PYTHONPATH"] = str(code)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smartby", "ingest", "--client-id", client_id],
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            cwd=code,
        )
        deadline = time.monotonic() + 60
        while "consuming from" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.out.close()


def code_of(commit: str, folder: Path) -> Path | None:
    """The shipped packages of ``commit`` of this repository, extracted into ``folder``
    (to run that version's worker beside this one); None without git or the commit."""
    root = Path(__file__).resolve().parents[1]
    packages = ["core", "db", "stack", "ingest", "api", "devices", "dashboards", "web", "smartby"]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", commit, *packages],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return folder


#: Run in a child process with one version's packages first on the path: the seconds
#: `BatchPreparer.prepare` takes per message (the least of argv[4] passes, each with a
#: fresh preparer and a warm registry) for the messages pickled at argv[2].  Only names both
#: versions have are used, so that the same probe measures either.
PREPARE_PROBE = """
import pickle, sys, time
from core.settings import Settings
from ingest.pipeline import BatchPreparer, Message
from ingest.writer import DatabaseRegistry
url, path, prefix, passes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(path, "rb") as f:
    pairs = pickle.load(f)
settings = Settings(env="test", database_url=url, mqtt_topic_prefix=prefix)
registry = DatabaseRegistry(url)
registry.load()
now = time.time()
messages = [Message(topic, payload, received=now) for topic, payload in pairs]
best = float("inf")
for _ in range(passes):
    preparer = BatchPreparer.from_settings(registry, settings)
    started = time.process_time()
    for i in range(0, len(messages), 5000):
        preparer.prepare(messages[i : i + 5000])
    best = min(best, time.process_time() - started)
print(best / len(messages))
"""


def prepare_seconds(
    url: str,
    messages: list[tuple[str, bytes]],
    prefix: str,
    code: Path | None,
    folder: Path,
    passes: int = 8,
) -> float:
    """CPU seconds per message of the preparer of ``code`` (None: this version)."""
    import pickle

    path = folder / f"probe-{uuid.uuid4().hex[:6]}.pickle"
    path.write_bytes(pickle.dumps(messages))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    try:
        out = subprocess.run(
            [sys.executable, "-c", PREPARE_PROBE, url, str(path), prefix, str(passes)],
            env=env,
            cwd=code,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        path.unlink(missing_ok=True)
    return float(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------- publishing


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    cid = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02" + struct.pack("!H", keepalive)  # clean session
    payload = struct.pack("!H", len(cid)) + cid
    body = variable + payload
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH, QoS 1, no retain."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + struct.pack("!H", packet_id) + payload
    return b"\x32" + _remaining_length(len(body)) + body


class Publisher:
    """One connection publishing a stream at QoS 1."""

    def __init__(
        self, port: int, client_id: str, host: str = "127.0.0.1", window: int = 20_000
    ) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(client_id))
        connack = self._recv_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: {connack!r}")
        self.window = window
        self.sent = 0
        self.acked = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _read_acks(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            whole = len(pending) // 4  # every PUBACK is 4 bytes: 0x40 0x02 id id
            pending = pending[whole * 4 :]
            with self._cond:
                self.acked += whole
                self._cond.notify_all()

    def send(self, packets: Sequence[bytes], chunk: int = 500) -> None:
        """Send pre-encoded packets, never more than ``window`` unacknowledged."""
        for start in range(0, len(packets), chunk):
            part = packets[start : start + chunk]
            with self._cond:
                while self.sent + len(part) - self.acked > self.window:
                    self._cond.wait()
            self.sock.sendall(b"".join(part))
            self.sent += len(part)

    def wait_acked(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked < self.sent:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{self.sent - self.acked} PUBACKs missing")

    def close(self) -> None:
        self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def encode_stream(messages: Iterable[tuple[str, bytes]]) -> list[bytes]:
    return [
        publish_packet(topic, payload, (i % 65535) + 1)
        for i, (topic, payload) in enumerate(messages)
    ]


def paced_publish(
    port: int,
    client_id: str,
    rate: float,
    count: int,
    make: Callable[[int, float], tuple[str, bytes]],
    chunk: int = 50,
) -> None:
    """Publish ``count`` messages at ``rate``/s, each made at its send time (so it can
    carry its own publish timestamp), in small chunks to keep the pace smooth."""
    publisher = Publisher(port, client_id)
    try:
        start = time.perf_counter()
        sent = 0
        while sent < count:
            due = start + sent / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            n = min(chunk, count - sent)
            now = time.time()
            packets = [
                publish_packet(*make(sent + i, now), ((sent + i) % 65535) + 1) for i in range(n)
            ]
            publisher.send(packets, chunk=n)
            sent += n
        publisher.wait_acked()
    finally:
        publisher.close()


def single_messages(prefix: str, n: int, t0: float) -> list[tuple[str, bytes]]:
    return [
        (
            f"{prefix}/d{i % DEVICES}/telemetry",
            orjson.dumps({"time": t0 + i / 1000, "pm25": float(i % 300)}),
        )
        for i in range(n)
    ]


def pack_messages(prefix: str, n: int, t0: float) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        device = f"d{i % DEVICES}"
        records: list[dict[str, object]] = [
            {
                "bn": f"urn:dev:{device}:",
                "bt": t0 + i / 100,
                "n": PACK_METRICS[0],
                "u": "ug/m3",
                "v": float(i % 80),
            }
        ]
        records += [{"n": m, "v": float(10 + k)} for k, m in enumerate(PACK_METRICS[1:])]
        out.append((f"{prefix}/{device}/telemetry", orjson.dumps(records)))
    return out


def _publisher_main(
    port: int, packets: list[bytes], ready: mp.Event, go: mp.Event, started: mp.Queue
) -> None:  # type: ignore[type-arg]
    publisher = Publisher(port, f"bench-pub-{uuid.uuid4().hex[:8]}")
    ready.set()
    go.wait()
    started.put(time.time())
    publisher.send(packets)
    publisher.wait_acked()
    publisher.close()


def publish_parallel(port: int, messages: list[tuple[str, bytes]], processes: int) -> float:
    """Publish from separate processes, started together; return the first publish time."""
    ctx = mp.get_context("fork")
    go = ctx.Event()
    started: mp.Queue[float] = ctx.Queue()  # type: ignore[type-arg]
    procs, readies = [], []
    for p in range(processes):
        packets = encode_stream(messages[p::processes])
        ready = ctx.Event()
        proc = ctx.Process(target=_publisher_main, args=(port, packets, ready, go, started))
        proc.start()
        procs.append(proc)
        readies.append(ready)
    for ready in readies:
        ready.wait(60)
    go.set()
    first = min(started.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"publisher exited with {proc.exitcode}")
    return first


# -------------------------------------------------------------------------- timing


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def last_commit(conn: psycopg.Connection, series: str) -> float:
    """Epoch of the latest commit holding rows of the given devices' series."""
    row = conn.execute(
        """SELECT extract(epoch FROM max(pg_xact_commit_timestamp(r.xmin)))::float8
           FROM readings r JOIN series s ON s.id = r.series_id WHERE s.device_id LIKE %s""",
        (series,),
    ).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError("no committed readings found")
    return float(row[0])


def best_of(rounds: int, run: Callable[[], T]) -> tuple[float, T]:
    """The shortest wall time of ``rounds`` calls, and the last call's result."""
    best = math.inf
    result: T | None = None
    for _ in range(max(rounds, 1)):
        result = None  # let the previous round's result go before the next is built
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str]:
    """/proc/<pid>/stat from field 3 (state) on; proc(5) numbers fields from 1."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_cpu(pid: int, *, reaped_children: bool = False) -> float:
    """utime + stime (fields 14, 15), optionally + cutime + cstime (16, 17), in seconds."""
    f = _stat(pid)
    ticks = int(f[11]) + int(f[12])
    if reaped_children:
        ticks += int(f[13]) + int(f[14])
    return ticks / _TICKS


def tree_cpu(parent: int) -> float:
    """A server's CPU: its own, its live children's, and its exited (reaped) children's —
    PostgreSQL's backends and background workers are children of the postmaster."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            f = _stat(entry.name)
        except OSError:  # gone meanwhile
            continue
        if int(f[1]) == parent:
            total += (int(f[11]) + int(f[12])) / _TICKS
    return total + process_cpu(parent, reaped_children=True)


# A small launcher between the caller and the measured child.  Linux records the
# high-water mark of the memory a process leaves at exec(2) in the maxrss that
# wait4(2) reports (fs/exec.c: exec_mmap), and Python spawns by vfork, whose child
# leaves the *parent's* memory at exec: a child of a large process reports at least
# the parent's peak.  The launcher is small, so its child's ru_maxrss is the child's.
_LAUNCHER = """
import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - started
print(f"child-peak-rss-kib={usage.ru_maxrss} seconds={seconds}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Measured:
    """A finished child process: how it ended, what it said, its peak resident set."""

    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    seconds: float


def measure_process(argv: Sequence[str], env: dict[str, str], timeout: float = 600) -> Measured:
    """Run ``argv`` to its end and measure its own peak RSS (``ru_maxrss`` from
    wait4(2), in a small launcher: see `_LAUNCHER`) and wall time."""
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = done.stderr.rstrip("\n").split("\n")
    last = lines[-1] if lines else ""
    if not last.startswith("child-peak-rss-kib="):
        raise RuntimeError(f"the launcher did not report: {done.stderr[-2000:]}")
    fields = dict(part.split("=", 1) for part in last.split())
    return Measured(
        returncode=done.returncode,
        stdout=done.stdout,
        stderr="\n".join(lines[:-1]),
        peak_rss_mb=int(fields["child-peak-rss-kib"]) / 1024,
        seconds=float(fields["seconds"]),
    )


def cpu_snapshot(stack: Stack, worker: Worker) -> tuple[float, float, float]:
    """CPU seconds so far of the worker, PostgreSQL (all its processes) and Mosquitto."""
    assert stack.cluster.proc is not None
    assert stack.broker.proc is not None
    return (
        process_cpu(worker.proc.pid),
        tree_cpu(stack.cluster.proc.pid),
        process_cpu(stack.broker.proc.pid),
    )


# ------------------------------------------------------------------------- Narvik


def bench_settings(url: str, port: int = 0):
    from core.settings import Settings

    return Settings(
        env="test",
        database_url=url,
        api_port=port,
        # the benchmark measures the API, not the limiter refusing it
        api_rate_limit="1000000000/minute",
        indicators_interval_s=0,
    )


def load_month(url: str, days: float) -> tuple[float, float]:
    """Narvik's catalogue and ``days`` of its simulated history up to the last whole
    hour, indicators included; returns (start, end) epoch seconds."""
    from db.indicators import update_pending
    from devices.catalogue import load_catalogue, narvik_catalogue_path
    from devices.provision import import_catalogue
    from smartby.load import LoadReport, load_simulation

    catalogue = load_catalogue(narvik_catalogue_path())
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        import_catalogue(conn, catalogue)
    end = float(int(time.time()) // 3600 * 3600)
    start = end - days * 86400
    settings = bench_settings(url)
    started = time.monotonic()

    def show(sent: float, report: LoadReport) -> None:
        share = (sent - start) / (end - start)
        rate = report.readings / max(time.monotonic() - started, 1e-6)
        say(
            f"\r  loading {days:g} days of Narvik [{'#' * int(share * 30):30}] {share:4.0%}"
            f" {report.readings:,} readings, {rate:,.0f}/s",
            end="",
        )

    report = load_simulation(settings, url, catalogue.devices, start, end, seed=7, progress=show)
    say(f"\n  {report.readings:,} readings in {time.monotonic() - started:.0f} s; indicators…")
    indicators_started = time.monotonic()
    with psycopg.connect(url) as conn:
        days_done = update_pending(conn, settings)
    say(f"  indicators for {len(days_done)} days in {time.monotonic() - indicators_started:.1f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return start, end


# ---------------------------------------------------------------------- a busy day

#: what a busy site's devices measure, by device kind
BUSY_METRICS: dict[str, tuple[str, ...]] = {
    "air_quality": ("pm25", "pm10", "no2", "o3"),
    "energy": ("energy", "power"),
    "traffic": ("vehicle_count", "heavy_vehicle_count", "speed"),
}
#: how often each of their devices reports, in seconds; air quality is set by the
#: reading count instead (two instruments reporting as fast as it takes)
BUSY_INTERVAL_S: dict[str, float] = {"energy": 1.0, "traffic": 60.0}
_BUSY_BLOCK = 250_000


def _busy_layout(kind: str, readings: int, day_s: float) -> tuple[int, float]:
    """How many devices, each reporting every how many seconds, make ``readings`` in a
    day of ``day_s`` seconds at one site."""
    per_time = len(BUSY_METRICS[kind])
    if kind == "air_quality":
        devices = 2
        return devices, day_s * devices * per_time / readings
    interval = BUSY_INTERVAL_S[kind]
    return max(1, round(readings / (per_time * day_s / interval))), interval


def load_busy_day(
    url: str, kind: str, day_start: datetime, readings: int, *, site: str | None = None
) -> int:
    """One site whose devices of ``kind`` write about ``readings`` readings in the local
    day from ``day_start`` (a local midnight), COPYed in binary with their rollups
    merged, as ingest would leave them; the day is queued for the indicator job.
    Returns the number of readings written.

    Air quality: two instruments, each reporting PM2.5, PM10, NO2 and O3 as often as
    the count asks.  Energy: meters at 1 s, each with a cumulative register and power,
    as many as the count asks.  Traffic: counters at 60 s (vehicles, heavy vehicles,
    speed), as many as the count asks (lanes and directions of one big junction).
    """
    from core.rollups import epoch_us, next_bucket_starts
    from db.pgcopy import Column, encode_rows
    from db.rollups import create_staging, merge_partials

    site = site or f"busy-{kind.replace('_', '-')}"
    lo = epoch_us(day_start)
    hi = int(next_bucket_starts(np.array([lo], np.int64), "1d")[0])
    devices, interval_s = _busy_layout(kind, readings, (hi - lo) / 1e6)
    metrics = BUSY_METRICS[kind]
    step_us = round(interval_s * 1e6)
    rng = np.random.default_rng(11)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO sites (id, name, kind, municipality, lon, lat) VALUES (%s, %s, %s,"
            " 'Narvik', 17.43, 68.44) ON CONFLICT DO NOTHING",
            (site, f"Busy {kind}", "building" if kind == "energy" else "roadside"),
        )
        series: list[int] = []
        for d in range(devices):
            device = f"{site}-{d}"
            conn.execute(
                "INSERT INTO devices (id, site_id, kind) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (device, site, kind),
            )
            for metric in metrics:
                row = conn.execute(
                    "INSERT INTO series (device_id, metric) VALUES (%s, %s)"
                    " ON CONFLICT (device_id, metric) DO UPDATE SET metric = EXCLUDED.metric"
                    " RETURNING id",
                    (device, metric),
                ).fetchone()
                assert row is not None
                series.append(int(row[0]))
        create_staging(conn)
        conn.commit()  # each block below is then a transaction of its own
        ids = np.array(series, dtype=np.int32).reshape(devices, len(metrics))
        # devices start a little apart, so that not every reading shares one instant
        offsets = (np.arange(devices, dtype=np.int64) * step_us) // devices
        ticks = (hi - lo - int(offsets.max())) // step_us
        written = 0
        columns = (
            Column("time", "timestamptz"),
            Column("series_id", "int4"),
            Column("value", "float8"),
            Column("quality", "int2"),
        )
        for first in range(0, ticks, max(1, _BUSY_BLOCK // ids.size)):
            tick = np.arange(first, min(ticks, first + max(1, _BUSY_BLOCK // ids.size)))
            t = lo + offsets[:, None, None] + tick[None, None, :] * step_us  # device, _, tick
            t = np.broadcast_to(t, (devices, len(metrics), len(tick))).reshape(-1)
            s = np.broadcast_to(ids[:, :, None], (devices, len(metrics), len(tick))).reshape(-1)
            v = _busy_values(kind, metrics, devices, tick, interval_s, rng).reshape(-1)
            q = np.full(len(s), 1, dtype=np.int16)
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(
                    "COPY readings (time, series_id, value, quality) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.write(encode_rows(columns, [t, s, v, q]))
                merge_partials(conn, s, t, v, q)
            written += len(s)
        conn.execute("ANALYZE readings")
        conn.commit()
    return written


def _busy_values(
    kind: str,
    metrics: tuple[str, ...],
    devices: int,
    tick: npt.NDArray[np.int64],
    interval_s: float,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Plausible values (device, metric, tick) for `load_busy_day`."""
    shape = (devices, len(metrics), len(tick))
    if kind == "energy":
        # 3-5 kW per meter; the register is its integral (W·s → kWh), so never falls
        seconds = tick * interval_s + np.zeros((devices, 1))
        period = 5000.0
        power = 4000.0 + 1000.0 * np.sin(seconds / period)
        joules = 4000.0 * seconds + 1000.0 * period * (1.0 - np.cos(seconds / period))
        return np.stack([1000.0 + joules / 3.6e6, power], axis=1)
    if kind == "traffic":
        vehicles = rng.poisson(12, (devices, len(tick))).astype(np.float64)
        heavy = np.minimum(vehicles, rng.poisson(1.5, (devices, len(tick))))
        speed = rng.normal(62.0, 6.0, (devices, len(tick)))
        return np.stack([vehicles, heavy, speed], axis=1)
    return rng.gamma(4.0, 5.0, shape)


# ------------------------------------------------------------- the API as deployed


class ApiProcess:
    """``smartby api`` in a subprocess on a free port, with ``SMARTBY_*`` settings from
    ``settings`` (and nothing from this process's environment); its log in ``log``."""

    def __init__(self, database_url: str, log: Path, **settings: str) -> None:
        from stack.ports import free_port

        self.port = free_port()
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
        env |= {
            "SMARTBY_ENV": "test",
            "SMARTBY_DATABASE_URL": database_url,
            "SMARTBY_INDICATORS_INTERVAL_S": "0",
        }
        env |= {f"SMARTBY_{name.upper()}": value for name, value in settings.items()}
        port = str(self.port)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smartby", "api", "--host", "127.0.0.1", "--port", port],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                # /metrics: served once the app has started, and not rate limited
                status, _, _ = asyncio.run(fetch(self.port, "/metrics"))
                if status == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the API did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def request(path: str, headers: dict[str, str] | None = None, close: bool = False) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def fetch(
    port: int, path: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection, read to the end (the server closes it)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(source, 0), limit=1 << 20
    )
    try:
        writer.write(request(path, headers, close=True))
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            found[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), found, body


# ---------------------------------------------------------------------- HTTP push
#
# Concurrent devices posting SenML packs to ``POST /v1/ingest/{device}`` of a ``smartby
# api`` process, each on its own keep-alive connection, one post at a time (a device
# waits for its answer, which comes after commit, before the next).  A lean HTTP/1.1
# client on asyncio streams, so that the load generator costs less than the server it
# measures (httpx costs about as much CPU per request as the server).  Used by
# ``bench.ingest`` (the HTTP row) and by the "done when" test of issue 14.


#: what a post holds: 4 records, as in issue 14's "done when"
RECORDS_PER_POST = 4


def senml_post(device: str, when: float, i: int) -> bytes:
    """Four readings of one device at ``when`` (distinct for every post of a device)."""
    return orjson.dumps(
        [
            {"bn": f"{device}/", "bt": when, "n": "pm25", "u": "ug/m3", "v": 5.0 + i % 7},
            {"n": "pm10", "u": "ug/m3", "v": 11.0 + i % 5},
            {"n": "temperature", "u": "Cel", "v": -3.0 + (i % 11) / 10},
            {"n": "humidity", "u": "%RH", "v": 80.0 + i % 3},
        ]
    )


@dataclass
class PushRun:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)  # seconds per post
    statuses: Counter[int] = field(default_factory=Counter)
    stored: int = 0  # readings the 2xx answers counted
    elapsed: float = 0.0
    checked: int = 0  # posts verified in the database right after their answer

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _client(
    port: int,
    device: str,
    secret: str,
    posts: int,
    t0: float,
    run: PushRun,
    check: Callable[[str, float], bool] | None,
    check_every: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = base64.b64encode(f"{device}:{secret}".encode()).decode()
    try:
        for i in range(posts):
            when = t0 + i
            body = senml_post(device, when, i)
            head = (
                f"POST /v1/ingest/{device} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Basic {auth}\r\nContent-Type: application/senml+json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            answer = await reader.readuntil(b"\r\n\r\n")
            lines = answer.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            run.latencies.append(time.perf_counter() - started)
            status = int(lines[0].split(" ", 2)[1])
            run.statuses[status] += 1
            if 200 <= status < 300:
                run.stored += int(orjson.loads(payload)["stored"])
                if check is not None and i % check_every == 0:
                    # the answer promised a commit: the readings must be there now
                    if not check(device, when):
                        raise AssertionError(f"{device} post {i}: answered before commit")
                    run.checked += 1
    finally:
        writer.close()


async def _push_all(
    port: int,
    devices: list[tuple[str, str]],
    posts: int,
    t0: float,
    check: Callable[[str, float], bool] | None,
    check_every: int,
) -> PushRun:
    run = PushRun()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _client(port, device, secret, posts, t0, run, check, check_every)
            for device, secret in devices
        )
    )
    run.elapsed = time.perf_counter() - started
    return run


def push_concurrently(
    port: int,
    devices: list[tuple[str, str]],
    posts_per_device: int,
    t0: float,
    *,
    check: Callable[[str, float], bool] | None = None,
    check_every: int = 50,
) -> PushRun:
    """Every device of ``devices`` ((id, secret)) posts ``posts_per_device`` packs at
    once; ``check(device, time)`` is asked right after every ``check_every``-th answer
    whether its readings are committed."""
    return asyncio.run(_push_all(port, devices, posts_per_device, t0, check, check_every))
