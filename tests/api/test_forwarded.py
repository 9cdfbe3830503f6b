"""Forwarded client addresses are believed only from the proxies in
``SMARTBY_API_TRUSTED_PROXIES`` (issue 11, issue 15 §6): a client that sends its own
X-Forwarded-For gets no new rate-limit bucket, and a trusted proxy's clients each get
their own.  Checked on the parsing, in the app, and against ``smartby api`` as a real
server (whose uvicorn would otherwise believe 127.0.0.1)."""

from __future__ import annotations

import asyncio
import warnings
from collections import Counter
from collections.abc import Iterator
from ipaddress import ip_address, ip_network

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from api.edge import address_identity
from api.forwarded import TrustedProxies, forwarded_elements, parse_node
from bench.api_storm import KeepAlive
from core.settings import Settings, SettingsError, load_settings
from tests.api.conftest import ServerFactory, assert_quiet_log
from tests.fixtures.services import Services
from tests.fixtures.simulated import SimulatedData


def scope(peer: str, *headers: tuple[str, str]) -> dict[str, object]:
    return {
        "type": "http",
        "client": (peer, 50000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


PROXY = TrustedProxies((ip_network("10.0.0.0/24"), ip_network("::1/128")), "x-forwarded-for")


def test_forwarded_nodes_parse_as_addresses_or_not_at_all() -> None:
    assert parse_node("192.0.2.7") == (ip_address("192.0.2.7"), 0)
    assert parse_node(" 192.0.2.7:8443 ") == (ip_address("192.0.2.7"), 8443)
    assert parse_node('"[2001:db8::1]:443"') == (ip_address("2001:db8::1"), 443)
    assert parse_node("2001:db8::1") == (ip_address("2001:db8::1"), 0)
    assert parse_node("::ffff:192.0.2.7") == (ip_address("192.0.2.7"), 0)
    for junk in ("unknown", "_hidden", "", "1.2.3", "example.org", "[::1", "1.2.3.4:x"):
        assert parse_node(junk) is None, junk


def test_forwarded_header_elements_per_rfc_7239() -> None:
    value = 'for=192.0.2.60;proto=https;by=203.0.113.43, For="[2001:db8:cafe::17]:4711", for=x;;'
    assert forwarded_elements(value) == [
        {"for": "192.0.2.60", "proto": "https", "by": "203.0.113.43"},
        {"for": "[2001:db8:cafe::17]:4711"},
        {"for": "x"},
    ]
    assert forwarded_elements('for="a,b;c"') == [{"for": "a,b;c"}]


def test_the_list_is_read_from_the_right_and_only_from_a_trusted_peer() -> None:
    spoofed = ("X-Forwarded-For", "6.6.6.6, 192.0.2.1")
    # an untrusted peer's header is ignored
    assert PROXY.resolve(scope("198.51.100.9", spoofed)) is None
    # the proxy appended the address it saw: the client is the first untrusted from the right
    assert PROXY.resolve(scope("10.0.0.5", spoofed)) == (("192.0.2.1", 0), None)
    # a chain of trusted proxies is walked through
    chain = ("X-Forwarded-For", "6.6.6.6, 192.0.2.1, 10.0.0.7")
    assert PROXY.resolve(scope("10.0.0.5", chain)) == (("192.0.2.1", 0), None)
    # what is not an address ends the walk at the last trusted hop
    garbage = ("X-Forwarded-For", "192.0.2.1, unknown, 10.0.0.7")
    assert PROXY.resolve(scope("10.0.0.5", garbage)) == (("10.0.0.7", 0), None)
    # headers that repeat are one list; the scheme comes with it
    repeated = scope(
        "::1",
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-For", "2001:db8::5"),
        ("X-Forwarded-Proto", "https"),
    )
    assert PROXY.resolve(repeated) == (("2001:db8::5", 0), "https")
    # no header: the peer stays the client
    assert PROXY.resolve(scope("10.0.0.5")) is None
    # the Forwarded header instead, when that is what the proxies write
    rfc = TrustedProxies(PROXY.networks, "forwarded")
    header = ("Forwarded", 'for=6.6.6.6, for="192.0.2.1:1234";proto=https')
    assert rfc.resolve(scope("10.0.0.5", header, ("X-Forwarded-For", "7.7.7.7"))) == (
        ("192.0.2.1", 1234),
        "https",
    )
    # a proto that is not http or https is not taken
    odd = scope("10.0.0.5", ("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-Proto", "gopher"))
    assert PROXY.resolve(odd) == (("192.0.2.1", 0), None)


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert address_identity("2001:db8:1:2:aaaa::1") == address_identity("2001:db8:1:2:bbbb::9")
    assert address_identity("2001:db8:1:2::1") != address_identity("2001:db8:1:3::1")
    assert address_identity("192.0.2.1") == "addr:192.0.2.1"
    assert address_identity("testclient") == "addr:testclient"


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    settings = load_settings(env="test", api_trusted_proxies=" 10.0.0.5, 172.18.0.0/16 , ::1")
    assert [str(n) for n in settings.api_trusted_proxy_networks] == [
        "10.0.0.5/32",
        "172.18.0.0/16",
        "::1/128",
    ]
    assert Settings(env="test").api_trusted_proxy_networks == ()
    with pytest.raises(SettingsError, match=r"SMARTBY_API_TRUSTED_PROXIES: 'proxy' is not"):
        load_settings(env="test", api_trusted_proxies="10.0.0.5,proxy")


@pytest.fixture
def app_behind(services: Services, simulated: SimulatedData) -> Iterator[dict[str, TestClient]]:
    """The app with 3 reads a minute per client, trusting 10.0.0.5; one test client as
    that proxy, one as a stranger."""
    settings = services.settings(
        database_url=simulated.url, api_rate_limit="3/minute", api_trusted_proxies="10.0.0.5"
    )
    app = create_app(settings)
    with (
        TestClient(app, client=("10.0.0.5", 40000)) as proxy,
        TestClient(app, client=("198.51.100.9", 40000)) as stranger,
    ):
        yield {"proxy": proxy, "stranger": stranger}


def test_in_the_app_a_trusted_proxy_gets_a_bucket_per_client(
    app_behind: dict[str, TestClient],
) -> None:
    proxy, stranger = app_behind["proxy"], app_behind["stranger"]
    for n in range(1, 4):
        answers = [
            proxy.get("/v1/metrics", headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code
            for _ in range(3)
        ]
        assert answers == [200, 200, 200]
        limited = proxy.get("/v1/metrics", headers={"X-Forwarded-For": f"192.0.2.{n}"})
        assert limited.status_code == 429
    # a stranger's own X-Forwarded-For is not believed: one bucket, whatever it claims
    answers = [
        stranger.get("/v1/metrics", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(10)
    ]
    assert answers == [200] * 3 + [429] * 7


def test_links_follow_the_scheme_the_proxy_forwarded(app_behind: dict[str, TestClient]) -> None:
    headers = {"X-Forwarded-For": "192.0.2.50", "X-Forwarded-Proto": "https"}
    via_proxy = app_behind["proxy"].get("/v1", headers=headers)
    assert via_proxy.status_code == 200
    assert "https://testserver/v1/" in via_proxy.text
    spoofed = app_behind["stranger"].get("/v1", headers=headers)
    assert "https://testserver" not in spoofed.text
    assert "http://testserver/v1/" in spoofed.text


def _statuses(port: int, forwarded: list[str], *, source: str = "127.0.0.1") -> Counter[int]:
    """One request per forwarded address, on one keep-alive connection from ``source``."""

    async def run() -> Counter[int]:
        connection = KeepAlive(port, source=source)
        counts: Counter[int] = Counter()
        try:
            for address in forwarded:
                counts[await connection.get("/v1/metrics", {"X-Forwarded-For": address})] += 1
        finally:
            await connection.close()
        return counts

    return asyncio.run(run())


ROTATING = [f"198.18.{n // 250}.{n % 250 + 1}" for n in range(300)]


def test_a_real_server_believes_no_forwarded_address_by_default(
    api_process: ServerFactory,
) -> None:
    """Issue 11's bypass: 300 requests from 127.0.0.1 with a new X-Forwarded-For each.
    uvicorn's own proxy headers would believe 127.0.0.1; the API's server leaves
    that to the app, which trusts no proxy by default: 100 pass, then 429."""
    server = api_process(api_rate_limit="100/minute")
    assert _statuses(server.port, ROTATING) == Counter({200: 100, 429: 200})
    assert_quiet_log(server)


def test_a_real_server_gives_a_trusted_proxys_clients_their_own_buckets(
    api_process: ServerFactory,
) -> None:
    server = api_process(api_rate_limit="100/minute", api_trusted_proxies="127.0.0.1")
    # through the trusted proxy, 300 clients: each far within its limit
    assert _statuses(server.port, ROTATING) == Counter({200: 300})
    # the same from another local address, which is no proxy: one client
    assert _statuses(server.port, ROTATING, source="127.0.0.2") == Counter({200: 100, 429: 200})
    assert_quiet_log(server)
