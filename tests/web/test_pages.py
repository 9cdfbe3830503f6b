"""The server-rendered pages on the simulated database, without a browser: every page
in both languages, the language choice, and every number checked against the /v1
document it comes from."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from tests.fixtures.services import Services
from tests.web.pages import attribute_values, chart_specs, site_pages, visible_text
from web.air import LEVELS
from web.i18n import translations
from web.pages.air_now import STALE_AFTER


def nb(message: str) -> str:
    return translations("nb").gettext(message)


@pytest.fixture(scope="module")
def pages(site: TestClient) -> list[str]:
    return site_pages(site)


def test_every_page_answers_in_both_languages(site: TestClient, pages: list[str]) -> None:
    for path in pages:
        for language, heading in (("nb", "Luft og miljø i"), ("en", "Air and environment in")):
            response = site.get(path, params={"lang": language})
            assert response.status_code == 200, (path, response.text[:500])
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["content-language"] == language
            assert f'<html lang="{language}"' in response.text
            assert heading in response.text, path
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert "img-src 'self' data: https://cache.kartverket.no" in csp


def test_language_from_the_switch_the_cookie_and_the_browser(site: TestClient) -> None:
    site.cookies.clear()  # the client keeps the cookie other tests' ?lang= set
    assert 'lang="nb"' in site.get("/energy", headers={"accept-language": ""}).text
    english = site.get("/energy", headers={"accept-language": "en-GB,en;q=0.9,nb;q=0.5"})
    assert '<html lang="en"' in english.text
    assert '<html lang="nb"' in site.get("/energy", headers={"accept-language": "nn-NO"}).text
    assert (
        '<html lang="nb"' in site.get("/energy", headers={"accept-language": "de, nb;q=0.2"}).text
    )
    # the visible switch links to the same page in the other language...
    page = site.get("/energy?sort=name", headers={"accept-language": "nb"}).text
    assert 'href="/energy?sort=name&amp;lang=en" lang="en" hreflang="en">English</a>' in page
    # ...and following it keeps the choice in a cookie for the next pages
    switched = site.get("/energy?lang=en", headers={"accept-language": "nb"})
    assert "lang=en" in switched.headers["set-cookie"]
    assert "httponly" in switched.headers["set-cookie"].lower()
    site.cookies.set("lang", "en")
    after = site.get("/traffic", headers={"accept-language": "nb"})
    assert '<html lang="en"' in after.text
    site.cookies.clear()


def test_a_missing_station_building_counter_or_device_is_a_404_page(site: TestClient) -> None:
    for path in (
        "/stations/no-such-place",
        "/stations/narvik-vgs",  # a building, not an air-quality station
        "/energy/narvik-sentrum",  # a station, not a building
        "/traffic/aq-sentrum",  # not a counter
        "/devices/no-such-device",
    ):
        response = site.get(path, params={"lang": "nb"})
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert nb("Not found") in response.text


def test_air_now_lists_every_station_with_the_apis_level(site: TestClient) -> None:
    stations = sorted(
        {d["site_id"] for d in site.get("/v1/devices?kind=air_quality").json()["data"]}
    )
    aqi = {r["site_id"]: r for r in site.get("/v1/aqi").json()["data"]}
    page = site.get("/", params={"lang": "nb"}).text
    assert sorted(attribute_values(page, "data-site")) == stations
    now = datetime.now(UTC)
    for site_id in stations:
        item = re.search(rf'<li class="station" id="station-{site_id}".*?</li>', page, re.S)
        assert item is not None
        hour = datetime.fromisoformat(aqi[site_id]["hour"]) if site_id in aqi else None
        if hour is not None and now - hour > STALE_AFTER + timedelta(minutes=1):
            # an hour older than "now" is not shown as now: the station says so
            assert 'data-level="0"' in item.group(0)
            assert nb("No valid hour") in item.group(0)
        elif hour is not None:
            level = LEVELS[aqi[site_id]["level"] - 1]
            assert f'data-level="{level.number}"' in item.group(0)
            assert f'data-label="{nb(level.name)}"' in item.group(0)
            assert nb(level.general) in item.group(0)
            assert nb(level.sensitive) in item.group(0)
        else:
            assert 'data-level="0"' in item.group(0)
            assert nb("This station has no valid hour yet.") in item.group(0)
    # the list alone, for the page's script to swap in every minute
    fragment = site.get("/air-now/stations", params={"lang": "en"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert sorted(attribute_values(fragment.text, "data-site")) == stations


def _points(site: TestClient, source: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url: str | None = source
    while url:
        document = site.get(url).json()
        rows += document["data"]
        url = document["next"]
    return rows


def test_station_charts_and_tables_show_the_apis_hourly_means(
    site: TestClient, pages: list[str]
) -> None:
    station = next(p for p in pages if p.startswith("/stations/"))
    for span in ("24h", "7d"):
        page = site.get(station, params={"range": span, "lang": "en"}).text
        specs = chart_specs(page)
        assert {"pm25", "pm10", "no2", "o3"} <= set(specs)
        for spec in specs.values():
            source = spec["source"]
            assert source.startswith(f"/v1/sites/{station.rsplit('/', 1)[1]}/metrics/")
            assert parse_qs(urlsplit(source).query)["bucket"] == ["1h"]
            rows = _points(site, source)
            assert rows, source
            assert spec["x"] == [int(datetime.fromisoformat(r["time"]).timestamp()) for r in rows]
            assert spec["y"] == [r["mean"] for r in rows]
            assert spec["marks"] == [r["mean"] if r["suspect_count"] else None for r in rows]
            assert [b["from"] for b in spec["bands"]][:2] == [0.0, spec["bands"][1]["from"]]
        # the table alternative holds the same hours and means
        for row in _points(site, specs["pm10"]["source"]):
            assert f'data-time="{row["time"]}" data-mean="{row["mean"]}"' in page


def test_station_counts_days_over_the_pm10_limit_from_the_daily_means(
    site: TestClient, pages: list[str]
) -> None:
    station = next(p for p in pages if p.startswith("/stations/"))
    page = site.get(station, params={"lang": "en"}).text
    source = chart_specs(page)["pm10"]["source"]
    query = parse_qs(urlsplit(source).query)
    year_start = (
        datetime.fromisoformat(query["to"][0])
        .astimezone(ZoneInfo("Europe/Oslo"))
        .replace(month=1, day=1, hour=0, minute=0, second=0)
    )
    days = _points(
        site,
        f"{urlsplit(source).path}?bucket=1d&from={year_start.isoformat().replace('+', '%2B')}"
        f"&to={query['to'][0]}",
    )
    valid = [d for d in days if (d["coverage"] or 0) >= 0.75]
    over = sum(1 for d in valid if d["mean"] > 50)
    text = visible_text(page)
    assert "PM10: daily mean above 50 µg/m³" in text
    expected = f"{over} day{'s' if over != 1 else ''} of {len(valid)} days with enough data"
    assert expected in text


def test_energy_sorts_buildings_by_use_per_day_or_by_name(site: TestClient) -> None:
    by_use = site.get("/energy", params={"lang": "en"}).text
    names = re.findall(r'<th scope="row"><a href="/energy/([^"]+)">', by_use)
    buildings = {f["id"] for f in site.get("/v1/sites?kind=building").json()["features"]}
    assert sorted(names) == sorted(buildings)
    per_day = [
        float(v.replace(",", ""))
        for v in re.findall(
            r'<a href="/energy/[^"]+">[^<]+</a></th>\s*<td class="num">([^<]+)<', by_use
        )
        if v != "–"
    ]
    assert per_day == sorted(per_day, reverse=True)
    by_name = site.get("/energy", params={"lang": "en", "sort": "name"}).text
    shown = re.findall(r'<a href="/energy/[^"]+">([^<]+)</a></th>', by_name)
    assert shown == sorted(shown)
    assert 'aria-sort="ascending"' in by_name


def test_a_buildings_chart_is_its_daily_kwh_from_the_api(
    site: TestClient, pages: list[str]
) -> None:
    building = next(p for p in pages if p.startswith("/energy/"))
    spec = chart_specs(site.get(building).text)["energy"]
    rows = _points(site, spec["source"])
    assert rows
    assert spec["y"] == [r["kwh"] for r in rows]
    assert spec["kind"] == "bars"


def test_traffic_shows_the_apis_adt_and_only_daily_aggregates(site: TestClient) -> None:
    page = site.get("/traffic", params={"lang": "en"}).text
    for adt in site.get("/v1/traffic/adt").json()["data"]:
        assert f"{round(adt['vehicles_per_day']):,}" in page
    counter = site.get("/v1/devices?kind=traffic").json()["data"][0]["id"]
    spec = chart_specs(site.get(f"/traffic/{counter}").text)["volume"]
    assert "/v1/traffic/daily" in spec["source"]
    assert spec["step"] == 86400
    assert spec["y"] == [r["volume"] for r in _points(site, spec["source"])]


def test_devices_page_counts_states_as_the_api_does(site: TestClient) -> None:
    health = site.get("/v1/status/devices").json()["data"]
    page = site.get("/devices", params={"lang": "en"}).text
    assert sorted(re.findall(r'<th scope="row"><a href="/devices/([^"]+)">', page)) == sorted(
        d["device_id"] for d in health
    )
    for state in ("online", "silent", "offline"):
        count = sum(1 for d in health if d["state"] == state)
        assert re.search(rf'state-{state}">.*?</dt><dd>{count}</dd>', page, re.S), state
    device = site.get("/devices/aq-sentrum", params={"lang": "en"}).text
    own = next(d for d in health if d["device_id"] == "aq-sentrum")
    assert f'<td class="num">{own["readings"]["total"]:,}</td>' in device


def test_status_page_links_grafana_when_configured(site: TestClient) -> None:
    page = site.get("/status", params={"lang": "en"}).text
    assert 'href="http://grafana.example.invalid:3000"' in page
    spec = chart_specs(page)["per-minute"]
    minutes = site.get("/v1/status").json()["data"]["readings_per_minute"]
    assert len(spec["y"]) == len(minutes) == 60


def test_the_download_builder_writes_requests_the_api_answers(site: TestClient) -> None:
    index = site.get("/v1/export").json()["data"]
    for dataset in index:
        for fmt in dataset["formats"]:
            page = site.get(
                "/data/request", params={"dataset": dataset["id"], "format": fmt, "lang": "en"}
            ).text
            [url] = re.findall(r'id="export-url" download>([^<]+)<', page)
            url = url.replace("&amp;", "&")
            assert url.startswith("http://testserver/v1/export/" + dataset["id"])
            response = site.get(url.removeprefix("http://testserver"))
            assert response.status_code == 200, (url, response.text[:300])
            assert f"curl -fL -o {dataset['id']}." in page
            assert "import pandas as pd" in page
    # traffic comes in aggregates only: the builder says so and asks for hours
    page = site.get(
        "/data", params={"dataset": "readings", "metric": "vehicle_count", "bucket": "raw"}
    ).text
    [url] = re.findall(r'id="export-url" download>([^<]+)<', page)
    assert "bucket=1h" in url
    assert site.get(url.replace("&amp;", "&").removeprefix("http://testserver")).status_code == 200
    # ...but a station's readings may come raw
    page = site.get(
        "/data", params={"dataset": "readings", "site": "narvik-sentrum", "bucket": "raw"}
    ).text
    [url] = re.findall(r'id="export-url" download>([^<]+)<', page)
    assert "bucket=raw" in url
    assert site.get(url.replace("&amp;", "&").removeprefix("http://testserver")).status_code == 200


def test_docs_and_redoc_load_their_assets_from_this_server(site: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        page = site.get(path).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert sources, path
        assert all(s.startswith("/") for s in sources), (path, sources)
        for source in sources:
            asset = site.get(source)
            assert asset.status_code == 200, source
    bundle = site.get("/docs").text
    assert '"validatorUrl": null' in bundle


def test_static_files_are_versioned_and_cached(site: TestClient) -> None:
    page = site.get("/").text
    [css] = re.findall(r'href="(/static/site\.css\?v=[0-9a-f]+)"', page)
    response = site.get(css)
    assert response.status_code == 200
    assert "max-age=31536000" in response.headers["cache-control"]
    [leaflet] = re.findall(r'src="(/static/vendor/leaflet-[^"]+/leaflet\.js)"', page)
    assert "immutable" in site.get(leaflet).headers["cache-control"]
    assert site.get("/favicon.ico", follow_redirects=False).status_code == 308


def test_every_page_answers_on_an_empty_database(
    db_url: str, services: Services, site_settings: Settings
) -> None:
    """A city that has registered nothing yet still gets pages that say so."""
    settings = services.settings(database_url=db_url, api_rate_limit=site_settings.api_rate_limit)
    with TestClient(create_app(settings)) as empty:
        for path in (
            "/",
            "/air-now/stations",
            "/energy",
            "/traffic",
            "/data",
            "/devices",
            "/status",
        ):
            for language in ("nb", "en"):
                response = empty.get(path, params={"lang": language})
                assert response.status_code == 200, (path, response.text[:300])
        assert empty.get("/stations/narvik-sentrum").status_code == 404
