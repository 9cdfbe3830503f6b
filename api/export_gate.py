"""Admission of bulk exports: at most ``SMARTBY_API_EXPORT_MAX_PER_CLIENT`` streams
per client and ``SMARTBY_API_EXPORT_MAX_TOTAL`` in all.

An export is the one request that lasts as long as its client wants: minutes for a
year of readings, for ever for a client that stops reading.  Each is cheap on the
database now (`api.export_fetch` holds a connection only while a page is queried),
but each still holds memory (a page of rows and its encoding) and CPU to encode,
so their number is bounded.  One client beyond its share gets 429 (it is the one to
slow down); everyone beyond the total gets 503 (the service is busy); both say when
to retry (RFC 9110 §10.2.3) in problem+json.

The client is who the rate limit counts (`api.edge`): the API key's name, or the
address (a trusted proxy's forwarded one, `api.forwarded`).  A slot is taken before
the export's first query and given back when its response ends, however it ends:
finished, cut off by the client, or cut off for not reading (`api.edge`).
"""

from __future__ import annotations

from collections import Counter

from starlette.requests import Request

from api.problems import Problem

#: what a refused client is told to wait: about what a typical export takes
RETRY_AFTER_S = 10
#: exports fetching and encoding at one moment; the others wait their turn.  Encoding
#: is CPU on the event loop every request shares, and a worker has one core's worth
#: of it, so more at once only makes the small requests wait longer.  Measured with
#: bench.api_storm's storm (30 days, 20 s, 2 cores busy with other work, load 5-7):
#: /v1/latest p99 160-240 ms with two at once and slices of 2 000 rows, 67-96 ms with
#: one and 1 000, and the exporters got as many megabytes through.
EXPORT_ENCODERS = 1


class ExportSlot:
    """One admitted export; `release` gives the slot back (once, however often called)."""

    __slots__ = ("client", "gate")

    def __init__(self, gate: ExportGate, client: str) -> None:
        self.gate: ExportGate | None = gate
        self.client = client

    def release(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.give_back(self.client)


class ExportGate:
    """Counts of the exports streaming now, per client and in all (one worker's)."""

    def __init__(self, *, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.streaming: Counter[str] = Counter()
        self.total = 0

    def admit(self, client: str) -> ExportSlot:
        """A slot for ``client``'s export, or the 429 or 503 problem to answer."""
        if self.streaming[client] >= self.max_per_client:
            raise Problem(
                429,
                "Too many exports",
                f"this client is streaming {self.streaming[client]} exports already, the "
                f"most one client may at once is {self.max_per_client}; retry after "
                f"{RETRY_AFTER_S} s, when one has finished",
                headers={"retry-after": str(RETRY_AFTER_S)},
                limit=self.max_per_client,
                retry_after_s=RETRY_AFTER_S,
            )
        if self.total >= self.max_total:
            raise Problem(
                503,
                "Exports busy",
                f"{self.total} exports are streaming, the most this server runs at once; "
                f"retry after {RETRY_AFTER_S} s",
                headers={"retry-after": str(RETRY_AFTER_S)},
                limit=self.max_total,
                retry_after_s=RETRY_AFTER_S,
            )
        self.streaming[client] += 1
        self.total += 1
        return ExportSlot(self, client)

    def give_back(self, client: str) -> None:
        self.total -= 1
        self.streaming[client] -= 1
        if self.streaming[client] <= 0:
            del self.streaming[client]


def client_of(request: Request) -> str:
    """Who the request counts against: what `api.edge` decided, else its address."""
    client: str | None = request.scope.get("state", {}).get("client")
    if client is not None:
        return client
    peer = request.scope.get("client")
    return f"addr:{peer[0] if peer else 'unknown'}"
