"""The DCAT-AP-NO catalogue document, built from settings alone (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from api.dcat import DATASET_INFO, catalogue
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
    assert document["dct:license"] == {"@id": NLOD_URL}
    assert document["dct:rights"] == attribution("Narvik")


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
        assert dataset["dct:license"] == {"@id": NLOD_URL}
        assert dataset["dcat:distribution"]
        for distribution in dataset["dcat:distribution"]:
            assert distribution["@type"] == "dcat:Distribution"
            assert distribution["dcat:accessURL"]["@id"].startswith(BASE + "v1/")
            assert distribution["dct:license"] == {"@id": NLOD_URL}
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
