"""Backups with ``pg_dump`` (custom format) and restores with ``pg_restore``.

`backup` writes ``smartby-<UTC time>.dump`` (atomically: a ``.partial`` file renamed
when pg_dump succeeded) with a small ``.json`` beside it naming the server versions,
and keeps the newest ``keep``.  `restore` follows TimescaleDB's documented procedure
for logical backups ("Logical backups with pg_dump and pg_restore"): into an empty
database, create the extension, ``SELECT timescaledb_pre_restore()``, ``pg_restore``,
``SELECT timescaledb_post_restore()``; the TimescaleDB version must be the one the
backup was taken from.  Roles belong to the cluster, not the dump: the group roles
of migration 0011 are created before the restore (the dump grants to them), the
logins afterwards with ``smartby db roles``.

The password goes to the tools in ``PGPASSWORD``, never on their command line (which
every local user can read in ``ps``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.errors import SmartbyError
from db.connect import server_versions

#: pattern of the files `backup` writes (and `rotate` may delete: nothing else)
NAME = re.compile(r"^smartby-(\d{8}T\d{6}Z)\.dump$")
#: the group roles of migration 0011, which the dump's GRANTs name
GROUP_ROLES = ("smartby_writer", "smartby_reader", "smartby_registrar")
#: pg_dump's notes about TimescaleDB's own catalogue, expected and harmless (its docs
#: say so): not errors, not worth showing
_HARMLESS = (
    "there are circular foreign-key constraints",
    "consider using a full dump instead of a --data-only dump",
    "you might not be able to restore the dump without using --disable-triggers",
)

Progress = Callable[[int, int, str], None]


class BackupError(SmartbyError):
    """A backup or restore failed; the message is the tool's own last error line."""


def _tool(bindir: Path, name: str) -> Path:
    path = bindir / name
    if not path.exists():
        raise BackupError(f"{name} not found in {bindir}: install the PostgreSQL client tools")
    return path


def _environment(url: str) -> tuple[str, dict[str, str]]:
    """The connection string without its password, and the environment holding it."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ}
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()]
    return (errors or lines or ["no message"])[-1][:500]


def _relations(url: str) -> int:
    """How many tables pg_dump will dump (the progress bar's length)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog',"
            " 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%%'"
        ).fetchone()
    return int(row[0]) if row else 0


@dataclass(slots=True)
class BackupResult:
    path: Path
    bytes: int
    tables: int
    removed: list[Path] = field(default_factory=list)


def backup(
    url: str,
    folder: Path,
    bindir: Path,
    *,
    keep: int | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> BackupResult:
    """Dump the database into ``folder``; with ``keep``, delete all but the newest
    ``keep`` backups there afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = folder / f"smartby-{stamp}.dump"
    partial = target.with_name(target.name + ".partial")
    with psycopg.connect(url) as conn:
        versions = server_versions(conn)
    total = _relations(url)
    conninfo, env = _environment(url)
    argv = [
        str(_tool(bindir, "pg_dump")),
        "--format=custom",
        "--verbose",
        f"--file={partial}",
        f"--dbname={conninfo}",
    ]
    done = 0
    messages: list[str] = []
    with subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "dumping contents of table" in line:
                done += 1
                if progress is not None:
                    progress(done, max(total, done), line.rsplit('"', 2)[-2] if '"' in line else "")
            elif not any(h in line for h in _HARMLESS):
                messages.append(line)
        code = proc.wait()
    if code != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {_last_error(''.join(messages))}")
    partial.rename(target)
    target.with_suffix(".json").write_text(
        json.dumps({"taken": stamp, "tables": done, **versions}, indent=2) + "\n"
    )
    result = BackupResult(target, target.stat().st_size, done)
    if keep is not None:
        result.removed = rotate(folder, keep)
    return result


def backups(folder: Path) -> list[Path]:
    """The backups in ``folder``, oldest first (by the time in their names)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if NAME.match(p.name)), key=lambda p: p.name)


def rotate(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups (and their .json); what was deleted."""
    if keep < 1:
        raise BackupError("--keep must be at least 1")
    old = backups(folder)[:-keep]
    for path in old:
        path.unlink()
        path.with_suffix(".json").unlink(missing_ok=True)
    return old


# ------------------------------------------------------------------------ restore


@dataclass(slots=True)
class RestoreResult:
    items: int
    timescaledb: bool
    versions: dict[str, str | None]


def _listing(pg_restore: Path, dump: Path) -> list[str]:
    out = subprocess.run(
        [str(pg_restore), "--list", str(dump)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise BackupError(f"{dump} is not a pg_dump custom-format file: {_last_error(out.stderr)}")
    return [ln for ln in out.stdout.splitlines() if ln and not ln.startswith(";")]


def restore(
    url: str, dump: Path, bindir: Path, *, progress: Progress | None = None
) -> RestoreResult:
    """Restore ``dump`` into the empty database at ``url`` (see the module docstring)."""
    if not dump.is_file():
        raise BackupError(f"no backup file {dump}")
    pg_restore = _tool(bindir, "pg_restore")
    items = _listing(pg_restore, dump)
    # a listing line: "<id>; <catalog oid> <oid> EXTENSION - timescaledb [owner]"
    with_timescaledb = any(re.search(r" EXTENSION - timescaledb\b", ln) for ln in items)
    recorded = _recorded_versions(dump)
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        if tables and tables[0]:
            name = conninfo_to_dict(url).get("dbname", "?")
            raise BackupError(
                f"database {name} is not empty ({tables[0]} tables): restore into a new, "
                "empty database (createdb), never over live data"
            )
        for role in GROUP_ROLES:
            if (
                conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                is None
            ):
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        if with_timescaledb:
            _prepare_timescaledb(conn, recorded)
            conn.execute("SELECT timescaledb_pre_restore()")
    conninfo, env = _environment(url)
    argv = [
        str(pg_restore),
        "--verbose",
        "--no-owner",
        "--exit-on-error",
        f"--dbname={conninfo}",
        str(dump),
    ]
    done = 0
    messages: list[str] = []
    try:
        with subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
        ) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "processing item" in line or "creating " in line:
                    done += 1
                    if progress is not None:
                        progress(min(done, len(items)), len(items), line.strip()[-80:])
                else:
                    messages.append(line)
            code = proc.wait()
    finally:
        if with_timescaledb:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT timescaledb_post_restore()")
    if code != 0:
        raise BackupError(f"pg_restore failed: {_last_error(''.join(messages))}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        versions = server_versions(conn)
    return RestoreResult(len(items), with_timescaledb, versions)


def _recorded_versions(dump: Path) -> dict[str, str | None]:
    sidecar = dump.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        recorded = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return {}
    return {k: recorded.get(k) for k in ("postgresql", "timescaledb", "timescaledb_license")}


def _prepare_timescaledb(
    conn: psycopg.Connection[tuple[object, ...]], recorded: dict[str, str | None]
) -> None:
    """Create the extension at the version the backup came from (TimescaleDB restores
    only into the same version)."""
    available = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()
    if available is None or preloaded is None or "timescaledb" not in str(preloaded[0]):
        raise BackupError(
            "the backup holds a TimescaleDB database, and this server has no TimescaleDB "
            "(install it and add it to shared_preload_libraries)"
        )
    wanted = recorded.get("timescaledb")
    if wanted and wanted != available[0]:
        raise BackupError(
            f"the backup was taken with TimescaleDB {wanted}; this server has "
            f"{available[0]}: restore with the same version, then upgrade"
        )
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
