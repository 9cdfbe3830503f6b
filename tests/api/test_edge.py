"""What every request gets: the per-client rate limit (429 with Retry-After, a key
for more), CORS for reads, licence headers, Prometheus metrics, and problem+json
for unknown routes, wrong methods and bugs."""

from __future__ import annotations

import logging

import pytest

from tests.api.conftest import ADMIN_KEY, READER_KEY, ClientFactory
from tests.fixtures.simulated import SimulatedData


def test_open_reads_are_rate_limited_per_client_and_a_key_lifts_the_limit(
    make_client: ClientFactory, simulated: SimulatedData
) -> None:
    client = make_client(
        simulated.url,
        api_rate_limit="3/minute",
        api_key_rate_limit="5/minute",
        api_keys=f"reader:{READER_KEY}",
    )
    for _ in range(3):
        assert client.get("/v1/metrics").status_code == 200
    limited = client.get("/v1/metrics")
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    problem = limited.json()
    assert "3 requests per 1 minute" in problem["detail"]
    assert "API key" in problem["detail"]
    assert limited.headers["x-license"] == "NLOD-2.0"

    # a key has its own, higher allowance; a wrong key counts against the address,
    # which is over its limit already
    keyed = {"X-API-Key": READER_KEY}
    assert [client.get("/v1/metrics", headers=keyed).status_code for _ in range(5)] == [200] * 5
    assert client.get("/v1/metrics", headers=keyed).status_code == 429
    wrong = client.get("/v1/metrics", headers={"X-API-Key": "not-a-key"})
    assert wrong.status_code == 429

    # Prometheus metrics are not under /v1 and never limited
    assert all(client.get("/metrics").status_code == 200 for _ in range(5))


def test_cors_is_open_for_reads(client) -> None:
    response = client.get("/v1/metrics", headers={"Origin": "https://example.org"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "ETag" in response.headers["access-control-expose-headers"]
    preflight = client.options(
        "/v1/latest",
        headers={
            "Origin": "https://example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )
    assert preflight.status_code == 200
    assert "GET" in preflight.headers["access-control-allow-methods"]
    post = client.options(
        "/v1/admin/devices",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"},
    )
    assert post.status_code == 400  # no cross-origin writes


def test_prometheus_metrics_count_requests_by_route_template(
    make_client: ClientFactory, simulated: SimulatedData
) -> None:
    client = make_client(simulated.url)
    client.get("/v1/sites/narvik-sentrum")
    client.get("/v1/sites/nowhere")
    client.get("/v1/no-such-route")
    text = client.get("/metrics").text
    assert (
        'smartby_api_requests_total{method="GET",route="/v1/sites/{site_id}",status="200"} 1.0'
        in text
    )
    assert (
        'smartby_api_requests_total{method="GET",route="/v1/sites/{site_id}",status="404"} 1.0'
        in text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert (
        'smartby_api_request_duration_seconds_count{method="GET",route="/v1/sites/{site_id}"} 2.0'
        in text
    )


def test_unknown_routes_and_methods_are_problems(client) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["x-license"] == "NLOD-2.0"
    wrong_method = client.delete("/v1/sites")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"
    assert "GET" in wrong_method.headers["allow"]


@pytest.mark.allow_logged_errors
def test_a_bug_is_a_generic_500_and_is_logged(
    make_client: ClientFactory, simulated: SimulatedData, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(simulated.url, api_keys=f"ops:{ADMIN_KEY}")

    @client.app.get("/v1/boom")  # type: ignore[attr-defined]
    async def boom() -> None:
        raise RuntimeError('relation "secret_table" does not exist')

    response = client.get("/v1/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-license"] == "NLOD-2.0"
    assert "secret_table" not in response.text
    assert response.json()["title"] == "Internal server error"
    assert any("secret_table" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert 'route="/v1/boom",status="500"' in client.get("/metrics").text


def test_sensorthings_goes_through_the_same_edge_as_v1(
    make_client: ClientFactory, simulated: SimulatedData
) -> None:
    """The SensorThings view is the same open data: one rate limit per client across
    /v1 and /sta/v1.1, the licence headers once, ETags, the micro-cache and CORS."""
    client = make_client(simulated.url, api_rate_limit="6/minute")
    things = "/sta/v1.1/Things?$top=2"
    first = client.get(things, headers={"Origin": "https://example.org"})
    assert first.status_code == 200
    assert first.headers.get_list("x-license") == ["NLOD-2.0"]
    assert first.headers.get_list("x-attribution") == [
        "Contains data under the Norwegian licence for Open Government data (NLOD) "
        "distributed by Narvik"
    ]
    assert first.headers["access-control-allow-origin"] == "*"
    assert first.headers["cache-control"] == "public, max-age=60"

    hits = client.app.state.cache.hits  # type: ignore[attr-defined]
    again = client.get(things, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert client.app.state.cache.hits == hits + 1  # type: ignore[attr-defined]

    value = client.get("/sta/v1.1/Things('narvik-sentrum')/name/$value")
    assert value.status_code == 200
    assert value.headers["content-type"] == "text/plain; charset=utf-8"
    assert value.headers["etag"]
    assert value.headers["x-license"] == "NLOD-2.0"

    missing = client.get("/sta/v1.1/Nothing")
    assert missing.status_code == 404
    assert missing.headers["x-license"] == "NLOD-2.0"

    # four requests so far; /v1 and /sta/v1.1 draw on the same allowance
    assert client.get("/v1/metrics").status_code == 200
    assert client.get("/sta/v1.1").status_code == 200
    limited = client.get("/sta/v1.1/Datastreams")
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.headers["x-license"] == "NLOD-2.0"
    assert client.get("/v1/metrics").status_code == 429


def test_a_wrong_key_is_refused_on_sensorthings_too(
    make_client: ClientFactory, simulated: SimulatedData
) -> None:
    client = make_client(simulated.url, api_keys=f"reader:{READER_KEY}")
    assert client.get("/sta/v1.1", headers={"X-API-Key": "not-a-key"}).status_code == 401
    assert client.get("/sta/v1.1", headers={"X-API-Key": READER_KEY}).status_code == 200


def test_wrong_api_keys_count_against_the_callers_limit(
    make_client: ClientFactory, simulated: SimulatedData
) -> None:
    """Guessing keys is reading too: each wrong key counts against the address, so
    after the address's limit the guesses get 429 with Retry-After, not 401."""
    client = make_client(simulated.url, api_rate_limit="100/minute", api_keys=f"ops:{ADMIN_KEY}")
    answers = [
        client.get("/v1/metrics", headers={"X-API-Key": f"guess-{n:04d}"}) for n in range(400)
    ]
    assert [a.status_code for a in answers] == [401] * 100 + [429] * 300
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "100 requests per 1 minute" in refused.json()["detail"]
    # the admin routes are behind the same edge
    admin = client.get("/v1/admin/devices", headers={"X-API-Key": "guess-admin"})
    assert admin.status_code == 429
    # and so is the address's own reading; the right key has its own allowance
    assert client.get("/v1/metrics").status_code == 429
    assert client.get("/v1/metrics", headers={"X-API-Key": ADMIN_KEY}).status_code == 200


@pytest.mark.allow_logged_errors
def test_a_bugs_traceback_is_logged_bounded(
    make_client: ClientFactory, simulated: SimulatedData, caplog: pytest.LogCaptureFixture
) -> None:
    """A RecursionError's thousand frames made 120 KB of log per request; the edge
    keeps the innermost frames only (`api.edge.bounded`)."""
    client = make_client(simulated.url)

    # two functions in turn, as a recursive-descent parser's: Python does not fold
    # their frames into "previous line repeated" the way it folds one function's
    def deep(n: int) -> int:
        return deeper(n + 1) + 1

    def deeper(n: int) -> int:
        return deep(n + 1) + 1

    @client.app.get("/v1/deep")  # type: ignore[attr-defined]
    async def recurse() -> None:
        deep(0)

    assert client.get("/v1/deep").status_code == 500
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    text = logging.Formatter().formatException(logged[0].exc_info)  # type: ignore[arg-type]
    assert "RecursionError" in text
    assert "in deep" in text
    assert len(text) < 10_000
