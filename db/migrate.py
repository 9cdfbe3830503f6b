"""Numbered SQL migrations and the small runner that records what ran.

Files are ``db/migrations/NNNN_name.sql``; each runs in one transaction together
with the row that records it, so a failing file leaves nothing half-applied.  A
session-level advisory lock lets several processes (compose replicas, tests) call
``migrate`` at once: the first applies, the others wait and find nothing to do.
A file that changed after it was applied is an error, not a silent skip.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

from core.errors import SmartbyError

log = logging.getLogger(__name__)

#: Arbitrary but fixed key for pg_advisory_lock: "smartby migrations".
_LOCK_KEY = 0x736D_6172_7462_79


class MigrationError(SmartbyError):
    """A migration could not be applied, or the applied history disagrees with the files."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def discover(directory: Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the packaged ones), in version order."""
    folder = directory or Path(str(resources.files("db") / "migrations"))
    found: dict[int, Migration] = {}
    for path in sorted(folder.iterdir()):
        match = _FILENAME.match(path.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version:04d} in {folder}")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def applied(conn: psycopg.Connection[TupleRow]) -> dict[int, str]:
    """Version → checksum of what this database has recorded as applied."""
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if exists is None or exists[0] is None:
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {int(v): str(c) for v, c in rows}


def migrate(
    conn: psycopg.Connection[TupleRow], migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply what has not run yet; return what was applied (empty when up to date).

    ``conn`` must be in autocommit mode: each migration opens its own transaction.
    """
    if not conn.autocommit:
        raise MigrationError("migrate() needs an autocommit connection")
    todo = discover() if migrations is None else migrations
    # Lock first: even CREATE TABLE IF NOT EXISTS races with itself in PostgreSQL.
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        return _apply(conn, todo)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _apply(conn: psycopg.Connection[TupleRow], todo: list[Migration]) -> list[Migration]:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               checksum   text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    done = applied(conn)
    newly: list[Migration] = []
    for migration in todo:
        recorded = done.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise MigrationError(
                    f"{migration.filename} changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        log.info("applying migration %s", migration.filename)
        try:
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        except psycopg.Error as exc:
            raise MigrationError(f"{migration.filename} failed: {exc}") from exc
        newly.append(migration)
    return newly
