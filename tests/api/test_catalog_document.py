"""The DCAT-AP-NO catalogue document, built from settings alone (no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from api.dcat import DATASET_INFO, NLOD_CONCEPT, CatalogueFacts, catalogue
from api.export_datasets import DATASETS
from api.licence import NLOD_URL, attribution
from api.models import DcatCatalog
from core.settings import Settings

BASE = "https://data.example.no/smartby/"
THEMES = "http://publications.europa.eu/resource/authority/data-theme/"


@pytest.fixture
def document() -> dict[str, Any]:
    settings = Settings(env="test", city="Narvik", api_contact_email="data@narvik.example")
    return catalogue(settings, BASE)


def languages(values: list[dict[str, str]]) -> dict[str, str]:
    return {v["@language"]: v["@value"] for v in values}


def test_catalogue_has_the_mandatory_catalogue_properties(document: dict[str, Any]) -> None:
    assert document["@type"] == "dcat:Catalog"
    assert document["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    assert document["@id"] == "https://data.example.no/smartby/v1/catalog"
    assert set(languages(document["dct:title"])) == {"nb", "en"}
    assert "Narvik" in languages(document["dct:description"])["en"]
    assert document["dct:publisher"]["foaf:name"]
    assert document["dct:license"]["@id"] == NLOD_CONCEPT
    assert document["dct:license"]["rdfs:seeAlso"] == {"@id": NLOD_URL}
    assert document["dct:rights"]["rdfs:label"] == attribution("Narvik")


def test_every_export_dataset_is_described(document: dict[str, Any]) -> None:
    identifiers = {d["dct:identifier"] for d in document["dcat:dataset"]}
    assert identifiers == {f"{BASE}v1/catalog#{key}" for key in DATASETS}
    assert {i.key for i in DATASET_INFO} == set(DATASETS)


def test_each_dataset_has_the_mandatory_dcat_ap_no_properties(document: dict[str, Any]) -> None:
    for dataset in document["dcat:dataset"]:
        assert dataset["@type"] == "dcat:Dataset"
        for name in ("dct:title", "dct:description"):
            text = languages(dataset[name])
            assert set(text) == {"nb", "en"}, (dataset["@id"], name)
            assert all(text.values())
        assert dataset["dct:identifier"] == dataset["@id"]
        assert dataset["dcat:theme"]
        assert all(t["@id"].startswith(THEMES) for t in dataset["dcat:theme"])
        assert dataset["dct:publisher"]["@type"] == "foaf:Agent"
        contact = dataset["dcat:contactPoint"]
        assert contact["@type"] == "vcard:Organization"
        assert contact["vcard:hasEmail"] == {"@id": "mailto:data@narvik.example"}
        assert dataset["dct:license"]["@id"] == NLOD_CONCEPT
        assert dataset["dcat:distribution"]
        for distribution in dataset["dcat:distribution"]:
            assert distribution["@type"] == "dcat:Distribution"
            assert distribution["dcat:accessURL"]["@id"].startswith(BASE + "v1/")
            assert distribution["dct:license"]["@id"] == NLOD_CONCEPT
            assert distribution["dct:format"]["@id"].startswith(
                "http://publications.europa.eu/resource/authority/file-type/"
            )


def test_distributions_point_at_the_exports_in_each_format(document: dict[str, Any]) -> None:
    by_key = {d["@id"].rsplit("#", 1)[1]: d for d in document["dcat:dataset"]}
    iana = "https://www.iana.org/assignments/media-types/"
    aqi = {
        d["dcat:mediaType"]["@id"].removeprefix(iana): d for d in by_key["aqi"]["dcat:distribution"]
    }
    assert set(aqi) == {
        "application/json",
        "text/csv",
        "application/vnd.apache.parquet",
        "application/geo+json",
    }
    aqi["csv"] = aqi["text/csv"]
    aqi["json"] = aqi["application/json"]
    assert aqi["csv"]["dcat:downloadURL"] == {"@id": f"{BASE}v1/export/aqi?format=csv"}
    assert aqi["json"]["dcat:accessURL"] == {"@id": f"{BASE}v1/aqi"}
    # metrics have no position: no GeoJSON
    metric_formats = {
        d["dct:format"]["@id"].rsplit("/", 1)[1] for d in by_key["metrics"]["dcat:distribution"]
    }
    assert metric_formats == {"JSON", "CSV", "PARQUET"}
    themes = {t["@id"].rsplit("/", 1)[1] for t in by_key["energy-daily"]["dcat:theme"]}
    assert "ENER" in themes
    assert {t["@id"].rsplit("/", 1)[1] for t in by_key["traffic-hourly"]["dcat:theme"]} == {"TRAN"}


def test_the_document_is_what_the_openapi_model_describes(document: dict[str, Any]) -> None:
    catalog = DcatCatalog.model_validate(document)
    assert len(catalog.dataset) == len(DATASET_INFO)
    assert all(d.distribution for d in catalog.dataset)


def test_publisher_place_and_time_come_from_settings_and_the_data() -> None:
    """DCAT-AP-NO: the publisher is an organisation URI with its organisation number,
    the dataset's place the municipality (Kartverket's URI) and the sites' box, its
    time the data's real range."""
    settings = Settings(env="test", publisher_orgnr="959469059", municipality_number="1806")
    first = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    last = datetime(2026, 2, 1, 12, tzinfo=UTC)
    facts = CatalogueFacts({"readings": (first, last)}, (17.38, 68.41, 17.52, 68.46))
    document = catalogue(settings, BASE, facts)
    by_key = {d["@id"].rsplit("#", 1)[1]: d for d in document["dcat:dataset"]}
    publisher = by_key["readings"]["dct:publisher"]
    assert publisher["@id"] == "https://data.brreg.no/enhetsregisteret/api/enheter/959469059"
    assert publisher["dct:identifier"] == "959469059"
    place, extent = by_key["readings"]["dct:spatial"]
    assert place["@id"] == "https://data.geonorge.no/administrativeEnheter/kommune/id/1806"
    assert extent["dcat:bbox"]["@value"].startswith("POLYGON((17.38 68.41, 17.52 68.41")
    period = by_key["readings"]["dct:temporal"]
    assert period["dcat:startDate"]["@value"] == "2026-01-01T00:30:00Z"
    assert period["dcat:endDate"]["@value"] == "2026-02-01T12:00:00Z"
    assert "dct:temporal" not in by_key["sites"]  # not a time series
    for dataset in document["dcat:dataset"]:
        assert dataset["dcat:keyword"]
        assert dataset["dct:accrualPeriodicity"]["skos:inScheme"]["@id"].endswith("/frequency")


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("publisher_orgnr", "959469058", "check digit"),
        ("publisher_orgnr", "95946905", "9 digits"),
        ("municipality_number", "18O6", "4 digits"),
    ],
)
def test_a_mistyped_publisher_or_municipality_is_refused(
    setting: str, value: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        Settings(env="test", **{setting: value})
