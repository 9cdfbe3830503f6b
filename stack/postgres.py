"""The embedded PostgreSQL: a private cluster on loopback, initialised on first start.

Used by ``smartby up`` (data kept in ``.smartby/`` between runs), by the test fixtures
and by the benchmarks (a throw-away folder, free ports).  It runs as a child process
of the caller (`stack.process`), on loopback only, so nothing outside this machine
can reach it.

PostgreSQL refuses to run as root; when we are root the cluster runs as the
``postgres`` system user that Debian's package creates, and its folders are handed
to that user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from stack.process import MissingBinaryError, StackError, await_ready, spawn, stop_process

_INSTALL_POSTGRES = "run scripts/setup, or install it with `apt-get install postgresql`"


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
        # Private: the service user owns it after the hand-over (root reads it anyway).
        self.root.chmod(0o700)
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
        self.launch()
        assert self.proc is not None
        await_ready(
            self.proc,
            self.accepts_connections,
            timeout=timeout,
            what=f"PostgreSQL on port {self.port}",
            log_path=self.log_path,
            on_failure=self.stop,
        )
        self.ensure_database("smartby")

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the postmaster (initialising the cluster first if new) without waiting
        for it: a supervisor polls `accepts_connections` between its other duties."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self.root.chmod(0o700)  # also a cluster an older version made 0755
        self.run_dir.chmod(0o700)
        _hand_over(self.run_dir, self.user)
        if self.user is not None:
            self.log_path.touch(mode=0o600)
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
                # the socket is for the service user alone (clients use loopback TCP)
                "-c",
                "unix_socket_permissions=0700",
            ],
            log_path=self.log_path,
            user=self.user,
        )
        return self.proc

    def accepts_connections(self) -> bool:
        """A real login and query, not just an open port."""
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
