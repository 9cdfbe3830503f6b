"""The public warnings over HTTP: the Atom feed validates against RFC 4287's schema and
links to every CAP document, which is served exactly as issued; the active warnings
are JSON; the air-now and station pages show a banner in both languages while one is
in force, and none after the all-clear."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import rnc2rng
from lxml import etree

from core.settings import Settings
from ingest.warnings import WarningJob
from tests.api.conftest import ClientFactory
from tests.fixtures.warnings import SITE, load_episode
from web.warnings import CatalogueTexts

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
ATOM = {"a": "http://www.w3.org/2005/Atom"}
START = datetime(2026, 1, 12, 6, tzinfo=UTC)
#: poor from the second hour, clear in the fifth (PM10 bands 45/120/195)
MEANS = [30.0, 130.0, 200.0, 125.0, 60.0]


@pytest.fixture(scope="module")
def atom_schema() -> etree.RelaxNG:
    """RFC 4287 Appendix B (RELAX NG compact).  Its ``namespace local = ""`` becomes
    an empty prefix declaration, which XML forbids; attributes in no namespace are
    what it means, and the converted grammar names them without the prefix."""
    grammar = rnc2rng.dumps(rnc2rng.loads((SCHEMAS / "atom-rfc4287.rnc").read_text()))
    grammar = grammar.replace('         xmlns:local=""\n', "")
    return etree.RelaxNG(etree.fromstring(grammar.encode()))


def issue(settings: Settings, until_hour: int) -> None:
    job = WarningJob(settings, CatalogueTexts(settings.city))
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:  # type: ignore[union-attr]
        for hour in range(1, until_hour + 1):
            job.run(conn, now=START + timedelta(hours=hour, minutes=6))


def test_the_feed_is_atom_and_links_every_cap_document(
    settings: Settings,
    make_client: ClientFactory,
    atom_schema: etree.RelaxNG,
    conn: psycopg.Connection,
) -> None:
    load_episode(settings, START, MEANS)
    issue(settings, len(MEANS) + 1)
    client = make_client(settings.database_url.get_secret_value())  # type: ignore[union-attr]
    for lang in ("nb", "en"):
        response = client.get("/v1/warnings", params={"lang": lang})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/atom+xml")
        feed = etree.fromstring(response.content)
        assert atom_schema.validate(feed), atom_schema.error_log.last_error
        entries = feed.findall("a:entry", ATOM)
        # newest first: the all-clear, the update (Very poor), the alert
        titles = [e.findtext("a:title", namespaces=ATOM) for e in entries]
        assert len(titles) == 3
        if lang == "en":
            assert titles[0] == f"The air at Site of {SITE.removeprefix('site-')} is no longer poor"
            assert titles[2].startswith("Poor air quality at ")
        else:
            assert titles[2].startswith("Dårlig luftkvalitet ved ")
    stored = dict(conn.execute("SELECT identifier, cap FROM warning_messages").fetchall())
    for entry in entries:
        link = entry.find("a:link[@type='application/cap+xml']", ATOM)
        assert link is not None
        assert link.get("rel") == "alternate"
        href = link.get("href")
        assert href == entry.findtext("a:id", namespaces=ATOM)
        document = client.get(href.removeprefix("http://testserver"))
        assert document.status_code == 200
        assert document.headers["content-type"] == "application/cap+xml"
        identifier = href.rsplit("/", 1)[1].removesuffix(".cap.xml")
        assert document.content == stored[identifier].encode()
        again = client.get(
            href.removeprefix("http://testserver"),
            headers={"if-none-match": document.headers["etag"]},
        )
        assert again.status_code == 304


def test_an_unknown_or_malformed_identifier_is_a_problem(
    settings: Settings, make_client: ClientFactory
) -> None:
    client = make_client(settings.database_url.get_secret_value())  # type: ignore[union-attr]
    missing = client.get("/v1/warnings/smartby-aqi-nowhere-20260101T0000Z-1.cap.xml")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    bad = client.get("/v1/warnings/%3Cscript%3E.cap.xml")
    assert bad.status_code == 400
    assert bad.json()["parameter"] == "identifier"


def test_the_pages_show_a_warning_while_it_is_in_force(
    settings: Settings, make_client: ClientFactory
) -> None:
    load_episode(settings, START, MEANS)
    issue(settings, 3)  # the alert (hour 1) and the update (hour 2), not yet cleared
    client = make_client(settings.database_url.get_secret_value())  # type: ignore[union-attr]
    active = client.get("/v1/warnings/active").json()["data"]
    assert [(w["site_id"], w["msg_type"], w["level"], w["label"]) for w in active] == [
        (SITE, "Update", 5, "Very poor")
    ]
    assert active[0]["onset"] == "2026-01-12T07:00:00Z"
    for path in ("/", f"/stations/{SITE}"):
        english = client.get(path, params={"lang": "en"}).text
        assert "Air-quality warning" in english
        assert "Very poor air quality at " in english
        # the EEA's advice for Very poor, as the levels table words it
        assert "Reduce physical activities, particularly outdoors" in english
        assert active[0]["cap"].removeprefix("http://testserver") in english
        norwegian = client.get(path, params={"lang": "nb"}).text
        assert "Luftkvalitetsvarsel" in norwegian
        assert "Svært dårlig luftkvalitet ved " in norwegian
    issue(settings, len(MEANS) + 1)  # the all-clear
    client.app.state.cache.clear()
    assert client.get("/v1/warnings/active").json()["data"] == []
    assert "Air-quality warning" not in client.get("/", params={"lang": "en"}).text
