"""Redelivered messages without a time get the time they got the first time.

A payload without a time (a plain object without ``"time"``, a SenML time below
2**28, RFC 8428 §4.5.3) is stamped with its reception time.  The readings' unique key
(series, time) absorbs a redelivered message only if its readings get the same times
again, and a redelivery happens exactly when it matters: the worker committed a batch
and died (or lost the connection) before the broker had its PUBACKs.

What the broker guarantees (MQTT v5):
- a session resumed with Clean Start 0 gets every unacknowledged QoS 1 PUBLISH again,
  with its original Packet Identifier (§4.4, MQTT-4.4.0-1), the DUP flag set
  (§3.3.1.1, MQTT-3.3.1-1), in the order first sent (§4.6);
- the broker never has more than the client's Receive Maximum of them unacknowledged
  (§3.3.4, MQTT-3.3.4-9);
- a Packet Identifier is unique only among the unacknowledged packets (§2.2.1).

What Mosquitto adds (measured with 2.0.11, and relied on by the tests): it takes each
session's packet ids from a counter, 1, 2, … 65535, 1, … (persisted, so also across a
broker restart), so a message's id comes back only after 65,535 more messages were
given ids in that session.  A member of a shared subscription that was killed gets
its own unacknowledged messages back when it returns (DUP=1, same ids); they are not
handed to another member.  The worker's client id is stable across restarts
(`ingest.worker.WorkerClaim` or ``--client-id``), which is what makes the session, and
so its packet ids, carry over.

So, in the transaction that commits a time-less message, the writer remembers, under
the worker's client id, its packet id, a digest of its topic and payload, the time its
readings counted from and the session's committed-message count at that message; and
it keeps a count of the messages committed under each client id.  A time-less message
that arrives with DUP=1 reuses the remembered time of the latest message with its
packet id when the digest matches and fewer than ``REUSE_WINDOW`` (32,768) messages
were committed in the session since.  Why that threshold separates the two cases,
with W the worker's Receive Maximum (capped at ``MAX_RECEIVE_MAXIMUM`` = 32,767 for
this reason):
- **a true redelivery** of message M: the PUBACK of M was lost, so were those written
  after it on that connection (TCP delivers a prefix), and the broker resends M ahead
  of anything new.  Everything committed between M and its redelivery was
  unacknowledged at the broker together with M: at most W − 1 ≤ 32,766 messages;
- **a reused id**: a different message M′ got M's packet id after 65,535 other ids
  were handed out; when M′ was first sent at most W − 1 of those were unacknowledged,
  so at least 65,535 − W ≥ 32,768 of them had been acknowledged, which the worker
  does only after committing them.
Otherwise (digest differs, too many commits since, nothing remembered) the message is
new and gets a fresh time.  So nothing older than the window is ever needed: a batch's
time-less messages are remembered as one row of arrays (an upsert per message, keyed
by packet id, was measured at 8 µs a message, as much as the rest of ingest), and a
row is deleted once the window has passed it.  A message redelivered once more after
a second lost round of PUBACKs may fall past the window and be stored twice: a
duplicate, never a loss.
The bound assumes the broker drops nothing it has given an id: a session whose queue
overflowed (``max_queued_messages``) has lost messages already.

When the broker starts the session afresh (CONNACK Session Present 0: first start,
expiry, or a broker that lost it), its packet ids restart at 1 and name nothing
remembered, so the worker forgets them (`DatabaseRegistry.forget_deliveries`) before it
prepares that session's first message.  Lookups and the records they read are made
only after every earlier batch has committed: the worker waits for its committer
before preparing a batch with a DUP message in it.  Within one batch, a redelivery of
a message earlier in that batch takes its time from there (a batch holds at most W
messages, too few for an id to come round again).

Retained messages: the worker subscribes to telemetry with Retain Handling 2 (§3.8.3.1:
no retained messages at subscribe), so a retained telemetry message is stored once,
from its live delivery (a live forward carries RETAIN 0, §3.3.1.3).  Should a broker
send one anyway (RETAIN 1: it comes from the retained store, not from the device now),
a time-ful one goes in like any redelivery (the key absorbs it), and a time-less one is
not stored again (its time is unknown), counted as the outcome ``retained_replay``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ingest.pipeline import Message

#: a remembered time is reused only if fewer messages were committed in the session since
REUSE_WINDOW = 32_768
#: the largest Receive Maximum (§3.1.2.11.3) for which the argument above holds
MAX_RECEIVE_MAXIMUM = REUSE_WINDOW - 1


def digest(topic: str, payload: bytes) -> bytes:
    """128-bit BLAKE2b of topic and payload (a topic holds no U+0000, MQTT-1.5.4-2)."""
    return hashlib.blake2b(b"%s\0%s" % (topic.encode(), payload), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class RecordedDelivery:
    """What a committed time-less message left behind, as looked up later."""

    digest: bytes
    anchor: float  # epoch seconds its times counted from
    since: int  # messages the session committed after it


@dataclass(frozen=True, slots=True)
class Session:
    """The broker session a batch came through."""

    client_id: str
    #: packet ids -> what committed time-less messages left under them (one query)
    recorded: Callable[[list[int]], Mapping[int, RecordedDelivery]]
    #: messages of earlier connections belong to a session the broker has dropped
    first_generation: int = 0


#: how a batch's remembered messages are stored: little-endian arrays
_IDS, _ORDINALS, _ANCHORS, _DIGEST_BYTES = np.dtype("<u2"), np.dtype("<u4"), np.dtype("<f8"), 16


@dataclass(frozen=True, slots=True)
class Remembered:
    """A batch's time-less messages, as the arrays one database row holds."""

    packet_ids: bytes
    ordinals: bytes  # each message's place among the batch's messages with a packet id
    digests: bytes
    anchors: bytes


def latest_deliveries(
    rows: Iterable[tuple[int, int, bytes, bytes, bytes, bytes]],
    committed: int,
    packet_ids: Collection[int],
) -> dict[int, RecordedDelivery]:
    """The latest remembered message of each of ``packet_ids``, from rows of (the
    session's count after the batch, its messages with a packet id, and the batch's
    `Remembered` arrays), with ``committed`` the session's count now."""
    wanted = np.fromiter(packet_ids, dtype=np.int64)
    found: dict[int, tuple[int, RecordedDelivery]] = {}
    for last_seq, delivered, ids, ordinals, digests, anchors in rows:
        id_array = np.frombuffer(ids, _IDS)
        hits = np.flatnonzero(np.isin(id_array, wanted))
        if not len(hits):
            continue
        seqs = last_seq - delivered + np.frombuffer(ordinals, _ORDINALS).astype(np.int64)
        anchor_array = np.frombuffer(anchors, _ANCHORS)
        for i in hits.tolist():
            packet_id, seq = int(id_array[i]), int(seqs[i])
            if packet_id not in found or found[packet_id][0] < seq:
                fingerprint = digests[i * _DIGEST_BYTES : (i + 1) * _DIGEST_BYTES]
                found[packet_id] = (
                    seq,
                    RecordedDelivery(fingerprint, float(anchor_array[i]), committed - seq),
                )
    return {packet_id: record for packet_id, (_, record) in found.items()}


class TimeAnchors:
    """Per batch: the time each time-less QoS 1 message counts from."""

    __slots__ = (
        "_anchors",
        "_digests",
        "_forget",
        "_ids",
        "_indexed",
        "_ordinals",
        "_recorded",
        "_seen",
        "messages",
        "session",
    )

    def __init__(self, session: Session, messages: Sequence[Message]) -> None:
        self.session = session
        self.messages = messages
        # the batch's new time-less messages (those of a dropped session to forget)
        self._ids: list[int] = []
        self._ordinals: list[int] = []
        self._digests: list[bytes] = []
        self._anchors: list[float] = []
        self._forget: list[int] = []
        # packet id -> its latest new time-less message in the batch, indexed only
        # once a redelivery needs it (most batches have none)
        self._seen: dict[int, int] = {}
        self._indexed = 0
        self._recorded: Mapping[int, RecordedDelivery] | None = None

    def anchor(self, message: Message, ordinal: int) -> float | None:
        """The time a redelivered ``message`` counted from when it was committed, or
        None when it is new (then it is remembered with its reception time).
        ``ordinal``: its place among the batch's messages with a packet id."""
        fingerprint = digest(message.topic, message.payload)
        if message.dup:
            earlier = self._earlier(message.mid)
            if earlier is not None and self._digests[earlier] == fingerprint:
                return self._anchors[earlier]
            recorded = self._lookup().get(message.mid)
            if (
                recorded is not None
                and recorded.digest == fingerprint
                and recorded.since < REUSE_WINDOW
            ):
                return recorded.anchor
        if message.generation < self.session.first_generation:
            self._forget.append(len(self._ids))
        self._ids.append(message.mid)
        self._ordinals.append(ordinal)
        self._digests.append(fingerprint)
        self._anchors.append(message.received)
        return None

    def _earlier(self, packet_id: int) -> int | None:
        """Index of this batch's latest new time-less message with ``packet_id``."""
        seen, ids = self._seen, self._ids
        for i in range(self._indexed, len(ids)):
            seen[ids[i]] = i
        self._indexed = len(ids)
        return seen.get(packet_id)

    def remembered(self) -> Remembered | None:
        """The batch's new time-less messages to remember, or None if it has none."""
        ids, ordinals, digests, anchors = self._ids, self._ordinals, self._digests, self._anchors
        if self._forget:  # messages of a session the broker dropped name nothing
            keep = sorted(set(range(len(ids))) - set(self._forget))
            ids, ordinals = [ids[i] for i in keep], [ordinals[i] for i in keep]
            digests, anchors = [digests[i] for i in keep], [anchors[i] for i in keep]
        if not ids:
            return None
        return Remembered(
            np.asarray(ids, _IDS).tobytes(),
            np.asarray(ordinals, _ORDINALS).tobytes(),
            b"".join(digests),
            np.asarray(anchors, _ANCHORS).tobytes(),
        )

    def _lookup(self) -> Mapping[int, RecordedDelivery]:
        """What the database remembers of the batch's DUP packet ids (one query)."""
        if self._recorded is None:
            ids = sorted({m.mid for m in self.messages if m.dup and m.mid})
            self._recorded = self.session.recorded(ids)
        return self._recorded
