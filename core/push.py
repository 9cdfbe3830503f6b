"""The contract of HTTP push between the API, which authenticates a device and reads
its request, and ingest, which stores what it sent (DESIGN.md, "Devices as they are").

The API may not import ingest (tests/test_layout.py), so, like `core.broker.
DeviceAccountSync`, the composition root (``smartby api``) hands the API a `PushSink`
built by ``ingest.http_push``.  A sink stores a `Push` through the same decode, QC,
rollups and quarantine as MQTT, and resolves its future only once the transaction
holding its readings has committed: the API answers 2xx only then.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal, Protocol

#: what the body of a push is: SenML JSON (RFC 8428 §5), SenML CBOR (§6), the smartby
#: plain JSON object, or sensor.community's "send to own API" document
PushForm = Literal["senml+json", "senml+cbor", "json", "sensor-community"]


@dataclass(frozen=True, slots=True)
class Push:
    """One authenticated request: the device, its body as received, and how to read it."""

    device_id: str
    payload: bytes
    form: PushForm
    received: float  # epoch seconds
    #: what the quarantine's ``topic`` column says for it (``http:/v1/ingest/<device>``)
    label: str
    #: an Idempotency-Key header: a retry under it keeps the first post's times
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class PushRejection:
    """Part of a push that was not stored (and went to quarantine)."""

    reason: str  # machine-readable, as in the quarantine (``unknown_metric``, ...)
    detail: str
    #: index of the record in the SenML pack (or member of the plain object, or entry of
    #: ``sensordatavalues``), when the rejection is about one record
    record: int | None = None


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What became of a push once its transaction committed."""

    #: readings of the push that are in the database now (newly, or by an earlier
    #: post of the same readings: a retry)
    stored: int
    rejected: tuple[PushRejection, ...] = field(default=())
    #: the body as a whole could not be read (``rejected`` then holds why)
    undecodable: bool = False


class PushBusy(Exception):
    """The sink holds as many pushes as it may; the client should retry shortly."""


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key sent again with another body (the draft's 422)."""


class PushSink(Protocol):
    """Stores pushes; the future resolves after commit, or raises (`PushBusy`,
    `IdempotencyKeyReused`, a database error)."""

    def submit(self, push: Push) -> Future[PushOutcome]: ...
