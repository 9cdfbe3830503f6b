"""The DCAT-AP-NO catalogue as a harvester reads it (issue 16): parsed as RDF with
rdflib, validated with pySHACL against Digdir's DCAT-AP-NO shapes (vendored,
`tests/api/data/README.md`), its times the data's real range, and every link in it
answering 200 to GET and to HEAD."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pyshacl
import pytest
import rdflib
from fastapi.testclient import TestClient
from rdflib import namespace as ns

from tests.api.conftest import SUMMARY_LINES
from tests.fixtures.simulated import SimulatedData

SHAPES = Path(__file__).parent / "data" / "DCAT-AP-NO-shacl_shapes_2.00.ttl"
SHAPES_SHA256 = "230384590db1c38b7736e099f3a15c17fdd96d0f199e675a16a2fbc898a272ac"
#: properties whose values are URLs a harvester follows
LINKS = (
    ns.DCAT.accessURL,
    ns.DCAT.downloadURL,
    ns.DCAT.endpointURL,
    ns.DCAT.endpointDescription,
    ns.DCAT.landingPage,
)


def catalogue_graph(client: TestClient) -> rdflib.Graph:
    response = client.get("/v1/catalog")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ld+json"
    return rdflib.Graph().parse(data=response.text, format="json-ld")


def test_the_vendored_shapes_are_digdirs_unchanged() -> None:
    assert hashlib.sha256(SHAPES.read_bytes()).hexdigest() == SHAPES_SHA256


def test_the_catalogue_conforms_to_the_dcat_ap_no_shapes(client: TestClient) -> None:
    """No violation at all.  The only warnings the shapes give are on dct:spatial:
    DCAT-AP-NO 2.2's shapes list the EU place and country vocabularies and GeoNames,
    while the catalogue names the municipality by Kartverket's URI (as data.norge.no's
    own reference data does) and the sites' bounding box by one of its own."""
    graph = catalogue_graph(client)
    shapes = rdflib.Graph().parse(SHAPES)
    conforms, report, text = pyshacl.validate(graph, shacl_graph=shapes, inference="none")
    results = list(report.objects(None, ns.SH.result))
    violations = [r for r in results if report.value(r, ns.SH.resultSeverity) == ns.SH.Violation]
    assert not violations, text[:3000]
    paths = {report.value(r, ns.SH.resultPath) for r in results}
    assert paths <= {ns.DCTERMS.spatial}, text[:3000]
    checked = len(list(shapes.subjects(ns.RDF.type, ns.SH.NodeShape)))
    SUMMARY_LINES.append(
        f"DCAT-AP-NO SHACL: {len(graph)} triples checked against {checked} node shapes, "
        f"0 violations, {len(results)} warnings (dct:spatial vocabulary)"
    )
    assert not conforms or not results


def test_each_dataset_has_the_mandatory_and_recommended_properties(client: TestClient) -> None:
    """DCAT-AP-NO 2.2's mandatory (title, description, identifier, publisher, theme)
    and recommended (contact point, distribution, keyword, spatial, temporal for time
    series, accrual periodicity, access rights, language) dataset properties."""
    graph = catalogue_graph(client)
    datasets = list(graph.subjects(ns.RDF.type, ns.DCAT.Dataset))
    assert len(datasets) == 11
    required = (
        ns.DCTERMS.title, ns.DCTERMS.description, ns.DCTERMS.identifier, ns.DCTERMS.publisher,
        ns.DCAT.theme,
        ns.DCAT.contactPoint, ns.DCAT.distribution, ns.DCAT.keyword, ns.DCTERMS.spatial,
        ns.DCTERMS.accrualPeriodicity, ns.DCTERMS.accessRights, ns.DCTERMS.language,
    )  # fmt: skip
    for dataset in datasets:
        for prop in required:
            assert graph.value(dataset, prop) is not None, (dataset, prop)
    publisher = graph.value(datasets[0], ns.DCTERMS.publisher)
    assert isinstance(publisher, rdflib.URIRef)
    assert str(graph.value(publisher, ns.DCTERMS.identifier)) == "959469059"


def test_temporal_coverage_is_the_datas_real_range(
    client: TestClient, simulated: SimulatedData
) -> None:
    graph = catalogue_graph(client)
    readings = next(
        s for s in graph.subjects(ns.RDF.type, ns.DCAT.Dataset) if str(s).endswith("#readings")
    )
    period = graph.value(readings, ns.DCTERMS.temporal)
    start = graph.value(period, ns.DCAT.startDate).toPython()
    end = graph.value(period, ns.DCAT.endDate).toPython()
    with psycopg.connect(simulated.url) as conn:
        row = conn.execute("SELECT min(time), max(time) FROM readings").fetchone()
    assert row is not None
    first, last = row
    # the daily rollups start at the local midnight before the first reading
    assert start <= first
    assert first - start < timedelta(days=1)
    assert end == last
    assert start.tzinfo is not None
    assert end.astimezone(UTC) <= datetime.now(UTC)
    sites = next(
        s for s in graph.subjects(ns.RDF.type, ns.DCAT.Dataset) if str(s).endswith("#sites")
    )
    assert graph.value(sites, ns.DCTERMS.temporal) is None


def test_every_link_of_the_catalogue_answers_get_and_head(client: TestClient) -> None:
    """What a link checker does: HEAD each link, then GET it.  Both 200; HEAD with the
    GET's headers and no body."""
    graph = catalogue_graph(client)
    links = sorted({str(o) for p in LINKS for o in graph.objects(None, p)})
    assert len(links) >= 40
    for link in links:
        head = client.head(link)
        assert head.status_code == 200, (link, head.text[:300])
        assert head.content == b"", link
        got = client.get(link)
        assert got.status_code == 200, (link, got.text[:300])
        assert head.headers["content-type"] == got.headers["content-type"], link
        assert got.content, link
    SUMMARY_LINES.append(f"DCAT catalogue (TestClient): {len(links)} links, GET and HEAD 200")


@pytest.mark.parametrize(
    "path", ["/v1/sites", "/v1/catalog", "/v1/series/1/data", "/openapi.json", "/"]
)
def test_head_works_on_get_routes_and_405_names_head_once(client: TestClient, path: str) -> None:
    head = client.head(path)
    get = client.get(path)
    assert head.status_code == get.status_code == 200, (path, head.text[:200])
    assert head.content == b""
    assert head.headers.get("etag") == get.headers.get("etag")
    refused = client.post(path)
    if refused.status_code == 405:
        allows = refused.headers.get_list("allow")
        assert len(allows) == 1, allows  # one Allow header, not "GET" twice
        assert set(allows[0].split(", ")) >= {"GET", "HEAD"}
