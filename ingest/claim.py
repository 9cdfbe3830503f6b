"""What an ingest worker holds in PostgreSQL for its whole life: its subscription
mode on the topic prefix, and (without a configured client id) a worker slot."""

from __future__ import annotations

import time
from typing import LiteralString

import psycopg
from psycopg.rows import TupleRow

from core.broker import SubscriptionMode
from core.errors import SmartbyError

#: advisory-lock classes: a worker slot (and so a stable client id), and the topic
#: prefix's subscription mode
_SLOT_LOCK_CLASS = 0x534D  # "SM"
_MODE_LOCK_CLASS = 0x5350  # "SP"
_LOCK_SLOT: LiteralString = f"SELECT pg_try_advisory_lock({_SLOT_LOCK_CLASS}, %s)"
_LOCK_PREFIX: LiteralString = f"SELECT pg_try_advisory_lock({_MODE_LOCK_CLASS}, hashtext(%s))"
_LOCK_PREFIX_SHARED: LiteralString = (
    f"SELECT pg_try_advisory_lock_shared({_MODE_LOCK_CLASS}, hashtext(%s))"
)
_UNLOCK_PREFIX_SHARED: LiteralString = (
    f"SELECT pg_advisory_unlock_shared({_MODE_LOCK_CLASS}, hashtext(%s))"
)
#: how long a worker waits for a lock a dead predecessor's connection may still hold
#: (PostgreSQL notices a killed client's closed socket at once; this is slack)
_CLAIM_WAIT_S = 5.0
#: how often the claim's connection is checked (a database restart drops the locks)
CLAIM_CHECK_S = 2.0


class ClaimError(SmartbyError):
    """The worker may not run: another holds its slot or its subscription mode."""


class WorkerClaim:
    """What a worker holds in PostgreSQL for its whole life, on one connection:

    - the topic prefix's subscription mode (advisory lock keyed by the prefix):
      exclusively in plain mode, where a second worker would get every message too
      (twice the work, and a time-less message stamped twice); shared in shared mode;
    - without a configured client id, the lowest free worker slot, whose number makes
      the client id ``smartby-ingest-<slot>``.  Compose replicas have no stable
      identity, but a persistent MQTT session needs a stable client id: a worker that
      came back under a new id would strand the messages queued for the old session.

    A database restart drops the locks with the connection: `keep` takes them again,
    or raises `ClaimError` if another worker took them meanwhile.
    """

    def __init__(self, url: str, prefix: str, mode: SubscriptionMode, *, slots: int | None) -> None:
        self.url = url
        self.prefix = prefix
        self.mode = mode
        self.slots = slots
        self.slot: int | None = None
        self.conn = self._connect()
        try:
            self._take_mode(wait=_CLAIM_WAIT_S)
            if slots is not None:
                self.slot = self._take_slot(range(1, slots + 1))
        except BaseException:
            self.conn.close()
            raise

    def _connect(self) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(
            self.url, autocommit=True, application_name="smartby-ingest-claim", connect_timeout=5
        )

    def _try(self, query: LiteralString, key: int | str) -> bool:
        row = self.conn.execute(query, (key,)).fetchone()
        return bool(row and row[0])

    def _take_mode(self, wait: float) -> None:
        query = _LOCK_PREFIX if self.mode == "plain" else _LOCK_PREFIX_SHARED
        deadline = time.monotonic() + wait
        while not self._try(query, self.prefix):
            if time.monotonic() >= deadline:
                raise ClaimError(self._mode_refusal())
            time.sleep(0.2)

    def _mode_refusal(self) -> str:
        prefix = self.prefix
        if self.mode == "shared":
            return (
                f"a plain-mode ingest worker already consumes topic prefix {prefix!r}: stop"
                " it, then run every worker with SMARTBY_INGEST_SUBSCRIPTION=shared"
            )
        if self._try(_LOCK_PREFIX_SHARED, prefix):
            self._try(_UNLOCK_PREFIX_SHARED, prefix)
            return (
                f"shared-mode ingest workers already consume topic prefix {prefix!r}: run"
                " this one with SMARTBY_INGEST_SUBSCRIPTION=shared too, or stop them first"
            )
        return (
            f"another ingest worker already consumes topic prefix {prefix!r} in plain mode,"
            " and only one may: to run several workers, set"
            " SMARTBY_INGEST_SUBSCRIPTION=shared on all of them"
        )

    def _take_slot(self, candidates: range) -> int:
        for slot in candidates:
            if self._try(_LOCK_SLOT, slot):
                return slot
        raise ClaimError(
            f"all {self.slots} ingest worker slots are taken (SMARTBY_INGEST_MAX_WORKERS);"
            " the broker has an account for each"
        )

    def keep(self) -> None:
        """After a database restart: take the same locks again on a new connection."""
        if not (self.conn.closed or self.conn.broken):
            try:
                self.conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                pass
        self.conn.close()
        self.conn = self._connect()
        self._take_mode(wait=0)
        if self.slot is not None:
            slot = self.slot
            if not self._try(_LOCK_SLOT, slot):
                raise ClaimError(
                    f"another worker took slot {slot} (client id smartby-ingest-{slot})"
                    " while the database was away"
                )

    def close(self) -> None:
        self.conn.close()
