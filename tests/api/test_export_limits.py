"""Exports that no client can use to stop the API (issue 11), against ``smartby api``
as a real server process: exports have their own pool and are capped per client
(429) and in total (503), both with Retry-After; a client that stops reading holds
no database connection and is cut off after the send timeout; and /v1/latest keeps
answering 200 through a storm of exporters and slow readers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.api_storm import (
    EXPORT_APPLICATION,
    EXPORTERS,
    PROBE_KEY_CACHED,
    PROBE_KEY_NO_CACHE,
    SLOW_READERS,
    connect,
    export_path,
    request,
    storm,
    table,
)
from tests.api.conftest import ServerFactory, assert_quiet_log, server_log
from tests.fixtures.simulated import SimulatedData


def export_of(simulated: SimulatedData) -> str:
    """Raw readings of five metrics at every station over the whole simulated history:
    about 9 MB of CSV, more than the socket buffers of a client that does not read can
    take in (up to 4 MB on Linux by default)."""
    end = datetime.fromtimestamp(simulated.end, UTC)
    path = export_path(end, (simulated.end - simulated.start) / 86400)
    return path.replace("metric=pm25", "metric=pm25,pm10,no2,temperature,humidity")


async def open_export(port: int, source: str, path: str) -> tuple[socket.socket, int, bytes]:
    """Ask for an export from ``source`` and read the head of the answer (and, for a
    refusal, its whole problem document), then read nothing more."""
    sock = await connect(port, source, rcvbuf=4096)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, request(path))
    received = b""
    while b"\r\n\r\n" not in received:
        piece = await loop.sock_recv(sock, 4096)
        assert piece, "the server closed the connection before answering"
        received += piece
    status = int(received.split(b" ", 2)[1])
    if status != 200:
        while not received.rstrip().endswith(b"}"):
            received += await loop.sock_recv(sock, 4096)
    return sock, status, received


def problem_of(received: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    head, _, body = received.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers["content-type"] == "application/problem+json"
    return headers, json.loads(body)


def export_connections(url: str) -> list[tuple[str, float]]:
    """(state, seconds in that state) of the export pool's connections."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT state, extract(epoch FROM now() - state_change)::float8"
            " FROM pg_stat_activity WHERE application_name = %s",
            (EXPORT_APPLICATION,),
        ).fetchall()
    return [(str(state), float(age)) for state, age in rows]


def test_exports_are_capped_per_client_and_in_total(
    api_process: ServerFactory, simulated: SimulatedData
) -> None:
    """Two stalled exports from one address fill its share: a third is 429; one more
    from another address fills the total of three: a fourth client gets 503; both
    say when to retry.  A finished export gives its slot back."""
    server = api_process(api_export_max_per_client="2", api_export_max_total="3")
    path = export_of(simulated)

    async def scenario() -> None:
        first, status_1, _ = await open_export(server.port, "127.0.3.1", path)
        second, status_2, _ = await open_export(server.port, "127.0.3.1", path)
        assert (status_1, status_2) == (200, 200)
        third, status, received = await open_export(server.port, "127.0.3.1", path)
        assert status == 429
        headers, problem = problem_of(received)
        assert headers["retry-after"] == "10"
        assert problem["limit"] == 2
        assert "at once is 2" in problem["detail"]
        third.close()

        other, status, _ = await open_export(server.port, "127.0.3.2", path)
        assert status == 200
        fourth, status, received = await open_export(server.port, "127.0.3.3", path)
        assert status == 503
        headers, problem = problem_of(received)
        assert headers["retry-after"] == "10"
        assert problem["limit"] == 3
        fourth.close()

        # the client that gives up frees its slot: poll until a new export gets in
        first.close()
        deadline = time.monotonic() + 10
        while True:
            again, status, _ = await open_export(server.port, "127.0.3.3", path)
            again.close()
            if status == 200:
                break
            assert status == 503
            assert time.monotonic() < deadline, "the closed export kept its slot"
            await asyncio.sleep(0.1)
        second.close()
        other.close()

    asyncio.run(scenario())
    assert_quiet_log(server)


def test_a_client_that_stops_reading_holds_no_connection_and_is_cut_off(
    api_process: ServerFactory, simulated: SimulatedData
) -> None:
    """Four exports whose clients read nothing: meanwhile no connection of the export
    pool sits in a transaction or runs a query for them; after the send timeout the
    server resets each connection, logs one warning line, and frees the slots."""
    server = api_process(api_send_timeout_s="2", api_export_max_total="4")
    path = export_of(simulated)

    async def scenario() -> None:
        stalled = [(await open_export(server.port, f"127.0.4.{n}", path))[0] for n in range(1, 5)]
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # while the clients stall
            for state, age in export_connections(simulated.url):
                assert state == "idle" or age < 2.0, (state, age)
                assert not state.startswith("idle in transaction")
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 20
        for sock in stalled:
            while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == 1:
                assert time.monotonic() < deadline, "a stalled client was never cut off"
                await asyncio.sleep(0.1)
            sock.close()
        # all four slots are free again
        again, status, _ = await open_export(server.port, "127.0.4.9", path)
        again.close()
        assert status == 200

    asyncio.run(scenario())
    text = server_log(server)
    assert text.count("cut off GET /v1/export/readings") == 4
    assert "the client read nothing for 2 s" in text
    assert "ASGI callable" not in text
    assert_quiet_log(server)
    metrics = asyncio.run(_metrics(server.port))
    cut = 'smartby_api_responses_cut_off_total{reason="stalled",route="/v1/export/{dataset}"}'
    assert f"{cut} 4.0" in metrics


async def _metrics(port: int) -> str:
    from bench.api_storm import fetch

    _, _, body = await fetch(port, "/metrics")
    return body.decode()


def test_latest_answers_200_through_an_export_storm(
    api_process: ServerFactory, simulated: SimulatedData
) -> None:
    """Issue 11's storm, shortened: 64 exporters and 8 slow readers (half reading 8
    bytes a second, half nothing) against one worker with the default caps.  Every
    /v1/latest, cached or not, is answered 200 (none 503, none failed); exporters get
    their files or a 429/503 to retry; slow readers are cut off, and the export pool
    never holds a transaction open for them.  (The timing is `bench.api_storm`'s.)"""
    keys = f"probe-cached:{PROBE_KEY_CACHED},probe-nocache:{PROBE_KEY_NO_CACHE}"
    server = api_process(api_keys=keys, api_send_timeout_s="3", api_rate_limit="120/minute")
    report = asyncio.run(
        storm(
            server.port,
            simulated.url,
            export_of(simulated),
            baseline_s=1,
            stalled_s=2,
            until_cut_s=60,  # until each slow reader has filled its buffers and been cut
            storm_s=6,
        )
    )
    print(table(report, EXPORTERS, SLOW_READERS))  # seen with pytest -s
    for probe in report.baseline + report.storm:
        assert probe.latencies, probe.name
        assert set(probe.statuses) == {200}, (probe.name, probe.statuses)
    assert report.exports["200"] >= 1
    assert set(report.exports) <= {"200", "429", "503", "bytes"}, report.exports
    assert report.slow_readers["cut off"] >= 8
    for activity in (report.stalled_activity, report.activity):
        assert activity.samples > 0
        assert activity.idle_in_transaction == 0
        assert activity.longest_busy_s < 2.0  # a page query; a pinned one stays busy
    assert_quiet_log(server)
