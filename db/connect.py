"""Connections to PostgreSQL: which database the settings name, and how to reach it.

The URL comes from ``SMARTBY_DATABASE_URL``, or from whoever started or found the
database: ``smartby`` fills in the embedded stack's URL (``smartby/locate.py``), the
test fixtures and the benchmarks hand over their own cluster's.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

from core.settings import Settings, SettingsError


def database_url(settings: Settings) -> str:
    """The libpq URL to use, or a `SettingsError` that says how to get one."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    raise SettingsError(
        "no database: set SMARTBY_DATABASE_URL, or start the embedded stack with `smartby up`"
    )


def connect(
    url: str, *, autocommit: bool = False, application_name: str = "smartby"
) -> psycopg.Connection[TupleRow]:
    """Open a connection that names itself in ``pg_stat_activity``."""
    return psycopg.connect(
        url, autocommit=autocommit, application_name=application_name, connect_timeout=10
    )


def server_versions(conn: psycopg.Connection[TupleRow]) -> dict[str, str | None]:
    """PostgreSQL version, TimescaleDB version and licence edition (None when absent).

    The licence matters: the Apache edition (Debian's build) has hypertables but no
    compression, continuous aggregates or policies, so the code checks before using them.
    """
    pg = conn.execute("SHOW server_version").fetchone()
    ts = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    licence: str | None = None
    if ts is not None:
        row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
        licence = row[0] if row else None
    return {
        "postgresql": pg[0] if pg else None,
        "timescaledb": ts[0] if ts else None,
        "timescaledb_license": licence,
    }


def has_timescaledb(conn: psycopg.Connection[TupleRow]) -> bool:
    """Whether the extension is installed in this database."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None
