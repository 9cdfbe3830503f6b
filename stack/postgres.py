"""The embedded local stack: a private PostgreSQL cluster and a private Mosquitto.

Used by ``smartby up`` (data kept in ``.smartby/`` between runs) and by the test
fixtures (a throw-away folder, free ports).  Both services run as child processes
of the caller, on loopback only, so nothing outside this machine can reach them.

PostgreSQL refuses to run as root; when we are root the cluster runs as the
``postgres`` system user that Debian's package creates, and its folders are handed
to that user.  Readiness is polled (a real connection, a real MQTT CONNECT), never
slept for.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote

from core.errors import SmartbyError


class StackError(SmartbyError):
    """A local service could not be found, started or reached; the message says which."""


class MissingBinaryError(StackError):
    """PostgreSQL or Mosquitto is not installed; the message says how to install it."""


# --------------------------------------------------------------------------- ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` when nobody listens there, else a port the kernel picks."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------------------- child processes

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child if its parent dies, even by ``kill -9``.

    Without it a crashed supervisor would leave a broker or postmaster holding ports.
    Runs in the child between fork and exec.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    user: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session (so Ctrl-C reaches only the supervisor, which
    then stops children in order), writing its output to ``log_path``."""
    log_file: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            user=user,
            env=env,
            cwd=cwd,
        )
    finally:
        log_file.close()


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0
) -> None:
    """Signal, wait, and escalate to SIGKILL if the process will not go."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``check`` until true; fail early if ``alive`` says the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(f"{what} exited while starting")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(interval)


def await_ready(
    proc: subprocess.Popen[bytes],
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log_path: Path,
    on_failure: Callable[[], None],
) -> None:
    """Wait for a started service; on failure clean up and say what its log says."""
    try:
        wait_until(check, timeout=timeout, what=what, alive=lambda: proc.poll() is None)
    except StackError as exc:
        on_failure()
        raise StackError(f"{exc}; log {log_path}:\n{tail(log_path)}") from None


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _service_user(name: str) -> str | None:
    """The unprivileged user to run a service as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise StackError(
            f"running as root, but there is no '{name}' system user to run the service as"
        ) from None
    return name


def _hand_over(path: Path, user: str | None) -> None:
    """Give a folder (recursively) to the service user."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


# ------------------------------------------------------------------------ PostgreSQL


_INSTALL_POSTGRES = "run scripts/setup, or install it with `apt-get install postgresql`"
_INSTALL_MOSQUITTO = "run scripts/setup, or install it with `apt-get install mosquitto`"


def find_postgres_bindir(configured: Path | None = None) -> Path:
    """The configured, else the newest installed, PostgreSQL server ``bin`` folder."""
    if configured is not None:
        if (configured / "initdb").exists() and (configured / "postgres").exists():
            return configured
        raise MissingBinaryError(
            f"PostgreSQL server not found in {configured} (no initdb/postgres): {_INSTALL_POSTGRES}"
        )
    candidates: list[Path] = []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit() and (p / "bin/postgres").exists()),
            key=lambda p: int(p.name),
        )
        candidates += [p / "bin" for p in reversed(versions)]
    found = shutil.which("postgres")
    if found:
        candidates.append(Path(found).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise MissingBinaryError(f"PostgreSQL server not found (initdb, postgres): {_INSTALL_POSTGRES}")


def find_mosquitto(configured: Path | None = None) -> Path:
    """The configured, else the installed, Mosquitto broker binary (Debian puts it in
    /usr/sbin, off a normal user's PATH)."""
    if configured is not None:
        if configured.is_file() and os.access(configured, os.X_OK):
            return configured
        raise MissingBinaryError(
            f"Mosquitto broker not found at {configured}: {_INSTALL_MOSQUITTO}"
        )
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise MissingBinaryError(f"Mosquitto broker not found: {_INSTALL_MOSQUITTO}")
    return Path(found)


def _pkglibdir(bindir: Path) -> Path | None:
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run(
            [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0:
            return Path(out.stdout.strip())
    guess = bindir.parent / "lib"
    return guess if guess.is_dir() else None


def timescaledb_installed(bindir: Path) -> bool:
    lib = _pkglibdir(bindir)
    return lib is not None and (lib / "timescaledb.so").exists()


class PostgresCluster:
    """A private cluster in ``data_dir``: initialised on first start, kept after.

    Password authentication over loopback TCP only; the superuser ``smartby`` has a
    random password written (0600) next to the cluster, so other local users cannot
    walk in as they could with ``trust``.
    """

    superuser = "smartby"

    def __init__(
        self,
        root: Path,
        *,
        port: int,
        durable: bool = True,
        bindir: Path | None = None,
        timescaledb: bool | None = None,
        extra_settings: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.data = root / "data"
        self.run_dir = root / "run"
        self.log_path = root / "postgresql.log"
        self.port = port
        self.durable = durable
        self.bindir = bindir or find_postgres_bindir()
        self.user = _service_user("postgres")
        # None: preload TimescaleDB when it is installed (False lets tests run the
        # plain-PostgreSQL path on a machine that has it).
        installed = timescaledb_installed(self.bindir)
        self.with_timescaledb = installed if timescaledb is None else timescaledb and installed
        self.extra_settings = list(extra_settings)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def password(self) -> str:
        return (self.root / "superuser.password").read_text().strip()

    def url(self, dbname: str = "smartby") -> str:
        return (
            f"postgresql://{self.superuser}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(dbname, safe='')}"
        )

    def _initdb(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        pw_file = self.root / "superuser.password"
        if not pw_file.exists():
            pw_file.write_text(secrets.token_urlsafe(24) + "\n")
            pw_file.chmod(0o600)
        self.run_dir.mkdir(exist_ok=True)
        self.data.mkdir(exist_ok=True)
        # initdb reads the password file as the service user: give it a readable copy.
        tmp_pw = self.run_dir / "initdb.pw"
        tmp_pw.write_text(self.password + "\n")
        _hand_over(self.root, self.user)
        (self.root / "superuser.password").chmod(0o600)
        try:
            result = subprocess.run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    self.superuser,
                    f"--pwfile={tmp_pw}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                capture_output=True,
                text=True,
                user=self.user,
                check=False,
            )
        finally:
            tmp_pw.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed in {self.data}: {result.stderr.strip()[-300:]}")
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.run_dir}'",
            "timescaledb.telemetry_level = off",
            "max_connections = 200",
        ]
        if self.with_timescaledb:
            settings.append("shared_preload_libraries = 'timescaledb'")
        if not self.durable:
            # Test clusters are thrown away: trade crash safety for speed.
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        settings += self.extra_settings
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# added by smartby\n" + "\n".join(settings) + "\n")

    def start(self, timeout: float = 60.0) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        _hand_over(self.run_dir, self.user)
        if self.user is not None:
            self.log_path.touch()
            _hand_over(self.log_path, self.user)
        self.proc = spawn(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.run_dir}",
            ],
            log_path=self.log_path,
            user=self.user,
        )
        await_ready(
            self.proc,
            self._accepts_connections,
            timeout=timeout,
            what=f"PostgreSQL on port {self.port}",
            log_path=self.log_path,
            on_failure=self.stop,
        )
        self.ensure_database("smartby")

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def ensure_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop(self) -> None:
        """Fast shutdown (SIGINT): roll back open transactions, checkpoint, exit."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT, timeout=60)
            self.proc = None


# ------------------------------------------------------------------------- Mosquitto


class MosquittoBroker:
    """A private Mosquitto on loopback with its own config and persistence folder.

    The broker settings follow the ingest contract: QoS 1 messages for an offline
    persistent session are queued (up to a large bound, so a worker restart loses
    nothing), and the per-client inflight window is large enough for a whole ingest
    batch, because the worker acknowledges only after the batch commits.
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int,
        max_inflight: int = 20_000,
        max_queued: int = 2_000_000,
        binary: Path | None = None,
        extra_config: Sequence[str] = (),
        password_file: Path | None = None,
        acl_file: Path | None = None,
    ) -> None:
        self.root = root
        self.port = port
        # With a password file the broker refuses anonymous clients, and the ACL binds
        # each device to its own topics (the registry writes both files).
        self.password_file = password_file
        self.acl_file = acl_file
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.binary = binary or find_mosquitto()
        self.extra_config = list(extra_config)
        self.config_path = root / "mosquitto.conf"
        self.log_path = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        lines = [
            "# written by smartby; changes are overwritten at start",
            f"listener {self.port} 127.0.0.1",
            *(
                [
                    "allow_anonymous false",
                    f"password_file {self.password_file}",
                    *([f"acl_file {self.acl_file}"] if self.acl_file else []),
                ]
                if self.password_file
                else ["allow_anonymous true"]
            ),
            "persistence true",
            f"persistence_location {self.root}/",
            "autosave_interval 60",
            f"max_inflight_messages {self.max_inflight}",
            f"max_queued_messages {self.max_queued}",
            "max_queued_bytes 0",
            # as in deploy/mosquitto/mosquitto.conf: bigger packets are refused by the
            # broker; the worker quarantines payloads over its own (smaller) limit
            "max_packet_size 1048576",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
            # Stay the user we start as: the folder is ours, and we never start as root
            # in production (compose runs the official image).
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            *self.extra_config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 20.0) -> None:
        self.write_config()
        self.proc = spawn([str(self.binary), "-c", str(self.config_path)], log_path=self.log_path)
        await_ready(
            self.proc,
            self._accepts_connections,
            timeout=timeout,
            what=f"Mosquitto on port {self.port}",
            log_path=self.log_path,
            on_failure=self.stop,
        )

    def _accepts_connections(self) -> bool:
        """A real MQTT CONNECT/CONNACK exchange, not just an open TCP port."""
        # MQTT 3.1.1 CONNECT with clean session and a fixed client id (§3.1).
        client_id = b"smartby-probe"
        variable = b"\x00\x04MQTT\x04\x02\x00\x0a"
        payload = len(client_id).to_bytes(2, "big") + client_id
        packet = bytes([0x10, len(variable) + len(payload)]) + variable + payload
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(packet)
                ack = sock.recv(4)
                sock.sendall(b"\xe0\x00")  # DISCONNECT
        except OSError:
            return False
        # Any CONNACK (0x20, remaining length 2) means the broker is serving MQTT; with
        # passwords required it refuses this anonymous probe (return code 5, §3.2.2.3).
        return len(ack) == 4 and ack[0] == 0x20 and ack[1] == 2

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads password and ACL files without dropping clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=20)
            self.proc = None


# ------------------------------------------------------------- the running stack file


@dataclass(frozen=True, slots=True)
class RunningStack:
    """What ``smartby up`` writes to ``<data_dir>/stack.json`` while it runs, so that
    other commands (``smartby db migrate``, ``smartby simulate``) find its services."""

    pid: int
    database_url: str
    mqtt_host: str
    mqtt_port: int
    api_url: str | None = None
    metrics_url: str | None = None


def write_running_stack(data_dir: Path, stack: RunningStack) -> Path:
    path = data_dir / "stack.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(stack), indent=2) + "\n")
    tmp.chmod(0o600)  # it holds the database password
    tmp.replace(path)
    return path


def read_running_stack(data_dir: Path) -> RunningStack | None:
    """The stack file, if its supervisor is still alive."""
    path = data_dir / "stack.json"
    try:
        raw = json.loads(path.read_text())
        stack = RunningStack(**raw)
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(stack.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    return stack


def clear_running_stack(data_dir: Path) -> None:
    (data_dir / "stack.json").unlink(missing_ok=True)
