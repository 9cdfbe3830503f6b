"""Ingest from more than one broker: the platform's own, and external sources such as a
LoRaWAN network server's MQTT integration (The Things Stack, ChirpStack).

Each source gets a worker of its own (`SourceWorker`): its own MQTT connection with the
source's credentials, TLS and protocol version, its own persistent session (client id
``<the worker's client id>-<source name>``), and its own pipeline restricted to the
source's profile.  So every guarantee of `ingest.worker` holds per source unchanged:
a message is acknowledged on the connection that delivered it, after the transaction
holding its readings committed; redelivery is absorbed by the readings' key (and a
time-less message keeps its time, per session); what cannot be stored is quarantined.

A source can only promise what its broker does.  The Things Stack's MQTT server speaks
MQTT 3.1.1 at QoS 0 only: an uplink published while no worker is connected is not kept
for it (its webhooks or Storage Integration cover that gap).  ChirpStack's integration
publishes to a Mosquitto of the operator's, at the QoS its ``[integration.mqtt]`` sets:
with ``qos=1`` and a persistent session here, nothing is lost across a restart.

`IngestService` runs the platform's worker and every source's together, in one process;
``smartby ingest`` runs it.  Counters are shared (totals over all sources); the
connection and queue gauges of a source carry its name
(``smartby_ingest_source_connected{source="ttn"}``).
"""

from __future__ import annotations

import copy
import logging
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import Gauge

from core.broker import SHARE_GROUP
from core.profiles import make_profile
from core.settings import IngestSource, Settings
from core.warnings import WarningTexts
from ingest.claim import WorkerClaim
from ingest.mqtt_client import FastClient, connect_or_wait
from ingest.worker import IngestMetrics, IngestWorker

log = logging.getLogger(__name__)

#: How long a thread may hold the GIL while another waits for it (CPython's default is
#: 5 ms).  The committer thread gives the GIL up at every round trip to PostgreSQL
#: (a dozen a batch: BEGIN, SAVEPOINT, COPY, the rollup merge, COMMIT …) and then
#: waits for it again while the preparer and paho's network thread decode messages in
#: pure Python: at 5 ms a hand-over, a batch spent about a quarter of its commit time
#: waiting for the GIL, not for the database, and the committer is the stage that
#: bounds a pack stream (py-spy on scenario (b) of bench/ingest.py, with others' load on
#: the machine: 1 ms took it from ~180k to ~250k readings/s, 0.5 ms was no better; on
#: a quiet machine the gain was a few per cent).
GIL_SWITCH_INTERVAL_S = 0.001


def favour_database_thread() -> None:
    """Set the process's GIL switch interval for an ingest worker process
    (`GIL_SWITCH_INTERVAL_S`).  Process-wide, so only ``smartby ingest`` calls it,
    not the library: it owns the process."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


class SourceWorker(IngestWorker):
    """An ingest worker on an external broker (`IngestSource`)."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        source: IngestSource,
        *,
        client_id: str,
        metrics: IngestMetrics | None = None,
    ) -> None:
        own = settings.model_copy(
            update={
                "mqtt_host": source.host,
                "mqtt_port": source.broker_port,
                "mqtt_username": None,
                "mqtt_password": None,
                "mqtt_tls": False,
                "ingest_profiles": source.profile,
                "ingest_metrics_port": 0,  # the platform's worker serves the metrics
                "indicators_interval_s": 0,  # and keeps the indicators
            }
        )
        super().__init__(own, database_url, client_id=client_id, metrics=metrics, upkeep=False)
        self.source = source
        self._telemetry = {
            f.filter for f in make_profile(source.profile).filters() if f.telemetry
        } | ({*source.topics} if source.topics else set())

    def claim(self) -> WorkerClaim:
        """The source's own claim, never the platform prefix's (which the platform's
        worker holds): exclusive unless the source is shared, so two plain workers
        never both take every uplink of one network server."""
        if self._claim is None:
            self._claim = WorkerClaim(
                self.database_url,
                f"{self.settings.mqtt_topic_prefix} source {self.source.name}",
                "shared" if self.source.shared else "plain",
                slots=None,
            )
        return self._claim

    def stale_filters(self) -> list[str]:
        # the platform's modes say nothing about a network server's broker (and TTS's
        # MQTT 3.1.1 server knows no $share to unsubscribe from)
        return []

    @property
    def v5(self) -> bool:
        return self.source.mqtt_version == "5"

    def _make_client(self) -> FastClient:
        source = self.source
        if self.v5:
            client = FastClient(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv5,
                manual_ack=True,
            )
        else:
            # MQTT 3.1.1 §3.1.2.4: a persistent session is Clean Session 0 (v5 says it
            # with Clean Start 0 and a Session Expiry Interval, in `_connect`)
            client = FastClient(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                clean_session=False,
                protocol=mqtt.MQTTv311,
                manual_ack=True,
            )
        if source.username:
            client.username_pw_set(source.username, source.secret())
        if source.tls:
            client.tls_set(ca_certs=str(source.ca_file) if source.ca_file else None)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        return client

    def _address(self) -> tuple[str, int]:
        return self.source.host, self.source.broker_port

    def _connect(self, client: FastClient) -> None:
        if self.v5:
            super()._connect(client)
        else:  # MQTT 3.1.1 has no session expiry nor receive maximum to ask for
            connect_or_wait(client, *self._address())

    def subscriptions(self) -> list[tuple[str, SubscribeOptions]] | list[tuple[str, int]]:
        source = self.source
        share = f"$share/{SHARE_GROUP}-{source.name}/" if source.shared else ""
        topics = [share + topic for topic in source.filters()]
        if not self.v5:
            return [(topic, source.qos) for topic in topics]
        return [
            (
                topic,
                SubscribeOptions(qos=source.qos, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
                if topic.removeprefix(share) in self._telemetry
                else SubscribeOptions(qos=source.qos),
            )
            for topic in topics
        ]


def _source_metrics(metrics: IngestMetrics, names: list[str]) -> dict[str, IngestMetrics]:
    """Per source: the shared counters, and connection and queue gauges of its own."""
    if not names:
        return {}
    connected = Gauge(
        "smartby_ingest_source_connected",
        "1 while connected to the source's broker",
        ["source"],
        registry=metrics.registry,
    )
    depth = Gauge(
        "smartby_ingest_source_queue_depth",
        "Messages received from the source and not yet written",
        ["source"],
        registry=metrics.registry,
    )
    own: dict[str, IngestMetrics] = {}
    for name in names:
        view = copy.copy(metrics)
        view.connected = connected.labels(name)
        view.queue_depth = depth.labels(name)
        own[name] = view
    return own


class IngestService:
    """The platform's ingest worker and one `SourceWorker` per configured source, run
    together: `run` blocks until `stop`, and stops them all when one fails."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        *,
        client_id: str | None = None,
        metrics: IngestMetrics | None = None,
        warning_texts: WarningTexts | None = None,
    ) -> None:
        self.primary = IngestWorker(
            settings,
            database_url,
            client_id=client_id,
            metrics=metrics,
            warning_texts=warning_texts,
        )
        names = [source.name for source in settings.ingest_sources]
        views = _source_metrics(self.primary.metrics, names)
        self.sources = [
            SourceWorker(
                settings,
                database_url,
                source,
                client_id=source.client_id or f"{self.primary.client_id}-{source.name}",
                metrics=views[source.name],
            )
            for source in settings.ingest_sources
        ]

    @property
    def workers(self) -> list[IngestWorker]:
        return [self.primary, *self.sources]

    @property
    def client_id(self) -> str:
        return self.primary.client_id

    @property
    def metrics(self) -> IngestMetrics:
        return self.primary.metrics

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def wait_connected(self, timeout: float = 10) -> bool:
        """True once every worker is connected and subscribed."""
        return all(worker.wait_connected(timeout) for worker in self.workers)

    def run(self) -> None:
        """Consume until `stop`; a failing worker stops the others, and its error is
        raised once all have drained."""
        errors: list[BaseException] = []

        def run_source(worker: SourceWorker) -> None:
            try:
                worker.run()
            except BaseException as exc:
                errors.append(exc)
                log.error("ingest from source %s failed: %s", worker.source.name, exc)
                self.stop()

        threads = [
            threading.Thread(target=run_source, args=(worker,), name=f"source-{worker.source.name}")
            for worker in self.sources
        ]
        for thread in threads:
            thread.start()
        try:
            self.primary.run()
        except BaseException as exc:
            errors.insert(0, exc)
        finally:
            self.stop()
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]

    def stop(self) -> None:
        """Ask every worker to finish its batch, drain and return (signal-safe)."""
        for worker in self.workers:
            worker.stop()
