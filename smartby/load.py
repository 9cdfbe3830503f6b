"""Load simulated history straight into the database, through ingest's own pipeline.

`smartby simulate --backfill` goes through the broker, which is what a real fleet
does and what the ingest tests exercise.  Demo data, the API and dashboard tests, and
the benchmarks need a month of history quickly instead: this feeds the simulated
messages to the same `BatchPreparer` (decoding, unit conversion, quarantine, QC) and
`BatchWriter` (binary COPY, rollups, indicator days) without the broker in between,
with each message "received" when the device would have sent it.  The stored rows
are the ones the broker path would store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.settings import Settings
from devices.catalogue import DeviceSpec
from devices.simulation import simulated_messages
from ingest.pipeline import BatchPreparer, Message
from ingest.writer import BatchWriter, DatabaseRegistry


@dataclass(slots=True)
class LoadReport:
    messages: int = 0
    readings: int = 0
    duplicates: int = 0
    quarantined: int = 0


def load_simulation(
    settings: Settings,
    url: str,
    specs: Sequence[DeviceSpec],
    start: float,
    end: float,
    *,
    seed: int = 1,
    batch_size: int = 5000,
    progress: Callable[[float, LoadReport], None] | None = None,
) -> LoadReport:
    """Store what the simulated ``specs`` send in [start, end) (epoch seconds); the
    devices must be registered.  ``progress(sent_time, report)`` after each batch."""
    registry = DatabaseRegistry(url)
    preparer = BatchPreparer.from_settings(registry, settings)
    writer = BatchWriter(url, "smartby-load", rollups=True)
    report = LoadReport()
    pending: list[Message] = []

    def flush() -> None:
        batch = preparer.prepare(pending)
        result = writer.write(batch)
        report.messages += len(pending)
        report.readings += result.inserted
        report.duplicates += result.duplicates
        report.quarantined += result.quarantined
        if progress is not None:
            progress(pending[-1].received, report)
        pending.clear()

    try:
        registry.load()
        messages = simulated_messages(specs, start, end, seed, settings.mqtt_topic_prefix)
        for sent, topic, payload in messages:
            pending.append(Message(topic, payload, received=sent))
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
    finally:
        writer.close()
        registry.close()
    return report
