"""Storage lifecycle: what is kept how long, and how much room it takes.

Raw readings are kept for ``SMARTBY_RETENTION_RAW`` (unset: for ever), quarantined
messages for ``SMARTBY_RETENTION_QUARANTINE`` (90 days), device health for
``SMARTBY_RETENTION_HEALTH`` (400 days, migration 0016); rollups and indicators for
ever.  The owner writes those settings into ``lifecycle_settings`` (`apply_settings`,
from ``smartby db migrate``), and the SQL of migration 0010 does the removing:

* **TimescaleDB community edition** (``SHOW timescaledb.license`` = ``timescale``, the
  compose image): native compression of chunks older than ``SMARTBY_COMPRESS_AFTER``
  (segmented by series, ordered by time) with ``add_compression_policy``, and the
  retention procedure scheduled as a TimescaleDB job (``add_job``).  Not
  ``add_retention_policy``: it drops every chunk past the age, and a chunk whose
  rollups are incomplete must stay (`smartby_raw_incomplete`).
* **Apache edition** (Debian's build, ``smartby up``): no compression and no job
  scheduler, so an ingest worker runs the same retention steps (`retention_pass`),
  dropping whole chunks with ``drop_chunks``.
* **plain PostgreSQL**: the same steps delete the oldest expired day in batches.

The community-edition statements cannot run on the Apache build these tests use;
`community_statements` builds them as plain data so a test can check them against
TimescaleDB's documented signatures and the installed catalogue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from core.errors import SmartbyError
from core.settings import Settings

log = logging.getLogger(__name__)

Edition = Literal["timescale", "apache", "postgresql"]
Statement = tuple[sql.SQL | sql.Composed, dict[str, object]]

#: what the scheduled job runs (migration 0010)
JOB_PROCEDURE = "smartby_lifecycle_job"
#: how often the job (or the ingest worker on the Apache edition) runs a pass
PASS_INTERVAL = timedelta(hours=1)
COMPRESSION_NEEDS = (
    "compression of old readings needs the TimescaleDB community edition "
    "(SHOW timescaledb.license = 'timescale', e.g. the timescale/timescaledb image)"
)


def edition(conn: psycopg.Connection[TupleRow]) -> Edition:
    """Which storage features this database has (see the module docstring)."""
    row = conn.execute(
        "SELECT current_setting('timescaledb.license', true),"
        " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    if row is None or not row[1]:
        return "postgresql"
    return "timescale" if row[0] == "timescale" else "apache"


def community_statements(settings: Settings) -> list[Statement]:
    """The community edition's native compression and the scheduled retention job.

    Each is idempotent, so ``smartby db migrate`` runs them every time and a changed
    setting takes effect: the compression policy is removed and added again
    (``add_compression_policy(..., if_not_exists => true)`` would keep an old age),
    and so is the job."""
    return [
        (
            sql.SQL(
                "ALTER TABLE readings SET (timescaledb.compress,"
                " timescaledb.compress_segmentby = 'series_id',"
                " timescaledb.compress_orderby = 'time')"
            ),
            {},
        ),
        (sql.SQL("SELECT remove_compression_policy('readings', if_exists => true)"), {}),
        (
            sql.SQL(
                "SELECT add_compression_policy('readings', compress_after => %(compress_after)s)"
            ),
            {"compress_after": settings.compress_after},
        ),
        (
            sql.SQL(
                "SELECT delete_job(job_id) FROM timescaledb_information.jobs"
                " WHERE proc_name = %(procedure)s"
            ),
            {"procedure": JOB_PROCEDURE},
        ),
        (
            sql.SQL("SELECT add_job({}, schedule_interval => %(every)s)").format(
                sql.Literal(JOB_PROCEDURE)
            ),
            {"every": PASS_INTERVAL},
        ),
    ]


@dataclass(slots=True)
class Applied:
    edition: Edition
    lines: list[str] = field(default_factory=list)


def apply_settings(conn: psycopg.Connection[TupleRow], settings: Settings) -> Applied:
    """Write the retention settings and, on the community edition, the native policies
    (as the owner, in autocommit mode)."""
    conn.execute(
        "INSERT INTO lifecycle_settings (raw_retention, quarantine_retention, health_retention)"
        " VALUES (%s, %s, %s) ON CONFLICT (singleton) DO UPDATE SET"
        " raw_retention = EXCLUDED.raw_retention,"
        " quarantine_retention = EXCLUDED.quarantine_retention,"
        " health_retention = EXCLUDED.health_retention, updated_at = now()",
        (settings.retention_raw, settings.retention_quarantine, settings.retention_health),
    )
    applied = Applied(edition(conn))
    raw = describe(settings.retention_raw)
    applied.lines.append(
        f"raw readings kept {raw}, quarantine {describe(settings.retention_quarantine)},"
        f" device health {describe(settings.retention_health)},"
        " rollups and indicators for ever"
    )
    if applied.edition == "timescale":
        with conn.transaction():
            for statement, params in community_statements(settings):
                conn.execute(statement, params)
        applied.lines.append(
            f"compression of chunks older than {describe(settings.compress_after)} and the"
            f" retention job ({JOB_PROCEDURE}, hourly) scheduled in TimescaleDB"
        )
    else:
        applied.lines.append(
            "retention runs in the ingest workers (hourly); " + COMPRESSION_NEEDS
            if applied.edition == "apache"
            else "retention runs in the ingest workers (hourly, batched DELETE); no TimescaleDB"
        )
    return applied


def describe(span: timedelta | None) -> str:
    if span is None:
        return "for ever"
    days = span / timedelta(days=1)
    if days >= 365 and days % 365 == 0:
        return f"{int(days // 365)} year(s)"
    return f"{days:g} day(s)" if days >= 1 else f"{span.total_seconds() / 3600:g} hour(s)"


# ------------------------------------------------------------------ retention passes


@dataclass(slots=True)
class RetentionReport:
    removed_readings: int = 0
    ranges: list[tuple[datetime, datetime]] = field(default_factory=list)
    kept: tuple[datetime, datetime, str] | None = None
    removed_quarantine: int = 0
    removed_health: int = 0


def native_job(conn: psycopg.Connection[TupleRow]) -> int | None:
    """The TimescaleDB job that runs retention, if one is scheduled (community edition)."""
    if conn.execute("SELECT to_regclass('timescaledb_information.jobs')").fetchone() == (None,):
        return None
    row = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s", (JOB_PROCEDURE,)
    ).fetchone()
    return int(row[0]) if row else None


def retention_pass(
    conn: psycopg.Connection[TupleRow],
    *,
    at: datetime | None = None,
    max_rows: int = 100_000,
    max_steps: int = 10_000,
) -> RetentionReport:
    """Remove what has expired, oldest first, one step per transaction, until nothing is
    left or a range must be kept.  ``conn`` must be in autocommit mode.

    Without ``at`` it calls the owner's ``smartby_retention_step`` (what the writer role
    may run); with ``at`` (tests, as the owner) it runs the steps as of that time."""
    if not conn.autocommit:
        raise ValueError("retention_pass() needs an autocommit connection")
    report = RetentionReport()
    for _ in range(max_steps):
        if at is None:
            row = conn.execute("SELECT * FROM smartby_retention_step(%s)", (max_rows,)).fetchone()
        else:
            row = conn.execute(
                "SELECT * FROM smartby_expire_readings(%s, %s)", (at, max_rows)
            ).fetchone()
        if row is None:
            break
        start, end, removed, kept = row
        if kept is not None:
            report.kept = (start, end, str(kept))
            break
        report.removed_readings += int(removed)
        if not report.ranges or report.ranges[-1] != (start, end):
            report.ranges.append((start, end))
        if removed == 0:
            break
    report.removed_quarantine = _expire_in_steps(
        conn, "quarantine", at=at, max_rows=max_rows, max_steps=max_steps
    )
    report.removed_health = _expire_in_steps(
        conn, "health", at=at, max_rows=max_rows, max_steps=max_steps
    )
    return report


def _expire_in_steps(
    conn: psycopg.Connection[TupleRow],
    what: Literal["quarantine", "health"],
    *,
    at: datetime | None,
    max_rows: int,
    max_steps: int,
) -> int:
    """Rows of quarantine or device health removed past their retention, a batch per
    transaction: as of now by the step the writer may run, or as of ``at`` (owner)."""
    step = sql.SQL("SELECT smartby_{}_step(%s)").format(sql.SQL(what))
    expire = sql.SQL("SELECT smartby_expire_{}(%s, %s)").format(sql.SQL(what))
    removed = 0
    for _ in range(max_steps):
        if at is None:
            row = conn.execute(step, (max_rows,)).fetchone()
        else:
            row = conn.execute(expire, (at, max_rows)).fetchone()
        batch = int(row[0]) if row else 0
        removed += batch
        if batch < max_rows:
            break
    return removed


def raw_dropped_before(conn: psycopg.Connection[TupleRow]) -> datetime | None:
    """Every reading before this was removed by retention (None: nothing was)."""
    if conn.execute("SELECT to_regclass('lifecycle_settings')").fetchone() == (None,):
        return None
    row = conn.execute("SELECT raw_dropped_before FROM lifecycle_settings").fetchone()
    return row[0] if row else None


class ExpiredError(SmartbyError):
    """A recomputation asked for time whose raw readings retention has removed."""


def refuse_expired(conn: psycopg.Connection[TupleRow], start: datetime, what: str) -> None:
    """Raise `ExpiredError` when ``start`` is before what retention removed: recomputing
    rollups or indicators there from raw readings would replace them with nothing."""
    horizon = raw_dropped_before(conn)
    if horizon is not None and start < horizon:
        raise ExpiredError(
            f"{what} from {start.isoformat()} is not possible: the raw readings before "
            f"{horizon.isoformat()} were removed by retention (SMARTBY_RETENTION_RAW), and "
            "the rollups and indicators there are all that is left"
        )
