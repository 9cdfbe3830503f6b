"""No input gives a 500 (issue 11 §5, issue 16 §4): hostile requests are 4xx
problem+json documents that name what was wrong, and a 4xx never logs a traceback.

Three layers: the inputs the issues name, in the app (where the log is caught
record by record); requests a client library would not even send (over-long URLs and
headers, bytes outside HTTP's grammar), on raw sockets against ``smartby api``; and a
fuzz over every operation of the OpenAPI document, against the same real server:
schemathesis' own generation (valid and invalid) with a dictionary of hostile
strings mixed in, and a sweep of every hostile string into every parameter."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from api.request_limits import MAX_HEADER_BYTES, MAX_URL_BYTES
from api.sensorthings.odata import MAX_FILTER_DEPTH
from bench.api_storm import ApiProcess
from core.settings import Settings
from tests.api.conftest import SUMMARY_LINES, UNLIMITED, assert_quiet_log
from tests.fixtures.simulated import SimulatedData

# ------------------------------------------------------------------ hostile strings

CONTROL = "".join(chr(c) for c in range(32)) + "\x7f"

#: what a hostile client puts into any parameter
HOSTILE: tuple[str, ...] = (
    # bytes no value holds
    "\x00",
    "pm25\x00",
    "%00",
    CONTROL,
    "\r\nSet-Cookie: x=1",
    "\u202e\ufeff\uffff",
    # size
    "",
    " ",
    "x" * 4_000,
    "y" * 10_000,
    "a," * 2_000,
    "9" * 400,
    # nesting
    "(" * 150 + "true" + ")" * 150,
    "not " * 300 + "true",
    "-" * 500 + "1",
    "[" * 1_000,
    '{"a":' * 500,
    "Datastreams(" * 20 + ")" * 20,
    # unicode
    "é",
    "Narvik 😀" * 50,
    "ä\u0301",
    "𝕏𝔸",
    # path traversal
    "../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "/v1/admin/devices",
    "..",
    # SQL-ish and other injections
    "' OR '1'='1",
    "'; DROP TABLE readings; --",
    "1; SELECT pg_sleep(10)",
    "name eq 'x'' or 1 eq 1 --'",
    "$filter=true",
    "<script>alert(1)</script>",
    "${jndi:ldap://example.org/a}",
    "{{7*7}}",
    # numbers
    "NaN",
    "-inf",
    "Infinity",
    "1e309",
    "-1e-400",
    "99999999999999999999999999999",
    "-9223372036854775809",
    "2147483648",
    "-1",
    "0x10",
    # times
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+14:00",
    "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00+99:00",
    "P7D",
    "now",
    # OData
    "round(result) eq 1e308 mul 10",
    "result div 0 eq 1",
    "substring(name, 99999999999999999999) eq 'x'",
    "phenomenonTime gt 0000-01-01",
    "year(phenomenonTime) eq 99999999999",
)

#: a fuzzing dictionary for schemathesis: mixed into the strings and numbers it makes
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "dictionaries": {
            "hostile": {"values": [s for s in HOSTILE if len(s) <= 1_000]},
            "numbers": {"values": [-1, 0, 2**31, 2**63, 10**30, -(10**30)]},
            # a header field value is visible ASCII (RFC 9110 §5.5): the rest is not sent
            "hostile-headers": {
                "values": [s for s in HOSTILE if s.isascii() and s.isprintable() and len(s) < 999]
            },
        },
        "parameters": {
            "header.X-API-Key": {"dictionary": "hostile-headers", "probability": 0.4},
        },
        "generation": {
            "mode": "all",  # valid and invalid requests
            "allow-x00": True,
            "allow-extra-parameters": True,
            "dictionaries": {
                "string": {"dictionary": "hostile", "probability": 0.4},
                "integer": {"dictionary": "numbers", "probability": 0.3},
            },
        },
    }
)
# The document does not depend on the database: an app that never starts gives it.
_DOCUMENT = create_app(
    Settings(env="test", database_url="postgresql://schema-only@127.0.0.1:9/none")  # type: ignore[arg-type]
).openapi()
# the live stream never ends a 200: its hostile inputs are in tests/api/test_stream.py
schema = schemathesis.openapi.from_dict(_DOCUMENT, config=FUZZ_CONFIG).exclude(path="/v1/stream")
OPERATIONS = [
    result.ok() if isinstance(result, Ok) else pytest.fail(f"{result.err()}")
    for result in schema.get_all_operations()
]


# ------------------------------------------------------------------ in the app


@pytest.fixture(scope="module")
def app_client(simulated_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(simulated_settings), raise_server_exceptions=False) as client:
        yield client


LONG_FILTER = "(" * 150 + "name eq 'x'" + ")" * 150
NAMED_INPUTS: list[tuple[str, int, str]] = [
    # (request, status, words the problem's detail must hold)
    ("/v1/export/readings?site=%00", 400, "parameter 'site' holds a NUL byte"),
    ("/v1/export/readings?metric=%00&bucket=1h", 400, "NUL byte"),
    ("/v1/sites/%00", 400, "NUL byte"),
    (f"/sta/v1.1/Things?$filter={LONG_FILTER}", 400, f"deeper than {MAX_FILTER_DEPTH} levels"),
    ("/sta/v1.1/Things?$filter=name eq '%00'", 400, "NUL byte"),
    (
        "/sta/v1.1/Observations?$filter=result eq 1" + " add 1" * 380,
        400,
        f"deeper than {MAX_FILTER_DEPTH} levels",
    ),
    ("/sta/v1.1/Observations?$filter=round(result) eq 1e308 mul 10", 400, "out of range"),
    ("/v1/latest?site=" + "a" * 5_000, 400, "site"),
    ("/v1/latest?site=" + "a" * 9_000, 414, f"the limit is {MAX_URL_BYTES} bytes"),
    ("/v1/latest?metric=%FF%FE", 400, "metric"),
    ("/v1/series/99999999999999999999999/data", 400, "series_id"),
    ("/v1/export/readings?series=99999999999999999999999&bucket=1h", 404, "no series"),
    ("/v1/series/1/data?limit=1e999", 400, "limit"),
    ("/v1/sites?bbox=nan,nan,nan,nan", 400, "bbox"),
    ("/v1/sites?bbox=-inf,0,inf,1", 400, "bbox"),
    ("/v1/series/1/data?from=2026-13-45T00:00:00Z", 400, "from"),
    ("/v1/series/1/data?from=0001-01-01T00:00:00%2B14:00", 400, "from"),
    ("/v1/aqi/narvik-sentrum?from=9999-12-31T23:59:59Z", 400, "from"),
    ("/v1/export/sites?bucket=1h", 400, "bucket"),
    ("/v1/export/metrics?format=geojson", 400, "GeoJSON"),
    ("/v1/export/sites?from=2026-01-01T00:00:00Z", 400, "not a time series"),
]


@pytest.mark.parametrize(("target", "status", "words"), NAMED_INPUTS)
def test_the_inputs_that_gave_500_are_problems_that_say_why(
    app_client: TestClient, caplog: pytest.LogCaptureFixture, target: str, status: int, words: str
) -> None:
    caplog.set_level(logging.DEBUG)
    response = app_client.get(target)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert words in problem["detail"]
    served = [r for r in caplog.records if r.name != "httpx"]  # not the test client's own
    tracebacks = [r for r in served if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, f"a {status} logged a traceback: {tracebacks[0].getMessage()}"
    assert all(len(r.getMessage()) < 2_000 for r in served)


# ------------------------------------------------------------------ a real server


@dataclass
class Tally:
    """Requests the fuzz sent, by status; the ones httpx would not send (a NUL in a
    header value, say) are counted apart."""

    statuses: Counter[int] = field(default_factory=Counter)
    unsendable: int = 0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())


@pytest.fixture(scope="module")
def server(
    simulated: SimulatedData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """``smartby api`` on the simulated data, without a rate limit (the fuzz is not
    what is being limited) and without API keys (the admin routes answer 401 and
    nothing is written)."""
    log: Path = tmp_path_factory.mktemp("hostile") / "api.log"
    process = ApiProcess(simulated.url, log, api_rate_limit=UNLIMITED)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def tally(server: ApiProcess) -> Iterator[Tally]:
    """The fuzz's counts, reported at the end of the run (`SUMMARY_LINES`); and at the
    end of the module, the server's log holds no traceback and no error."""
    counts = Tally()
    yield counts
    if counts.sent:
        shown = ", ".join(f"{status}: {n}" for status, n in sorted(counts.statuses.items()))
        errors = sum(n for status, n in counts.statuses.items() if status >= 500)
        SUMMARY_LINES.append(
            f"hostile fuzz: {counts.sent} requests over {len(OPERATIONS)} operations,"
            f" {errors} >= 500 ({shown}); {counts.unsendable} not sendable by httpx"
        )
    assert_quiet_log(server)


@pytest.fixture(scope="module")
def http(server: ApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as client:
        yield client


def check(response: httpx.Response, what: str) -> None:
    """Below 500; an error is problem+json (RFC 9457)."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", what


def send(http: httpx.Client, tally: Tally, **request: Any) -> None:
    try:
        response = http.request(**request)
    except (httpx.LocalProtocolError, UnicodeEncodeError, httpx.InvalidURL):
        tally.unsendable += 1
        return
    tally.statuses[response.status_code] += 1
    check(response, f"{request['method']} {response.request.url}"[:300])


async def raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await reader.read()
    finally:
        writer.close()


def raw_problem(port: int, request: bytes) -> tuple[int, dict[str, str], str]:
    answer = asyncio.run(raw(port, request))
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    assert headers["content-type"] == "application/problem+json", answer[:300]
    return int(lines[0].split(" ", 2)[1]), headers, body.decode()


def test_what_no_client_library_sends_is_a_problem_too(server: ApiProcess) -> None:
    """The server's own refusals (beyond the app) are problem+json documents naming
    the limit: a URL beyond 8 KiB (httptools has no limit of its own, uvicorn with h11
    refused it as plain text), header fields beyond 64 KiB, and bytes outside HTTP."""
    long_url = b"GET /v1/sites?site=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, headers, body = raw_problem(server.port, long_url)
    assert status == 414
    assert f"the limit is {MAX_URL_BYTES} bytes" in body
    assert headers["connection"] == "close"

    just_over = b"GET /v1/sites?x=" + b"a" * MAX_URL_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_problem(server.port, just_over)[0] == 414

    big_header = b"GET /v1 HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 70_000 + b"\r\n\r\n"
    status, _, body = raw_problem(server.port, big_header)
    assert status == 431
    assert f"the limit is {MAX_HEADER_BYTES} bytes" in body

    for garbage in (
        b"GET /v1/sites/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on plain HTTP
        b"GET /v1\x00 HTTP/1.1\r\n\r\n",
    ):
        status, _, body = raw_problem(server.port, garbage)
        assert status == 400, garbage
        assert "not valid HTTP/1.1" in body

    # what a library would normalise away reaches the router as it is, and is no route
    traversal = (
        b"GET /v1/sites/../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    status, _, _ = raw_problem(server.port, traversal)
    assert status == 404


@dataclass(frozen=True)
class Known:
    """Values that exist in the simulated data, for the parameters not being fuzzed."""

    site: str
    device: str
    series: int
    end: datetime


@pytest.fixture(scope="module")
def known(simulated: SimulatedData) -> Known:
    with psycopg.connect(simulated.url) as conn:
        row = conn.execute(
            "SELECT d.site_id, d.id, s.id FROM series s JOIN devices d ON d.id = s.device_id"
            " WHERE s.metric = 'pm25' ORDER BY s.id LIMIT 1"
        ).fetchone()
    assert row is not None
    return Known(row[0], row[1], row[2], datetime.fromtimestamp(simulated.end, UTC))


def valid_path_values(known: Known) -> dict[str, str]:
    return {
        "site_id": known.site,
        "device_id": known.device,
        "series_id": str(known.series),
        "key": "pm25",
        "metric": "pm25",
        "dataset": "aqi",
        "resource_path": "Things",
    }


def path_of(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        # resource_path is a path of its own ("Things(1)/Datastreams"): keep its slashes
        safe = "/()'," if name == "resource_path" else ""
        template = template.replace("{" + name + "}", quote(value, safe=safe))
    return template


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_every_hostile_string_in_every_parameter(
    operation: Any, http: httpx.Client, tally: Tally, known: Known
) -> None:
    """Each of the hostile strings in each parameter of the operation, the others left
    out or valid."""
    base = valid_path_values(known)
    start = (known.end - timedelta(days=1)).isoformat()
    for parameter in operation.iter_parameters():
        location = parameter.location.value
        for value in HOSTILE:
            path_values = dict(base)
            query: dict[str, str] = {"from": start} if operation.path.startswith("/v1/aqi/") else {}
            headers: dict[str, str] = {}
            if location == "path":
                path_values[parameter.name] = value
            elif location == "query":
                query[parameter.name] = value
            else:
                headers[parameter.name] = value
            body: dict[str, Any] | None = {} if operation.method.upper() == "POST" else None
            send(
                http,
                tally,
                method=operation.method.upper(),
                url=path_of(operation.path, path_values),
                params=query,
                headers=headers,
                json=body,
            )


@schema.parametrize()
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_schemathesis_with_hostile_strings_finds_no_server_error(
    case: schemathesis.Case, http: httpx.Client, tally: Tally
) -> None:
    """schemathesis' valid and invalid requests, its strings and integers drawn from
    the hostile dictionary part of the time (`FUZZ_CONFIG`)."""
    kwargs = case.as_transport_kwargs(base_url=str(http.base_url).rstrip("/"))
    kwargs.pop("cookies", None)
    if isinstance(kwargs.get("data"), str | bytes):
        kwargs["content"] = kwargs.pop("data")
    send(http, tally, **kwargs)
