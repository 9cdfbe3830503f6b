"""What the ingest workers' indicator thread does after each indicator pass: the public
warnings (`ingest.warnings`, which read the fresh ``aqi_hourly``) and, once an hour,
storage retention (`db.lifecycle`) where no TimescaleDB job does it.

Retention runs through the owner's ``smartby_retention_step`` (migration 0010): the
worker's role may trigger it but not choose what goes, and it never drops readings
whose rollups are incomplete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge
from psycopg.rows import TupleRow

from core.settings import Settings
from core.warnings import WarningTexts
from db.lifecycle import COMPRESSION_NEEDS, PASS_INTERVAL, edition, native_job, retention_pass
from ingest.warnings import Publish, WarningJob

log = logging.getLogger(__name__)


class Upkeep:
    def __init__(
        self,
        settings: Settings,
        texts: WarningTexts | None,
        publish: Publish,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.warnings = WarningJob(settings, texts) if texts is not None else None
        self.publish = publish
        self.clock = clock
        self._next_retention = clock()
        self._announced = False
        self.issued = Counter(
            "smartby_warnings_issued",
            "Public air-quality warning messages issued, by event",
            ["event"],
            registry=registry,
        )
        self.published = Counter(
            "smartby_warnings_published",
            "Public warning messages the broker acknowledged",
            registry=registry,
        )
        self.removed = Counter(
            "smartby_retention_removed_readings",
            "Raw readings removed by retention",
            registry=registry,
        )
        self.kept = Gauge(
            "smartby_retention_blocked",
            "1 while retention keeps an expired range because its rollups are incomplete",
            registry=registry,
        )

    def run(self, conn: psycopg.Connection[TupleRow]) -> None:
        """One pass; ``conn`` is idle (no transaction open) and not in autocommit."""
        if self.warnings is not None:
            for issued in self.warnings.run(conn):
                self.issued.labels(issued.event).inc()
            self.published.inc(self.warnings.publish(conn, self.publish))
        if self.clock() >= self._next_retention:
            self._retention(conn)
            self._next_retention = self.clock() + PASS_INTERVAL.total_seconds()

    def _retention(self, conn: psycopg.Connection[TupleRow]) -> None:
        conn.autocommit = True
        try:
            job = native_job(conn)
            if not self._announced:
                self._announced = True
                if job is not None:
                    log.info("retention runs as TimescaleDB job %d, not in this worker", job)
                elif edition(conn) == "apache":
                    log.info(
                        "retention runs in the ingest workers (drop_chunks); %s", COMPRESSION_NEEDS
                    )
            if job is not None:
                return
            report = retention_pass(conn)
        finally:
            conn.autocommit = False
        self.removed.inc(report.removed_readings)
        self.kept.set(1 if report.kept else 0)
        if report.removed_readings or report.removed_quarantine or report.removed_health:
            log.info(
                "retention removed %d readings (%s), %d quarantined messages and %d device"
                " health rows",
                report.removed_readings,
                ", ".join(f"{a:%Y-%m-%d}..{b:%Y-%m-%d}" for a, b in report.ranges) or "-",
                report.removed_quarantine,
                report.removed_health,
            )
        if report.kept:
            start, end, why = report.kept
            log.warning("retention keeps readings %s .. %s: %s", start, end, why)
