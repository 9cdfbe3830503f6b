"""The website in a real browser (Debian's Chromium through Playwright), on the
simulated database, every page in both languages: no console errors, no failed
requests, nothing fetched from another site but map tiles (which are blocked here, as
on a machine without internet), axe-core finding no serious or critical WCAG 2.1 AA
violation; and the map, the charts, the language switch, the minute refresh, the
download builder and the pages with scripts turned off."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request, Route

from tests.web.conftest import LiveSite
from tests.web.pages import site_pages
from web.assets import vendor_url

LANGUAGES = ("nb", "en")
#: axe-core rule tags of WCAG 2.1 level A and AA
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@dataclass
class Visit:
    """What happened while a page loaded and ran."""

    page: Page
    base: str
    tiles: re.Pattern[str]
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def is_tile(self, url: str) -> bool:
        return bool(self.tiles.match(url))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not self.is_tile(message.location.get("url", "")):
            self.errors.append(f"{message.text} ({message.location.get('url')})")

    def on_failed(self, request: Request) -> None:
        if not self.is_tile(request.url):
            self.failed.append(f"{request.url}: {request.failure}")

    def on_route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(self.base + "/") or url.startswith("data:"):
            route.continue_()
        else:
            self.elsewhere.append(url)  # on a machine without internet: never answered
            route.abort()

    def assert_clean(self) -> None:
        assert not self.errors, self.errors
        assert not self.failed, self.failed
        strangers = [u for u in self.elsewhere if not self.is_tile(u)]
        assert not strangers, f"requests to other sites: {strangers}"


def tile_pattern(template: str) -> re.Pattern[str]:
    """The configured tile URL template as a pattern of the URLs Leaflet makes of it."""
    parts = [re.escape(p) for p in re.split(r"\{[a-z]\}", template)]
    return re.compile("[^/]+".join(parts) + r"$")


def open_page(context: BrowserContext, live: LiveSite, path: str, *, script: bool = True) -> Visit:
    page = context.new_page()
    visit = Visit(page, live.base, tile_pattern(live.settings.map_tiles))
    page.on("console", visit.on_console)
    page.on("pageerror", lambda error: visit.errors.append(f"uncaught: {error}"))
    page.on("requestfailed", visit.on_failed)
    page.on(
        "response",
        lambda r: visit.failed.append(f"{r.url}: {r.status}") if r.status >= 400 else None,
    )
    page.route("**/*", visit.on_route)
    response = page.goto(live.base + path, wait_until="load")
    assert response is not None
    assert response.status == 200, path
    if script:
        page.wait_for_function("() => window.smartby && window.smartby.ready === true")
    return visit


@pytest.fixture(scope="module")
def paths(site: TestClient) -> list[str]:
    return site_pages(site)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context
    finally:
        context.close()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical WCAG 2.1 A/AA violations on the page (axe is
    vendored and served by the site itself, so the page's CSP lets it in)."""
    page.add_script_tag(url=vendor_url("axe-core", "axe.min.js"))
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
            return result.violations
                .filter(v => v.impact === "serious" || v.impact === "critical")
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
        }""",
        WCAG_21_AA,
    )
    return found


# ---------------------------------------------------------------- every page


def test_every_page_in_both_languages_is_clean_and_accessible(
    browser: Browser, live_site: LiveSite, paths: list[str]
) -> None:
    """One load per page and language: the console, the network and axe-core."""
    problems: dict[str, Any] = {}
    for language in LANGUAGES:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            for path in paths:
                visit = open_page(context, live_site, f"{path}?lang={language}")
                assert visit.page.evaluate("document.documentElement.lang") == language
                try:
                    visit.assert_clean()
                except AssertionError as exc:
                    problems[f"{language} {path}"] = str(exc)
                violations = axe_violations(visit.page)
                if violations:
                    problems[f"{language} {path} axe"] = violations
                visit.page.close()
        finally:
            context.close()
    assert not problems, problems


def test_tiles_are_the_only_requests_to_another_site(
    context: BrowserContext, live_site: LiveSite
) -> None:
    """With the default basemap the map asks the tile server, and only it; blocked
    here, the markers stay usable on a plain background and the page says why."""
    visit = open_page(context, live_site, "/?lang=en")
    visit.page.wait_for_selector("#map-note:not([hidden])")
    assert visit.elsewhere, "the map asked for no tiles"
    assert all(visit.is_tile(u) for u in visit.elsewhere)
    assert urlsplit(visit.elsewhere[0]).hostname == "cache.kartverket.no"
    assert "© Kartverket" in visit.page.inner_text(".leaflet-control-attribution")
    assert "background map could not be loaded" in visit.page.inner_text("#map-note")
    visit.assert_clean()


# ---------------------------------------------------------------- the map


def test_one_marker_per_air_quality_station_labelled_in_words(
    context: BrowserContext, live_site: LiveSite
) -> None:
    visit = open_page(context, live_site, "/?lang=nb")
    page = visit.page
    stations = context.request.get(live_site.base + "/v1/devices?kind=air_quality").json()
    expected = sorted({d["site_id"] for d in stations["data"] if d["site_id"]})
    markers = page.locator(".leaflet-marker-icon")
    assert markers.count() == len(expected)
    assert sorted(markers.evaluate_all("ms => ms.map(m => m.dataset.site)")) == expected
    labels = dict(
        page.locator("#stations-list .station").evaluate_all(
            "items => items.map(i => [i.dataset.site, i.dataset.label])"
        )
    )
    for marker in markers.all():
        site = marker.get_attribute("data-site")
        assert marker.inner_text() == labels[site]  # the level in words, not only colour
        assert labels[site] in (marker.get_attribute("aria-label") or "")
        assert marker.get_attribute("tabindex") == "0"
    # keyboard: a focused marker opens its popup with Enter, with a link to the station
    first = markers.first
    first.focus()
    page.keyboard.press("Enter")
    popup = page.locator(".leaflet-popup-content a")
    popup.wait_for()
    assert popup.get_attribute("href") == f"/stations/{first.get_attribute('data-site')}"


def test_the_station_list_refreshes_every_minute_without_a_reload(
    context: BrowserContext, live_site: LiveSite
) -> None:
    page = context.new_page()
    page.clock.install()
    visit = Visit(page, live_site.base, tile_pattern(live_site.settings.map_tiles))
    page.route("**/*", visit.on_route)
    page.goto(live_site.base + "/?lang=en", wait_until="load")
    page.wait_for_function("() => window.smartby && window.smartby.ready === true")
    page.evaluate("window.beforeRefresh = true")  # gone if the page reloaded
    markers = page.locator(".leaflet-marker-icon").count()
    with page.expect_response(lambda r: "/air-now/stations" in r.url) as answer:
        page.clock.run_for(61_000)
    assert answer.value.status == 200
    page.wait_for_function("() => window.smartby.refreshed >= 1")
    assert page.evaluate("window.beforeRefresh") is True
    assert page.locator(".leaflet-marker-icon").count() == markers
    assert "updates itself every minute" in page.inner_text("#stations-updated")


# ---------------------------------------------------------------- the charts


def test_station_charts_draw_the_points_the_api_gives(
    context: BrowserContext, live_site: LiveSite, paths: list[str]
) -> None:
    station = next(p for p in paths if p.startswith("/stations/"))
    for span in ("24h", "7d"):
        visit = open_page(context, live_site, f"{station}?range={span}&lang=en")
        charts = visit.page.locator("figure.chart")
        assert charts.count() >= 4
        for figure in charts.all():
            drawn = figure.evaluate(
                """f => ({source: JSON.parse(f.querySelector('.chart-spec').textContent).source,
                          data: f.smartbyChart.data})"""
            )
            rows: list[dict[str, Any]] = []
            url: str | None = live_site.base + drawn["source"]
            while url:
                document = context.request.get(url).json()
                rows += document["data"]
                url = document["next"]
            xs, ys, marks = drawn["data"]
            points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            assert points == [(int(_epoch(r["time"])), r["mean"]) for r in rows], drawn["source"]
            suspect = [(x, m) for x, m in zip(xs, marks, strict=True) if m is not None]
            assert suspect == [
                (int(_epoch(r["time"])), r["mean"]) for r in rows if r["suspect_count"]
            ]
            # the table is there, one click away, with a row per point
            assert figure.locator("details.chart-table tbody tr").count() == len(rows)
        visit.assert_clean()


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# ---------------------------------------------------------------- language and scripts


def test_the_language_switch_changes_the_visible_text(
    browser: Browser, live_site: LiveSite
) -> None:
    """A browser set to Norwegian gets bokmål; the switch turns the site English."""
    context = browser.new_context(locale="nb-NO")
    visit = open_page(context, live_site, "/")
    page = visit.page
    assert page.evaluate("document.documentElement.lang") == "nb"
    assert page.inner_text("h1") == "Luftkvaliteten i Narvik nå"
    nav = page.inner_text("nav.site-nav")
    page.click("a.language")
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.inner_text("h1") == "Air quality in Narvik now"
    assert page.inner_text("nav.site-nav") != nav
    # the choice sticks: the next page is English too
    page.click("nav.site-nav >> text=Energy")
    page.wait_for_load_state("load")
    assert page.inner_text("h1") == "Energy use of municipal buildings"
    page.click("a.language")
    page.wait_for_load_state("load")
    assert page.inner_text("h1") == "Energibruk i kommunale bygg"
    visit.assert_clean()
    context.close()


def test_every_page_has_its_text_and_tables_without_scripts(
    browser: Browser, live_site: LiveSite, paths: list[str]
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        for language in LANGUAGES:
            for path in paths:
                visit = open_page(context, live_site, f"{path}?lang={language}", script=False)
                page = visit.page
                assert page.inner_text("h1").strip(), path
                assert len(page.inner_text("main")) > 200, path
                if path == "/data":
                    assert page.locator("#export-url").count() == 1
                    assert "/v1/export/" in page.inner_text("#export-url")
                else:
                    assert page.locator("main table").count() >= 1, path
                    assert page.locator("main table tbody tr").count() >= 1, path
                # no map and no chart without scripts, and nothing else went missing
                assert page.locator(".leaflet-container").count() == 0
                assert visit.elsewhere == []
                visit.assert_clean()
                page.close()
    finally:
        context.close()


def test_the_download_builder_follows_the_form(
    context: BrowserContext, live_site: LiveSite
) -> None:
    visit = open_page(context, live_site, "/data?lang=en")
    page = visit.page
    page.check("#dataset-energy-daily")
    page.wait_for_function(
        "() => document.getElementById('export-url').textContent"
        ".includes('/v1/export/energy-daily')"
    )
    page.check("#format-parquet")
    page.wait_for_function(
        "() => document.getElementById('export-url').textContent.includes('format=parquet')"
    )
    assert "dataset=energy-daily" in page.url  # the address bar keeps the choice
    url = page.inner_text("#export-url")
    assert context.request.get(url).status == 200
    assert "pd.read_parquet(" in page.inner_text("#pandas")
    visit.assert_clean()


def test_api_docs_work_offline(context: BrowserContext, live_site: LiveSite) -> None:
    for path, ready in (("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")):
        page = context.new_page()
        visit = Visit(page, live_site.base, tile_pattern(live_site.settings.map_tiles))
        page.on("requestfailed", visit.on_failed)
        page.route("**/*", visit.on_route)
        page.goto(live_site.base + path, wait_until="load")
        page.wait_for_selector(ready)
        assert "smartby open data API" in page.inner_text(ready)
        assert visit.elsewhere == [], visit.elsewhere
        # ReDoc's menu asks its maker's CDN for a logo; the page's policy stops that in
        # the browser, before any request goes out
        assert [f for f in visit.failed if not f.endswith(": csp")] == [], visit.failed
        page.close()
