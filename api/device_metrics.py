"""How long ago each device was heard from, for Prometheus: read from the devices
table when /metrics is scraped.

Why the API's /metrics and not the ingest workers': under the shared subscription
(MQTT v5 §4.8.2) the broker hands each message to one worker of the group, so no
worker sees every device, and a device that falls silent makes no worker count
anything.  The devices table knows: every worker writes ``last_seen`` there on each
message and status (ingest/writer.py), and the API, which reads that database
anyway, is scraped every 15 s.  One query per scrape over a table of thousands of
rows costs about a millisecond; one series per device is a cardinality Prometheus
takes in its stride at that size.

Exported, per active device heard from at least once (labels device, kind, site):

- ``smartby_device_last_seen_age_seconds``: seconds since it was last heard from,
  by the database's clock (no skew between the API's host and the database's);
- ``smartby_device_silent_after_seconds``: how long it may stay quiet
  (`core.health.silent_after`: three reporting intervals), the same rule the status
  API, the website and the operations dashboard use, so an alert and a page agree;

and ``smartby_devices`` by state (`core.health.device_state`), and
``smartby_api_database_up``, 0 when this scrape's query failed (then no device
series are exported rather than stale ones; the database alert says why).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg import sql
from psycopg_pool import PoolTimeout

from api.db import Pool
from api.queries import Query
from core.health import DEVICE_STATES, DeviceState, device_state, silent_after

log = logging.getLogger(__name__)

#: the longest a scrape waits for the database: Prometheus's scrape timeout is 10 s,
#: and a scrape that times out would look like the API being down
QUERY_TIMEOUT_S = 3.0
DEVICE_LABELS = ("device", "kind", "site")


def device_freshness_query() -> Query:
    """Every device's kind, site, registry status, own word (online) and the
    seconds since it was last heard from (NULL: never), with the database's now."""
    query = sql.SQL(
        "SELECT id, kind, coalesce(site_id, ''), status, online, last_seen,"
        " extract(epoch FROM now() - last_seen)::float8, now()"
        " FROM devices ORDER BY id"
    )
    return query, {}


@dataclass(frozen=True, slots=True)
class DeviceFreshness:
    device: str
    kind: str
    site: str
    state: DeviceState
    #: seconds since last heard from; None: never heard from
    age_s: float | None


@dataclass(slots=True, eq=False)  # the registry keeps collectors in a set: by identity
class DeviceCollector(Collector):
    """The devices' freshness as of the last `refresh` (each scrape refreshes first)."""

    devices: list[DeviceFreshness] = field(default_factory=list)
    database_up: bool = False

    async def refresh(self, pool: Pool) -> None:
        """Read the devices table; on failure export ``database_up`` 0 and no device
        series (one warning line: the scrape itself must still succeed)."""
        try:
            async with asyncio.timeout(QUERY_TIMEOUT_S):
                async with pool.connection(timeout=QUERY_TIMEOUT_S) as conn:
                    query, params = device_freshness_query()
                    cursor = await conn.execute(query, params)
                    rows = await cursor.fetchall()
        except (TimeoutError, PoolTimeout, psycopg.Error) as exc:
            log.warning("device metrics: the database did not answer (%s)", type(exc).__name__)
            self.devices, self.database_up = [], False
            return
        self.devices = [freshness(row) for row in rows]
        self.database_up = True

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "smartby_api_database_up",
            "1 when the API's database answered the device query of this scrape.",
        )
        up.add_metric([], 1.0 if self.database_up else 0.0)
        yield up
        age = GaugeMetricFamily(
            "smartby_device_last_seen_age_seconds",
            "Seconds since the device was last heard from (telemetry or status), per "
            "active device heard from at least once.",
            labels=DEVICE_LABELS,
        )
        allowed = GaugeMetricFamily(
            "smartby_device_silent_after_seconds",
            "How long the device may stay quiet before it counts as silent (three "
            "reporting intervals of its kind).",
            labels=DEVICE_LABELS,
        )
        states = GaugeMetricFamily(
            "smartby_devices", "Devices in the registry, by state.", labels=("state",)
        )
        counts: dict[str, int] = dict.fromkeys(DEVICE_STATES, 0)
        for device in self.devices:
            counts[device.state] += 1
            if device.age_s is None or device.state == "disabled":
                continue
            labels = [device.device, device.kind, device.site]
            age.add_metric(labels, device.age_s)
            allowed.add_metric(labels, silent_after(device.kind).total_seconds())
        if self.database_up:
            for state, count in counts.items():
                states.add_metric([state], float(count))
        yield age
        yield allowed
        yield states


def freshness(row: tuple[object, ...]) -> DeviceFreshness:
    """One row of `device_freshness_query` as the collector keeps it."""
    device, kind, site, status, online, last_seen, age_s, now = row
    assert isinstance(now, datetime)
    assert last_seen is None or isinstance(last_seen, datetime)
    assert online is None or isinstance(online, bool)
    assert age_s is None or isinstance(age_s, float)
    state = device_state(
        kind=str(kind), status=str(status), online=online, last_seen=last_seen, now=now
    )
    return DeviceFreshness(str(device), str(kind), str(site), state, age_s)
