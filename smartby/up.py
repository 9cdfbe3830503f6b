"""``smartby up``: the whole platform on one machine, for a newcomer or a laptop.

Starts (in order) the private PostgreSQL cluster, the migrations, the private
Mosquitto, then the platform's own processes, each a ``smartby <command>`` child;
stops them in reverse order on Ctrl-C or SIGTERM.  Data stays in the data folder,
so a second run carries on where the first stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from core.settings import Settings
from db.connect import connect
from db.migrate import migrate
from devices.catalogue import load_catalogue, narvik_catalogue_path
from devices.provision import CredentialStore, provision_simulated
from devices.registry import (
    INGEST_USER,
    REGISTRY_CHANNEL,
    hash_secret,
    new_secret,
    write_broker_files,
)
from stack.mosquitto import MosquittoBroker, find_mosquitto
from stack.ports import free_port
from stack.postgres import PostgresCluster, find_postgres_bindir
from stack.process import StackError, spawn, stop_process, tail, wait_until
from stack.running import RunningStack, clear_running_stack, read_running_stack, write_running_stack


@dataclass(slots=True)
class Child:
    """One platform process run by the supervisor."""

    name: str
    argv: list[str]
    #: a line the child logs once it serves (the stack is "up" only after that)
    ready_text: str | None = None
    #: or a URL that answers once it serves
    ready_url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None


@dataclass(slots=True)
class UpOptions:
    simulate: bool = True


def platform_children(
    settings: Settings, options: UpOptions, *, api_port: int | None = None
) -> list[Child]:
    """The platform's own processes, as ``smartby`` subcommands.

    Each runs in its own process so that it gets a core of its own and can crash
    without taking the others down.  Commands appear here as they are built.
    """
    children = [
        Child(
            "ingest",
            _smartby_argv("ingest", "--client-id", "smartby-ingest-local"),
            ready_text="consuming from",
        )
    ]
    port = settings.api_port if api_port is None else api_port
    children.append(
        Child(
            "api",
            _smartby_argv("api", "--host", "127.0.0.1", "--port", str(port)),
            ready_url=f"http://127.0.0.1:{port}/v1",
        )
    )
    if options.simulate:
        # a couple of hours of history first, so every device (traffic counters report
        # every 15 min) has data at once; then live
        children.append(
            Child(
                "simulate",
                _smartby_argv("simulate", "--history", "2h"),
                ready_text="live: publishing",
            )
        )
    return children


def _smartby_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "smartby", *args]


class Supervisor:
    """Owns the stack's processes and tears them down in reverse order."""

    def __init__(self, settings: Settings, options: UpOptions, say: Callable[[str], None]) -> None:
        self.settings = settings
        self.options = options
        self.say = say
        self.data_dir = settings.data_dir.resolve()
        # A plain flag, not threading.Event: Event.set takes a lock, and a second
        # signal arriving inside the first handler would deadlock on it.
        self.stop_requested = False
        self.stop_signal: str | None = None
        self.cluster: PostgresCluster | None = None
        self.broker: MosquittoBroker | None = None
        self.children: list[Child] = []
        self.ingest_password = ""
        self.credentials_file = self.data_dir / "credentials" / "devices.json"
        self._listener: psycopg.Connection[TupleRow] | None = None
        self._watcher: threading.Thread | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # No printing here: a print interrupted by a print raises "reentrant call".
        self.stop_signal = self.stop_signal or signal.Signals(signum).name
        self.stop_requested = True

    def run(self) -> int:
        # Find both binaries before touching anything, so a missing one costs nothing.
        bindir = find_postgres_bindir(self.settings.pg_bindir)
        mosquitto = find_mosquitto(self.settings.mosquitto_binary)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        running = read_running_stack(self.data_dir)
        if running is not None:
            raise StackError(f"smartby is already running from {self.data_dir} (pid {running.pid})")
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._run(bindir, mosquitto)
        finally:
            self.shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _run(self, bindir: Path, mosquitto: Path) -> int:
        self.cluster = PostgresCluster(
            self.data_dir / "postgresql", port=free_port(self.settings.pg_port), bindir=bindir
        )
        self.say(
            f"starting PostgreSQL{' + TimescaleDB' if self.cluster.with_timescaledb else ''}"
            f" on 127.0.0.1:{self.cluster.port}"
        )
        self.cluster.start()
        database_url = self.cluster.url("smartby")
        with connect(database_url, autocommit=True) as conn:
            applied = migrate(conn)
        if applied:
            self.say(f"applied migrations: {', '.join(m.filename for m in applied)}")
        if self.stop_requested:
            return 0

        # The broker requires passwords even on a laptop: the ACL that binds each
        # device to its own topics is what makes the topic a trustworthy identity.
        broker_dir = self.data_dir / "mosquitto"
        self.ingest_password = _local_secret(self.data_dir / "credentials" / "ingest.password")
        with connect(database_url, autocommit=True) as conn:
            self._provision(conn)
            passwd, acl = self._write_broker_files(conn, broker_dir)
        self.broker = MosquittoBroker(
            broker_dir,
            port=free_port(self.settings.mqtt_port),
            binary=mosquitto,
            password_file=passwd,
            acl_file=acl,
        )
        self.say(f"starting Mosquitto on 127.0.0.1:{self.broker.port}")
        self.broker.start()
        self._watch_registry(database_url, broker_dir)

        api_port = free_port(self.settings.api_port)
        stack = RunningStack(
            pid=os.getpid(),
            database_url=database_url,
            mqtt_host="127.0.0.1",
            mqtt_port=self.broker.port,
            api_url=f"http://127.0.0.1:{api_port}/v1",
            web_url=f"http://127.0.0.1:{api_port}/",
        )
        write_running_stack(self.data_dir, stack)
        env = {
            **os.environ,
            "SMARTBY_DATABASE_URL": database_url,
            "SMARTBY_MQTT_HOST": "127.0.0.1",
            "SMARTBY_MQTT_PORT": str(self.broker.port),
            "SMARTBY_DATA_DIR": str(self.data_dir),
            "SMARTBY_INGEST_METRICS_PORT": str(free_port(self.settings.ingest_metrics_port)),
        }
        # only the ingest worker gets the ingest account
        child_env = {
            "ingest": {
                "SMARTBY_MQTT_USERNAME": INGEST_USER,
                "SMARTBY_MQTT_PASSWORD": self.ingest_password,
            }
        }
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        self.children = platform_children(self.settings, self.options, api_port=api_port)
        for child in self.children:
            child.log_path = logs / f"{child.name}.log"
            child.proc = spawn(
                child.argv, log_path=child.log_path, env={**env, **child_env.get(child.name, {})}
            )
            self.say(f"started {child.name} (pid {child.proc.pid}, log {child.log_path})")
        for child in self.children:
            self._wait_ready(child)

        self.say("smartby is up:")
        self.say(f"  website     {stack.web_url}")
        self.say(
            f"  PostgreSQL  postgresql://{self.cluster.superuser}@127.0.0.1:"
            f"{self.cluster.port}/smartby (password in {self.cluster.root}/superuser.password)"
        )
        self.say(f"  MQTT        mqtt://127.0.0.1:{self.broker.port}")
        self.say(f"  ingest      http://127.0.0.1:{env['SMARTBY_INGEST_METRICS_PORT']}/metrics")
        self.say(f"  API         http://127.0.0.1:{api_port}/v1 (docs /docs, metrics /metrics)")
        self.say(f"  data        {self.data_dir}")
        self.say("press Ctrl-C to stop")

        while not self.stop_requested:
            time.sleep(0.2)  # supervision tick: the signal handler only sets the flag
            for child in self.children:
                assert child.proc is not None
                code = child.proc.poll()
                if code is not None:
                    log_tail = tail(child.log_path, 5) if child.log_path else ""
                    self.say(
                        f"{child.name} exited with code {code}; stopping. Last log lines:\n"
                        f"{log_tail}"
                    )
                    return 1
            if self.broker.proc is not None and self.broker.proc.poll() is not None:
                self.say(f"Mosquitto exited; stopping. Log: {self.broker.log_path}")
                return 1
            if self.cluster.proc is not None and self.cluster.proc.poll() is not None:
                self.say(f"PostgreSQL exited; stopping. Log: {self.cluster.log_path}")
                return 1
        return 0

    def _provision(self, conn: psycopg.Connection[TupleRow]) -> None:
        """Register what the local stack needs before the broker starts: when
        simulating, Narvik's catalogue, with secrets the simulators keep locally."""
        if not self.options.simulate:
            return
        catalogue = load_catalogue(narvik_catalogue_path())
        secrets = provision_simulated(conn, catalogue, CredentialStore(self.credentials_file))
        self.say(f"registered {len(secrets)} simulated devices from {catalogue.source}")

    def _write_broker_files(
        self, conn: psycopg.Connection[TupleRow], broker_dir: Path
    ) -> tuple[Path, Path]:
        """The broker's password file and ACL from the registry, with the ingest account."""
        return write_broker_files(
            conn, broker_dir, self.settings.mqtt_topic_prefix, hash_secret(self.ingest_password)
        )

    def _watch_registry(self, database_url: str, broker_dir: Path) -> None:
        """Rewrite the broker's password file and SIGHUP it whenever the registry
        changes (migration 0004 NOTIFYs), so `smartby devices ...` takes effect at once
        and connected clients stay connected."""
        listener = connect(database_url, autocommit=True, application_name="smartby-up")
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(REGISTRY_CHANNEL)))
        self._listener = listener

        def watch() -> None:
            while not self.stop_requested:
                try:
                    changed = any(True for _ in listener.notifies(timeout=0.5))
                    if changed and self.broker is not None:
                        with connect(database_url, autocommit=True) as conn:
                            self._write_broker_files(conn, broker_dir)
                        self.broker.reload()
                        self.say("device registry changed: broker credentials reloaded")
                except psycopg.Error as exc:
                    if not self.stop_requested:
                        self.say(f"registry watcher stopped: {exc}")
                    return

        self._watcher = threading.Thread(target=watch, name="registry-watcher", daemon=True)
        self._watcher.start()

    def _wait_ready(self, child: Child, timeout: float = 60) -> None:
        if child.log_path is None or child.proc is None:
            return
        proc, log_path, text, url = child.proc, child.log_path, child.ready_text, child.ready_url
        if text is None and url is None:
            return

        def check() -> bool:
            if text is not None:
                return text in log_path.read_text(errors="replace")
            return url is not None and _answers(url)

        try:
            wait_until(
                check,
                timeout=timeout,
                what=child.name,
                alive=lambda: proc.poll() is None and not self.stop_requested,
            )
        except StackError as exc:
            raise StackError(f"{exc}; last log lines:\n{tail(log_path, 5)}") from None

    def shutdown(self) -> None:
        """Children first (they hold connections), then the broker, then the database."""
        if self.stop_signal:
            self.say(f"received {self.stop_signal}, stopping")
        for child in reversed(self.children):
            if child.proc is not None:
                stop_process(child.proc, signal.SIGTERM, timeout=30)
        if self._watcher is not None:
            self._watcher.join(5)
        if self._listener is not None:
            self._listener.close()
        if self.broker is not None:
            self.broker.stop()
        if self.cluster is not None:
            self.cluster.stop()
        clear_running_stack(self.data_dir)
        self.say("stopped")


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at the URL (any status: it is serving)."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own local URL
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _local_secret(path: Path) -> str:
    """A secret kept (0600) in the data folder, made on first use: the local stack's
    ingest account password, stable across runs."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    secret = new_secret()
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def run_up(
    settings: Settings, options: UpOptions | None = None, say: Callable[[str], None] | None = None
) -> int:
    """Run the stack until a signal; return the process exit code."""
    printer = say or (lambda line: print(line, flush=True))
    return Supervisor(settings, options or UpOptions(), printer).run()
