"""Schemathesis against the app's own OpenAPI document, on the simulated database:
generated requests (valid and invalid) never get a 5xx, and every response conforms
to the schema (status codes, content types, bodies, headers)."""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from core.settings import Settings

# The document does not depend on the database: an app that never starts gives it.
_DOCUMENT = create_app(
    Settings(env="test", database_url="postgresql://schema-only@127.0.0.1:9/none")  # type: ignore[arg-type]
).openapi()
# The export and DCAT routes are another module's, with their own tests; this one
# covers the routes of api/routes/{resources,timeseries,indicators,admin}.py.
schema = schemathesis.openapi.from_dict(_DOCUMENT).exclude(path_regex=r"^/v1/(export|catalog)")


def test_the_schema_is_openapi_3_1_with_problem_responses() -> None:
    assert _DOCUMENT["openapi"].startswith("3.1")
    latest = _DOCUMENT["paths"]["/v1/latest"]["get"]
    assert "application/problem+json" in latest["responses"]["400"]["content"]
    assert "Retry-After" in latest["responses"]["429"]["headers"]
    assert "422" not in latest["responses"]
    admin = _DOCUMENT["paths"]["/v1/admin/devices"]["post"]
    assert admin["security"] == [{"APIKeyHeader": []}]


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case, client: TestClient
) -> None:
    # The app on the simulated database (the module's client: no API keys configured,
    # so the admin routes can only answer 401 and nothing here writes to shared data).
    # Sent with Starlette's test client: schemathesis' own requests-based transport
    # trips over the urllib3 in this environment.
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    if isinstance(kwargs.get("data"), str | bytes):
        kwargs["content"] = kwargs.pop("data")
    response = client.request(**kwargs)
    # Rules across parameters (`from` before `to`, at most N days, bbox corners in
    # order, a cursor from an earlier page) are not expressible in JSON Schema, so a
    # schema-valid request may rightly get a 400; every other check applies.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
