"""``smartby up``: the whole platform on one machine, for a newcomer or a laptop.

Starts (in order) the private PostgreSQL cluster, the migrations, the private
Mosquitto, then the platform's own processes, each a ``smartby <command>`` child,
and keeps them up: a service that fails is restarted with backoff
(`smartby.supervise`), and dependants ride out the restart (the worker retries the
database and paho reconnects to the broker; the API's pool replaces broken
connections; the simulated devices reconnect and resend what was not acknowledged).
Ctrl-C or SIGTERM stops them in reverse order, each once the work it holds is safe.
Data stays in the data folder, and so do the ports (``ports.json``), so a second run
carries on where the first stopped, on the same addresses.  The broker has a TLS
listener for devices beside the plain one; its CA and server certificate are made in
``<data_dir>/tls`` on the first start and renewed when due (`stack.certificates`).

Files it writes are private to its user (umask 077: 0600 files, 0700 folders); only
when it runs as root and PostgreSQL runs as ``postgres`` is the data folder itself
0711, so that user can reach its own folder inside.
"""

from __future__ import annotations

import os
import signal
import socket
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

from core.broker import LOCAL_INGEST_CLIENT_ID, PUBLIC_BRIDGE_USER, public_topics
from core.settings import Settings
from db.connect import connect
from db.migrate import migrate
from devices.broker_access import BrokerAccessError, BrokerAdmin
from devices.broker_plan import PlatformAccounts
from devices.broker_sync import sync_platform, write_platform_file
from devices.catalogue import load_catalogue, narvik_catalogue_path
from devices.provision import CredentialStore, provision_simulated
from devices.registry import REGISTRY_CHANNEL
from smartby.broker import embedded_accounts
from smartby.db_commands import prepare_local
from smartby.supervise import Leftover, RestartPolicy, Service, Supervision, reap_leftovers
from stack.certificates import BrokerCertificates, default_names, ensure_broker_certificates
from stack.mosquitto import (
    DynamicSecurity,
    MosquittoBroker,
    TlsListener,
    find_dynsec_plugin,
    find_mosquitto,
    public_stream_config,
)
from stack.ports import free_port
from stack.postgres import PostgresCluster, find_postgres_bindir
from stack.process import ProcessRef, StackError, spawn
from stack.running import (
    PORTS_FILE,
    RunningStack,
    clear_running_stack,
    read_ports,
    read_stack_record,
    write_ports,
    write_running_stack,
)

#: the services in start order; they stop in the reverse order (`Supervisor.shutdown`)
POSTGRES, BROKER, PUBLIC_BROKER = "PostgreSQL", "Mosquitto", "Mosquitto public"
#: broker accounts the children get from us alone, not from our environment
_ACCOUNT_VARIABLES = frozenset(
    {
        "SMARTBY_MQTT_USERNAME",
        "SMARTBY_MQTT_PASSWORD",
        "SMARTBY_BROKER_ADMIN_USERNAME",
        "SMARTBY_BROKER_ADMIN_PASSWORD",
        "SMARTBY_STA_PUBLISHER_PASSWORD",
        "SMARTBY_PUBLIC_BRIDGE_PASSWORD",
    }
)


@dataclass(slots=True)
class Child:
    """One platform process run by the supervisor."""

    name: str
    argv: list[str]
    #: a line the child logs once it serves (the stack is "up" only after that)
    ready_text: str | None = None
    #: or a URL that answers once it serves
    ready_url: str | None = None


@dataclass(slots=True)
class UpOptions:
    simulate: bool = True


def platform_children(
    settings: Settings, options: UpOptions, *, api_port: int | None = None
) -> list[Child]:
    """The platform's own processes, as ``smartby`` subcommands.

    Each runs in its own process so that it gets a core of its own and can crash
    without taking the others down (the supervisor restarts it).  They start in this
    order and stop in the reverse one: the simulated devices first, the worker last,
    so that what the devices had acknowledged is stored before the broker stops.
    """
    children = [
        Child(
            "ingest",
            _smartby_argv("ingest", "--client-id", LOCAL_INGEST_CLIENT_ID),
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
    """Owns the stack's processes: starts them, keeps them up, stops them in order."""

    def __init__(
        self,
        settings: Settings,
        options: UpOptions,
        say: Callable[[str], None],
        policy: RestartPolicy | None = None,
    ) -> None:
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
        self.supervision = Supervision(say, policy, on_launch=self._record)
        self.children: list[Child] = []
        self.ports: dict[str, int] = {}
        self.accounts: PlatformAccounts | None = None
        self.certificates = BrokerCertificates(self.data_dir / "tls")
        self.database_url = ""
        self.credentials_file = self.data_dir / "credentials" / "devices.json"
        self._listener: psycopg.Connection[TupleRow] | None = None
        self._watcher: threading.Thread | None = None
        self._closing = False
        self._last_watch_problem = ""
        self._pid_start = 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # No printing here: a print interrupted by a print raises "reentrant call".
        self.stop_signal = self.stop_signal or signal.Signals(signum).name
        self.stop_requested = True

    def _cancelled(self) -> bool:
        return self.stop_requested

    def run(self) -> int:
        # Find both binaries before touching anything, so a missing one costs nothing.
        bindir = find_postgres_bindir(self.settings.pg_bindir)
        mosquitto = find_mosquitto(self.settings.mosquitto_binary)
        plugin = find_dynsec_plugin(mosquitto, self.settings.mosquitto_dynsec_plugin)
        record = read_stack_record(self.data_dir)
        if record is not None and record.supervisor_alive():
            raise StackError(f"smartby is already running from {self.data_dir} (pid {record.pid})")
        me = ProcessRef.of(os.getpid())
        assert me is not None
        self._pid_start = me.start
        # Everything written from here on, by us or a child, is for our user alone
        # (as systemd's UMask=0077); PostgreSQL sets the same for its own files.
        umask = os.umask(0o077)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._make_data_dir()
            reap_leftovers(self._leftovers(record), self.say, self._cancelled)
            return self._run(bindir, mosquitto, plugin)
        finally:
            self.shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler)
            os.umask(umask)

    def _make_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Root runs PostgreSQL as `postgres`, which must pass through to its own folder
        # (traverse only: it cannot list or read ours).
        self.data_dir.chmod(0o711 if os.geteuid() == 0 else 0o700)
        for folder in ("logs", "credentials", "mosquitto", "tls"):
            (self.data_dir / folder).mkdir(mode=0o700, exist_ok=True)
            (self.data_dir / folder).chmod(0o700)

    def _leftovers(self, record: RunningStack | None) -> list[Leftover]:
        """What an earlier `up`, killed before it could stop them, may have left running,
        in stop order; PostgreSQL also by its own pid file (it locks the cluster)."""
        refs = record.process_refs() if record is not None else {}
        leftovers = [
            Leftover(name, ref, signal.SIGTERM, 30.0)
            for name, ref in reversed(refs.items())
            if name not in (POSTGRES, BROKER)
        ]
        if BROKER in refs:
            leftovers.append(Leftover(BROKER, refs[BROKER], signal.SIGTERM, 20.0))
        postmaster = refs.get(POSTGRES) or _postmaster(self.data_dir / "postgresql" / "data")
        if postmaster is not None:
            # fast shutdown: its own clients are gone by now, and no other may hold it up
            leftovers.append(Leftover(POSTGRES, postmaster, signal.SIGINT, 60.0))
        return leftovers

    def _choose_ports(self) -> None:
        """The ports of the last run (``ports.json``), unless configured otherwise; a
        port that another program holds is replaced, loudly."""
        recorded = read_ports(self.data_dir)
        explicit = self.settings.model_fields_set
        for key, setting, label, who in (
            ("postgresql", "pg_port", "PostgreSQL", "tools connecting to it"),
            ("mqtt", "mqtt_port", "MQTT", "devices"),
            ("mqtt_tls", "mqtt_tls_port", "MQTT over TLS", "devices"),
            ("mqtt_public", "mqtt_public_port", "the public MQTT stream", "readers"),
            ("api", "api_port", "the API", "clients"),
            ("ingest_metrics", "ingest_metrics_port", "the ingest metrics", "scrapers"),
        ):
            configured: int = getattr(self.settings, setting)
            if setting in explicit or key not in recorded:
                preferred, origin = configured, f"SMARTBY_{setting.upper()}"
            else:
                preferred, origin = recorded[key], f"used last time, {PORTS_FILE}"
            # the TLS listener binds its own address (every interface by default)
            host = self.settings.mqtt_tls_host if key == "mqtt_tls" else "127.0.0.1"
            port = free_port(preferred, host)
            if preferred and port != preferred:
                self.say(
                    f"WARNING: port {preferred} ({origin}) is held by another program, so"
                    f" {label} listens on port {port} instead. {who.capitalize()} configured"
                    f" with port {preferred} must be changed to {port}."
                )
            self.ports[key] = port
        write_ports(self.data_dir, self.ports)

    def _run(self, bindir: Path, mosquitto: Path, plugin: Path) -> int:
        if self.stop_requested:
            return 0
        self._choose_ports()
        self.cluster = PostgresCluster(
            self.data_dir / "postgresql", port=self.ports["postgresql"], bindir=bindir
        )
        cluster = self.cluster
        self.say(
            f"starting PostgreSQL{' + TimescaleDB' if cluster.with_timescaledb else ''}"
            f" on 127.0.0.1:{cluster.port}"
        )
        pg = self.supervision.add(
            Service(
                POSTGRES,
                cluster.launch,
                cluster.log_path,
                ready_check=cluster.accepts_connections,
                # fast shutdown: roll back what is open (never acknowledged), checkpoint
                stop_signal=signal.SIGINT,
                stop_timeout=60,
            )
        )
        self.supervision.start(pg, self._cancelled)
        if self.stop_requested:
            return 0
        cluster.ensure_database("smartby")
        database_url = cluster.url("smartby")
        with connect(database_url, autocommit=True) as conn:
            applied = migrate(conn)
        if applied:
            self.say(f"applied migrations: {', '.join(m.filename for m in applied)}")
        if self.stop_requested:
            return 0

        # The broker requires passwords even on a laptop: the roles that bind each
        # device to its own topics make the topic a trustworthy identity.
        broker_dir = self.data_dir / "mosquitto"
        self.database_url = database_url
        self.accounts = embedded_accounts(self.settings, self.data_dir)
        with connect(database_url, autocommit=True) as conn:
            self._provision(conn)
        self.broker = MosquittoBroker(
            broker_dir,
            port=self.ports["mqtt"],
            binary=mosquitto,
            dynsec=DynamicSecurity(plugin, broker_dir / "dynamic-security.json"),
            before_launch=self._before_broker_start,
            tls=TlsListener(
                self.ports["mqtt_tls"],
                self.certificates.cert_file,
                self.certificates.key_file,
                host=self.settings.mqtt_tls_host,
                ca_file=self.certificates.ca_file,
                require_certificate=self.settings.mqtt_tls_require_certificate,
            ),
        )
        broker = self.broker
        # Listen before the broker's file is written: a change after that is then
        # reconciled over $CONTROL once the broker is up.
        self._listener = _listen(database_url)
        self.say(
            f"starting Mosquitto on 127.0.0.1:{broker.port}, with TLS on"
            f" {self.settings.mqtt_tls_host}:{self.ports['mqtt_tls']}"
        )
        self.supervision.start(
            self.supervision.add(
                Service(
                    BROKER,
                    broker.launch,
                    broker.log_path,
                    ready_check=broker.accepts_connections,
                    stop_timeout=20,
                )
            ),
            self._cancelled,
        )
        if self.stop_requested:
            return 0
        self._watch_registry(database_url)
        self._start_public_broker(mosquitto)
        if self.stop_requested:
            return 0

        # each service logs in as its own role (migration 0011): least privilege
        logins = prepare_local(self.settings, database_url, self.data_dir / "credentials")
        env = {
            **{k: v for k, v in os.environ.items() if k not in _ACCOUNT_VARIABLES},
            "SMARTBY_DATABASE_URL": database_url,
            "SMARTBY_MQTT_HOST": "127.0.0.1",
            "SMARTBY_MQTT_PORT": str(broker.port),
            # the children are on this machine: the plain listener, whatever the shell says
            "SMARTBY_MQTT_TLS": "false",
            "SMARTBY_DATA_DIR": str(self.data_dir),
            "SMARTBY_INGEST_METRICS_PORT": str(self.ports["ingest_metrics"]),
        }
        # only the ingest worker gets the ingest account (its user name is its client
        # id), and only the API, whose admin routes change devices, the broker's admin;
        # the API also publishes the SensorThings stream (`api.sensorthings.mqtt`) on
        # our broker, which the bridge carries to the public one
        accounts = self.accounts
        child_env = {
            "ingest": {
                "SMARTBY_MQTT_PASSWORD": accounts.ingest_password or "",
                "SMARTBY_DATABASE_URL": logins["writer"],
            },
            "api": {
                "SMARTBY_DATABASE_URL": logins["reader"],
                "SMARTBY_ADMIN_DATABASE_URL": logins["admin"],
                "SMARTBY_BROKER_ADMIN_USERNAME": accounts.admin_username,
                "SMARTBY_BROKER_ADMIN_PASSWORD": accounts.admin_password or "",
                "SMARTBY_STA_MQTT_PUBLISH": "true",
                "SMARTBY_STA_PUBLISHER_PASSWORD": accounts.sta_publisher_password or "",
                "SMARTBY_STA_MQTT_PUBLIC_URL": f"mqtt://127.0.0.1:{self.ports['mqtt_public']}",
            },
        }
        api_port = self.ports["api"]
        self.children = platform_children(self.settings, self.options, api_port=api_port)
        services = []
        for child in self.children:
            log_path = self.data_dir / "logs" / f"{child.name}.log"
            service = self.supervision.add(
                Service(
                    child.name,
                    _launcher(child.argv, log_path, {**env, **child_env.get(child.name, {})}),
                    log_path,
                    ready_text=child.ready_text,
                    ready_check=_answers_at(child.ready_url) if child.ready_url else None,
                )
            )
            self.supervision.launch(service)
            assert service.proc is not None
            self.say(f"started {child.name} (pid {service.proc.pid}, log {log_path})")
            services.append(service)
        for service in services:
            self.supervision.wait_ready(service, self._cancelled)
        if self.stop_requested:
            return 0

        self.say("smartby is up:")
        self.say(f"  website     http://127.0.0.1:{api_port}/")
        self.say(
            f"  PostgreSQL  postgresql://{cluster.superuser}@127.0.0.1:"
            f"{cluster.port}/smartby (password in {cluster.root}/superuser.password)"
        )
        self.say(f"  MQTT        mqtt://127.0.0.1:{broker.port}")
        self.say(
            f"  MQTT TLS    mqtts://{socket.gethostname()}:{self.ports['mqtt_tls']} (devices;"
            f" they trust the CA file {self.certificates.ca_file})"
        )
        self.say(
            f"  MQTT open   mqtt://127.0.0.1:{self.ports['mqtt_public']}"
            " (anonymous, read-only: the SensorThings stream v1.1/#"
            f" and the warnings {self.settings.mqtt_topic_prefix}/public/warnings/#)"
        )
        self.say(f"  ingest      http://127.0.0.1:{self.ports['ingest_metrics']}/metrics")
        self.say(f"  API         http://127.0.0.1:{api_port}/v1 (docs /docs, metrics /metrics)")
        self.say(f"  data        {self.data_dir}")
        self.say(f"  restarts    {self.supervision.policy.describe()}")
        self.say("press Ctrl-C to stop")

        while not self.stop_requested:
            time.sleep(0.1)  # supervision tick: the signal handler only sets the flag
            if self.supervision.tick() is not None:
                return 1
        return 0

    def _record(self, _launched: Service) -> None:
        """Rewrite ``stack.json`` with the processes as they are now (called at every
        launch, so that a killed supervisor leaves the next `up` the current pids)."""
        if self.cluster is None:
            return
        processes = {}
        for service in self.supervision.services:
            ref = service.ref()
            if ref is not None:
                processes[service.name] = [ref.pid, ref.start]
        write_running_stack(
            self.data_dir,
            RunningStack(
                pid=os.getpid(),
                pid_start=self._pid_start,
                database_url=self.cluster.url("smartby"),
                mqtt_host="127.0.0.1",
                mqtt_port=self.ports["mqtt"],
                api_url=f"http://127.0.0.1:{self.ports['api']}/v1",
                web_url=f"http://127.0.0.1:{self.ports['api']}/",
                mqtt_public_port=self.ports["mqtt_public"],
                mqtt_tls_port=self.ports["mqtt_tls"],
                mqtt_ca_file=str(self.certificates.ca_file),
                metrics_url=f"http://127.0.0.1:{self.ports['ingest_metrics']}/metrics",
                processes=processes,
            ),
        )

    def _provision(self, conn: psycopg.Connection[TupleRow]) -> None:
        """Register what the local stack needs before the broker starts: when
        simulating, Narvik's catalogue, with secrets the simulators keep locally."""
        if not self.options.simulate:
            return
        catalogue = load_catalogue(narvik_catalogue_path())
        secrets = provision_simulated(conn, catalogue, CredentialStore(self.credentials_file))
        self.say(f"registered {len(secrets)} simulated devices from {catalogue.source}")

    def _start_public_broker(self, mosquitto: Path) -> None:
        """The public broker for anonymous readers of the SensorThings stream, bridged
        from ours (`stack.mosquitto.public_stream_config`: anonymous clients on our
        broker could take its sessions over)."""
        assert self.broker is not None
        assert self.accounts is not None
        root = self.data_dir / "mosquitto-public"
        public = MosquittoBroker(
            root,
            port=self.ports["mqtt_public"],
            binary=mosquitto,
            persistence=False,
            max_queued=1000,
            extra_config=public_stream_config(
                root,
                main_port=self.broker.port,
                bridge_user=PUBLIC_BRIDGE_USER,
                bridge_password=self.accounts.public_bridge_password or "",
                topics=public_topics(self.settings.mqtt_topic_prefix),
            ),
        )
        self.say(f"starting the public Mosquitto on 127.0.0.1:{public.port}")
        self.supervision.start(
            self.supervision.add(
                Service(
                    PUBLIC_BROKER,
                    public.launch,
                    public.log_path,
                    ready_check=public.accepts_connections,
                    stop_timeout=20,
                )
            ),
            self._cancelled,
        )

    def _before_broker_start(self) -> None:
        """Before every broker start: its TLS certificates (made on the first start,
        renewed when due) and its accounts."""
        names = [*default_names(), *self.settings.mqtt_tls_extra_names]
        made = ensure_broker_certificates(self.certificates.folder, names)
        if made.outcome == "created":
            self.say(f"made the broker's CA and server certificate in {made.folder}")
        elif made.outcome != "kept":
            self.say(f"the broker's server certificate in {made.folder}: {made.outcome}")
        self._write_broker_accounts()

    def _write_broker_accounts(self) -> None:
        """Before every broker start (the broker is stopped): its dynamic security
        file from the registry, every password from the registry's hashes.  If the
        database cannot be reached, the broker starts with the file it last wrote."""
        assert self.broker is not None
        assert self.broker.dynsec is not None
        assert self.accounts is not None
        try:
            with connect(self.database_url, autocommit=True, application_name="smartby-up") as conn:
                without = write_platform_file(self.broker.dynsec.config_file, conn, self.accounts)
        except psycopg.Error as exc:
            first_line = (str(exc).strip() or repr(exc)).splitlines()[0]
            self.say(f"registry unreachable ({first_line}): the broker keeps its last accounts")
            return
        for device in without:
            self.say(f"WARNING: {device} has no usable secret hash and cannot log in")

    def _admin(self) -> BrokerAdmin:
        assert self.broker is not None
        assert self.accounts is not None
        return BrokerAdmin(
            "127.0.0.1",
            self.broker.port,
            self.accounts.admin_username,
            self.accounts.admin_password or "",
        )

    def _reconcile(self) -> None:
        """Broker and registry agree again (over $CONTROL: the broker runs)."""
        assert self.accounts is not None
        with connect(self.database_url, autocommit=True, application_name="smartby-up") as conn:
            report = sync_platform(self._admin(), conn, self.accounts)
        if report.changes:
            self.say(f"device registry changed: broker accounts reconciled ({report.summary()})")
        for problem in report.problems():
            self.say(f"WARNING: {problem}")

    def _watch_registry(self, database_url: str) -> None:
        """Reconcile the broker's accounts with the registry whenever it changes
        (migration 0004 NOTIFYs), so `smartby devices ...` takes effect at once (the
        command itself also pushes its change and the new secret; this catches what
        changed by other ways, and rides out a broker that was restarting).  It rides
        out a restart of the database too: it listens again, and reconciles once for
        what it may have missed."""
        pending = True  # whatever changed between the file and the broker's start

        def watch() -> None:
            nonlocal pending
            while not self._closing:
                try:
                    if self._listener is None:
                        self._listener = _listen(database_url)
                        pending = True
                    elif any(True for _ in self._listener.notifies(timeout=0.5)):
                        pending = True
                    if pending and self.broker is not None:
                        self._reconcile()
                        pending = False
                except psycopg.Error as exc:
                    if self._closing:
                        return
                    if self._listener is not None:
                        first_line = (str(exc).strip() or repr(exc)).splitlines()[0]
                        self.say(f"registry watcher lost the database ({first_line}); retrying")
                        self._listener.close()
                        self._listener = None
                    self._pause(1.0)
                except BrokerAccessError as exc:
                    if self._closing:
                        return
                    log_line = f"broker not reconciled yet ({exc}); retrying"
                    if log_line != self._last_watch_problem:
                        self.say(log_line)
                        self._last_watch_problem = log_line
                    self._pause(1.0)

        self._watcher = threading.Thread(target=watch, name="registry-watcher", daemon=True)
        self._watcher.start()

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._closing and time.monotonic() < deadline:
            time.sleep(0.1)

    def shutdown(self) -> None:
        """Stop in the reverse order of start, each service once the one before it is
        gone: the simulated devices, the API, the worker (it finishes or abandons its
        batch; nothing uncommitted is acknowledged), the public broker, the broker
        (after the worker, so the worker's last acknowledgements reach it), and
        PostgreSQL last (fast shutdown)."""
        self._closing = True
        if self.stop_signal:
            self.say(f"received {self.stop_signal}, stopping")
        self.supervision.stop(child.name for child in reversed(self.children))
        if self._watcher is not None:
            self._watcher.join(5)
        if self._listener is not None:
            self._listener.close()
        self.supervision.stop([PUBLIC_BROKER, BROKER, POSTGRES])
        if self.cluster is not None:
            clear_running_stack(self.data_dir)
        self.say("stopped")


def _listen(database_url: str) -> psycopg.Connection[TupleRow]:
    listener = connect(database_url, autocommit=True, application_name="smartby-up")
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(REGISTRY_CHANNEL)))
    return listener


def _launcher(
    argv: list[str], log_path: Path, env: dict[str, str]
) -> Callable[[], subprocess.Popen[bytes]]:
    return lambda: spawn(argv, log_path=log_path, env=env)


def _answers_at(url: str) -> Callable[[], bool]:
    return lambda: _answers(url)


def _postmaster(pgdata: Path) -> ProcessRef | None:
    """The postmaster that holds ``pgdata`` (its pid file's first line), if it runs."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if str(pgdata).encode() not in cmdline:
        return None  # the pid file is stale and the pid is another process's now
    return ProcessRef.of(pid)


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at the URL (any status: it is serving)."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own local URL
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def run_up(
    settings: Settings, options: UpOptions | None = None, say: Callable[[str], None] | None = None
) -> int:
    """Run the stack until a signal; return the process exit code."""
    printer = say or (lambda line: print(line, flush=True))
    return Supervisor(settings, options or UpOptions(), printer).run()
