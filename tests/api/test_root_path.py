"""Published under a path prefix (``SMARTBY_API_ROOT_PATH``), the API and the website
point every link, script and document under it, whether the proxy in front strips
the prefix or passes it on; and the documents describing the data carry the licence
headers like the data does.  (tests/deploy/test_edge_proxy.py does the same through
a real reverse proxy.)"""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import ClientFactory
from tests.fixtures.simulated import SimulatedData

ROOT = "/smartby"
#: every URL a page makes the browser fetch or follow
_URL_ATTRIBUTE = re.compile(r'\b(?:href|src|action|data-href|data-refresh)="([^"]*)"')


def local_urls(html: str) -> list[str]:
    """The site's own URLs in a page (absolute paths), not other sites' or anchors."""
    return [u for u in _URL_ATTRIBUTE.findall(html) if u.startswith("/") and not u.startswith("//")]


@pytest.mark.parametrize("stripped", [True, False], ids=["proxy-strips", "proxy-keeps"])
def test_docs_and_openapi_point_under_the_prefix(
    make_client: ClientFactory, simulated: SimulatedData, stripped: bool
) -> None:
    client = make_client(simulated.url, api_root_path=ROOT + "/")
    prefix = "" if stripped else ROOT
    docs = client.get(prefix + "/docs")
    assert docs.status_code == 200
    assert f"url: '{ROOT}/openapi.json'" in docs.text
    for url in re.findall(r'(?:href|src)="([^"]+)"', docs.text):
        assert url.startswith(ROOT + "/static/"), url
    redoc = client.get(prefix + "/redoc")
    assert redoc.status_code == 200
    assert f'spec-url="{ROOT}/openapi.json"' in redoc.text
    for url in re.findall(r'(?:href|src)="([^"]+)"', redoc.text):
        assert url.startswith(ROOT + "/static/"), url
    # the scripts are there, under the prefix the pages name
    script = re.search(r'src="([^"]+swagger-ui-bundle\.js)"', docs.text)
    assert script is not None
    assert client.get(script.group(1)).status_code == 200

    spec = client.get(prefix + "/openapi.json").json()
    assert spec["servers"][0]["url"] == ROOT
    assert (
        client.get(prefix + "/favicon.ico", follow_redirects=False)
        .headers["location"]
        .startswith(ROOT + "/static/")
    )


@pytest.mark.parametrize("stripped", [True, False], ids=["proxy-strips", "proxy-keeps"])
def test_the_website_links_under_the_prefix(
    make_client: ClientFactory, simulated: SimulatedData, stripped: bool
) -> None:
    client = make_client(simulated.url, api_root_path=ROOT)
    prefix = "" if stripped else ROOT
    for page in ("/", "/data", "/status", "/devices", "/energy", "/traffic"):
        reply = client.get(prefix + page)
        assert reply.status_code == 200, page
        urls = local_urls(reply.text)
        assert urls, page
        outside = [u for u in urls if not u.startswith(ROOT + "/")]
        assert not outside, f"{page} links outside {ROOT}: {outside[:5]}"
        # the page knows where it is: its own menu entry is marked current
        if page != "/":
            assert f'href="{ROOT}{page}" aria-current="page"' in reply.text, page
    # and every one of them answers (each path, once)
    front = client.get(prefix + "/")
    for url in sorted(set(local_urls(front.text))):
        path = url.split("#")[0]
        target = path if not stripped else path.removeprefix(ROOT) or "/"
        assert client.get(target).status_code == 200, url


def test_documents_link_under_the_prefix_and_open_data_stays_limited(
    make_client: ClientFactory, simulated: SimulatedData
) -> None:
    client = make_client(simulated.url, api_root_path=ROOT, api_rate_limit="3/minute")
    entry = client.get("/v1")
    assert entry.status_code == 200
    hrefs = [link["href"] for link in entry.json()["links"]]
    own = [h for h in hrefs if h.startswith("http://testserver")]
    assert own
    outside = [h for h in own if not h.startswith(f"http://testserver{ROOT}/")]
    assert not outside, outside
    # the edge sees /v1 under the prefix as open data: licence, rate limit
    assert entry.headers["x-license"] == "NLOD-2.0"
    statuses = [client.get(f"{ROOT}/v1/metrics").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_a_wrong_method_is_told_the_routes_methods_under_the_prefix(
    make_client: ClientFactory, simulated: SimulatedData
) -> None:
    client = make_client(simulated.url, api_root_path=ROOT)
    plain = make_client(simulated.url)
    wrong = client.delete(f"{ROOT}/v1/sites")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == plain.delete("/v1/sites").headers["allow"]
    assert "GET" in wrong.headers["allow"]


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/metrics"])
def test_the_documents_carry_the_licence_headers(
    make_client: ClientFactory, simulated: SimulatedData, path: str
) -> None:
    client = make_client(simulated.url)
    reply = client.get(path)
    assert reply.status_code == 200
    assert reply.headers["x-license"] == "NLOD-2.0"
    assert reply.headers["link"] == '<https://data.norge.no/nlod/en/2.0>; rel="license"'
    assert "distributed by" in reply.headers["x-attribution"]
    # and only once, and never on the website's own pages
    assert reply.headers.get_list("x-license") == ["NLOD-2.0"]
    assert "x-license" not in client.get("/status").headers
