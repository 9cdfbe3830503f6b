"""The production edge, for real: Caddy running deploy/caddy/Caddyfile terminates
TLS in front of ``smartby api`` (the deployed server), which trusts the forwarded
client address from that proxy alone.

The exchange expected: a client connects to Caddy over HTTPS from its own address;
Caddy connects to the API from 127.0.0.1 (the proxy's address, trusted) and writes the
client's address into X-Forwarded-For, replacing whatever the client put there; the
API counts the rate limit against that address.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from bench.api_storm import ApiProcess
from tests.deploy.caddy import SITE, Caddy
from tests.fixtures.simulated import SimulatedData

#: the proxy's address as the API sees it (Caddy dials the API on loopback)
PROXY = "127.0.0.1/32"
LIMIT = "3/minute"


class Upstream(BaseHTTPRequestHandler):
    """Stands in for Grafana (not installable here): answers every request and
    records the path and headers it came with."""

    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = b"grafana"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[ThreadingHTTPServer]:
    Upstream.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


Edge = Callable[..., tuple[ApiProcess, Caddy]]


@pytest.fixture
def edge(simulated: SimulatedData, tmp_path: Path, grafana: ThreadingHTTPServer) -> Iterator[Edge]:
    """Start the API (settings as keywords) and Caddy in front of it."""
    started: list[ApiProcess | Caddy] = []

    def start(root_path: str = "", **settings: str) -> tuple[ApiProcess, Caddy]:
        api = ApiProcess(simulated.url, tmp_path / "api.log", api_root_path=root_path, **settings)
        started.append(api)
        caddy = Caddy(
            tmp_path, api_port=api.port, grafana_port=grafana.server_address[1], root_path=root_path
        )
        started.append(caddy)
        return api, caddy

    yield start
    for process in reversed(started):
        process.stop()


def statuses(client: httpx.Client, count: int, **kwargs: object) -> list[int]:
    return [client.get("/v1/metrics", **kwargs).status_code for _ in range(count)]  # type: ignore[arg-type]


def test_each_client_behind_the_proxy_has_its_own_rate_limit(edge: Edge) -> None:
    _, caddy = edge(api_rate_limit=LIMIT, api_trusted_proxies=PROXY)
    with caddy.client("127.0.0.2") as first, caddy.client("127.0.0.3") as second:
        assert statuses(first, 4) == [200, 200, 200, 429]
        # another address behind the same proxy: a bucket of its own
        assert statuses(second, 3) == [200, 200, 200]
        assert statuses(first, 1) == [429]
        limited = first.get("/v1/metrics")
        assert limited.headers["content-type"] == "application/problem+json"
        assert limited.headers["x-license"] == "NLOD-2.0"


def test_a_forged_forwarded_address_gains_nothing(edge: Edge) -> None:
    api, caddy = edge(api_rate_limit=LIMIT, api_trusted_proxies=PROXY)
    # through the proxy: Caddy replaces what the client claims with its real address
    with caddy.client("127.0.0.4") as forger:
        codes = [
            forger.get("/v1/metrics", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
            for n in range(4)
        ]
        assert codes == [200, 200, 200, 429]
    # around the proxy, straight to the API: an untrusted peer's header is not read
    transport = httpx.HTTPTransport(local_address="127.0.0.5")
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}", transport=transport) as direct:
        codes = [
            direct.get("/v1/metrics", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(4)
        ]
        assert codes == [200, 200, 200, 429]
    # the clients the forgers pretended to be still have their whole allowance
    with caddy.client("127.0.0.6") as honest:
        assert statuses(honest, 3) == [200, 200, 200]


def test_the_api_sees_https_and_the_public_host_through_the_proxy(edge: Edge) -> None:
    _, caddy = edge(api_trusted_proxies=PROXY)
    with caddy.client("127.0.0.2") as client:
        entry = client.get("/v1")
        assert entry.status_code == 200
        own = [link["href"] for link in entry.json()["links"] if SITE in link["href"]]
        assert own
        assert all(h.startswith(f"{caddy.url}/") for h in own), own
        assert entry.headers["strict-transport-security"] == "max-age=31536000"
        # the API's metrics are for Prometheus inside the compose network only
        assert client.get("/metrics").status_code == 404
    # plain HTTP is sent to HTTPS
    with httpx.Client() as plain:
        moved = plain.get(f"http://{SITE}:{caddy.http_port}/v1", follow_redirects=False)
        assert moved.status_code in (301, 308)
        assert moved.headers["location"].startswith("https://")


def test_docs_and_website_work_under_a_prefix_the_proxy_strips(edge: Edge) -> None:
    root = "/smartby"
    _, caddy = edge(root_path=root, api_trusted_proxies=PROXY)
    with caddy.client("127.0.0.2") as client:
        docs = client.get(f"{root}/docs")
        assert docs.status_code == 200
        assert f"url: '{root}/openapi.json'" in docs.text
        assert docs.headers["x-license"] == "NLOD-2.0"
        for url in re.findall(r'(?:href|src)="([^"]+)"', docs.text):
            assert client.get(url).status_code == 200, url
        spec = client.get(f"{root}/openapi.json")
        assert spec.status_code == 200
        assert spec.json()["servers"][0]["url"] == root
        assert spec.headers["x-license"] == "NLOD-2.0"
        redoc = client.get(f"{root}/redoc")
        assert f'spec-url="{root}/openapi.json"' in redoc.text
        # every link of the front page is under the prefix, and answers
        front = client.get(f"{root}/")
        assert front.status_code == 200
        links = {
            u.split("#")[0] for u in re.findall(r'(?:href|src|action)="(/[^"/][^"]*)"', front.text)
        }
        assert links
        for url in sorted(links):
            assert url.startswith(f"{root}/"), url
            assert client.get(url).status_code == 200, url
        # the bare prefix is the front page; the metrics stay inside
        bare = client.get(root, follow_redirects=False)
        assert bare.status_code == 308
        assert bare.headers["location"] == f"{root}/"
        assert client.get(f"{root}/metrics").status_code == 404


def test_grafana_is_served_under_its_sub_path(edge: Edge) -> None:
    """Grafana serves from /grafana/ itself (GF_SERVER_SERVE_FROM_SUB_PATH), so the
    proxy passes the path on whole, with the client's address and scheme."""
    _, caddy = edge()
    Upstream.seen.clear()
    with caddy.client("127.0.0.7") as client:
        reply = client.get("/grafana/d/smartby-operations")
        assert reply.status_code == 200
        assert reply.text == "grafana"
    path, headers = Upstream.seen[-1]
    assert path == "/grafana/d/smartby-operations"
    assert headers["x-forwarded-for"] == "127.0.0.7"
    assert headers["x-forwarded-proto"] == "https"
