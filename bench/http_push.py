"""HTTP push load: concurrent devices posting SenML packs to ``POST /v1/ingest/{device}``
of a ``smartby api`` process, each on its own keep-alive connection, one post at a
time (a device waits for its answer, which comes after commit, before the next).

A lean HTTP/1.1 client on asyncio streams, so that the load generator costs less than
the server it measures (httpx costs about as much CPU per request as the server).
Used by ``bench.ingest`` (the HTTP row) and by the "done when" test of issue 14.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

#: what a post holds: 4 records, as in issue 14's "done when"
RECORDS_PER_POST = 4


def senml_post(device: str, when: float, i: int) -> bytes:
    """Four readings of one device at ``when`` (distinct for every post of a device)."""
    return orjson.dumps(
        [
            {"bn": f"{device}/", "bt": when, "n": "pm25", "u": "ug/m3", "v": 5.0 + i % 7},
            {"n": "pm10", "u": "ug/m3", "v": 11.0 + i % 5},
            {"n": "temperature", "u": "Cel", "v": -3.0 + (i % 11) / 10},
            {"n": "humidity", "u": "%RH", "v": 80.0 + i % 3},
        ]
    )


@dataclass
class PushRun:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)  # seconds per post
    statuses: Counter[int] = field(default_factory=Counter)
    stored: int = 0  # readings the 2xx answers counted
    elapsed: float = 0.0
    checked: int = 0  # posts verified in the database right after their answer

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _client(
    port: int,
    device: str,
    secret: str,
    posts: int,
    t0: float,
    run: PushRun,
    check: Callable[[str, float], bool] | None,
    check_every: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = base64.b64encode(f"{device}:{secret}".encode()).decode()
    try:
        for i in range(posts):
            when = t0 + i
            body = senml_post(device, when, i)
            head = (
                f"POST /v1/ingest/{device} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Basic {auth}\r\nContent-Type: application/senml+json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            answer = await reader.readuntil(b"\r\n\r\n")
            lines = answer.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            run.latencies.append(time.perf_counter() - started)
            status = int(lines[0].split(" ", 2)[1])
            run.statuses[status] += 1
            if 200 <= status < 300:
                run.stored += int(orjson.loads(payload)["stored"])
                if check is not None and i % check_every == 0:
                    # the answer promised a commit: the readings must be there now
                    if not check(device, when):
                        raise AssertionError(f"{device} post {i}: answered before commit")
                    run.checked += 1
    finally:
        writer.close()


async def _push_all(
    port: int,
    devices: list[tuple[str, str]],
    posts: int,
    t0: float,
    check: Callable[[str, float], bool] | None,
    check_every: int,
) -> PushRun:
    run = PushRun()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _client(port, device, secret, posts, t0, run, check, check_every)
            for device, secret in devices
        )
    )
    run.elapsed = time.perf_counter() - started
    return run


def push_concurrently(
    port: int,
    devices: list[tuple[str, str]],
    posts_per_device: int,
    t0: float,
    *,
    check: Callable[[str, float], bool] | None = None,
    check_every: int = 50,
) -> PushRun:
    """Every device of ``devices`` ((id, secret)) posts ``posts_per_device`` packs at
    once; ``check(device, time)`` is asked right after every ``check_every``-th answer
    whether its readings are committed."""
    return asyncio.run(_push_all(port, devices, posts_per_device, t0, check, check_every))
