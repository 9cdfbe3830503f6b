"""Schemathesis against the app's own OpenAPI document, on the simulated database:
generated requests (valid and invalid) never get a 5xx, and every response conforms
to the schema (status codes, content types, bodies, headers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from api.export_datasets import DATASETS
from core.settings import Settings
from tests.fixtures.simulated import SimulatedData

# The document does not depend on the database: an app that never starts gives it.
_DOCUMENT = create_app(
    Settings(env="test", database_url="postgresql://schema-only@127.0.0.1:9/none")  # type: ignore[arg-type]
).openapi()
schema = schemathesis.openapi.from_dict(_DOCUMENT)
# HTTP push takes SenML CBOR (RFC 8428 §6): generated bodies go as the bytes they are
schemathesis.serializer.alias("application/senml+cbor", "application/octet-stream")


def test_the_schema_is_openapi_3_1_with_problem_responses() -> None:
    assert _DOCUMENT["openapi"].startswith("3.1")
    latest = _DOCUMENT["paths"]["/v1/latest"]["get"]
    assert "application/problem+json" in latest["responses"]["400"]["content"]
    assert "Retry-After" in latest["responses"]["429"]["headers"]
    assert "422" not in latest["responses"]
    admin = _DOCUMENT["paths"]["/v1/admin/devices"]["post"]
    assert admin["security"] == [{"APIKeyHeader": []}]


def test_catalogue_and_exports_document_their_media_types() -> None:
    catalog = _DOCUMENT["paths"]["/v1/catalog"]["get"]["responses"]["200"]["content"]
    assert set(catalog) == {"application/ld+json"}
    assert catalog["application/ld+json"]["schema"] == {"$ref": "#/components/schemas/DcatCatalog"}
    # the example is a catalogue as the API builds it
    assert catalog["application/ld+json"]["example"]["@type"] == "dcat:Catalog"
    export = _DOCUMENT["paths"]["/v1/export/{dataset}"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"text/csv", "application/vnd.apache.parquet", "application/geo+json"}
    assert export["text/csv"]["schema"]["type"] == "string"
    assert export["application/vnd.apache.parquet"]["schema"]["type"] == "string"
    assert export["application/geo+json"]["schema"]["properties"]["type"]["const"] == (
        "FeatureCollection"
    )


def _send(client: TestClient, case: schemathesis.Case) -> Any:
    # Sent with Starlette's test client: schemathesis' own requests-based transport
    # trips over the urllib3 in this environment.
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    if isinstance(kwargs.get("data"), str | bytes):
        kwargs["content"] = kwargs.pop("data")
    return client.request(**kwargs)


# the live stream never ends a 200 (it is checked in tests/api/test_stream.py)
@schema.exclude(path="/v1/stream").parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case, client: TestClient
) -> None:
    # The app on the simulated database (the module's client: no API keys configured,
    # so the admin routes can only answer 401 and nothing here writes to shared data).
    response = _send(client, case)
    # Rules across parameters (`from` before `to`, at most N days, bbox corners in
    # order, a cursor from an earlier page) are not expressible in JSON Schema, so a
    # schema-valid request may rightly get a 400; every other check applies.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


@pytest.mark.parametrize(
    ("dataset", "fmt"),
    [(key, fmt) for key, dataset in DATASETS.items() for fmt in dataset.formats],
)
def test_every_export_matches_the_schema(
    client: TestClient, simulated: SimulatedData, dataset: str, fmt: str
) -> None:
    """Generated requests seldom name a dataset that exists: each dataset in each of
    its formats, over the simulated history, against the documented response."""
    query = {"format": fmt}
    if DATASETS[dataset].time_column is not None:
        end = datetime.fromtimestamp(simulated.end, UTC)
        query |= {"from": (end - timedelta(days=2)).isoformat(), "to": end.isoformat()}
    if dataset == "readings":
        query["bucket"] = "1h"
    operation = schema["/v1/export/{dataset}"]["GET"]
    case = operation.Case(path_parameters={"dataset": dataset}, query=query)
    response = _send(client, case)
    assert response.status_code == 200, response.text
    case.validate_response(response)
