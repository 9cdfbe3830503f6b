"""The OpenAPI document explains the API (issue 16): every operation has a summary, a
description and an example of its success response, which its own response model
accepts; operation ids are short and stable; every schema property is described."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.app import create_app
from api.openapi import OPERATION_IDS, example_of, operation_id
from core.settings import Settings
from tests.api.conftest import SUMMARY_LINES


@pytest.fixture(scope="module")
def app() -> FastAPI:
    # the document needs no database: the pool opens with the lifespan only
    return create_app(Settings(env="test"), "postgresql://nobody@127.0.0.1:1/none")


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def api_routes(routes: Any) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI wraps those)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif getattr(route, "original_router", None) is not None:
            yield from api_routes(route.original_router.routes)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_operation_has_a_summary_a_description_and_an_example(
    document: dict[str, Any],
) -> None:
    found = operations(document)
    assert len(found) >= 31
    for method, path, operation in found:
        where = f"{method} {path}"
        assert operation.get("summary"), where
        assert len(operation.get("description", "")) > 40, where
        success = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
        assert success, where
        contents = [c for r in success.values() for c in r.get("content", {}).values()]
        assert any("example" in c for c in contents), where
    SUMMARY_LINES.append(
        f"OpenAPI: {len(found)} operations, each with summary, description, example"
    )


def test_operation_ids_are_short_stable_and_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for name in ids:
        assert re.fullmatch(r"[a-z][A-Za-z]{2,31}", name), name
    # the names clients are generated from: changing one breaks every client
    assert {"getSeriesData", "exportDataset", "listMetrics", "getCatalog"} <= set(ids)
    assert set(OPERATION_IDS.values()) <= set(ids)


def test_every_schema_property_has_a_description(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    properties = [
        (name, prop_name)
        for name, schema in schemas.items()
        for prop_name, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    total = sum(len(s.get("properties", {})) for s in schemas.values())
    assert not properties, properties
    SUMMARY_LINES.append(f"OpenAPI: {total} schema properties, each described")


def test_each_example_is_accepted_by_its_response_model(
    app: FastAPI, document: dict[str, Any]
) -> None:
    by_id = {operation["operationId"]: operation for _, _, operation in operations(document)}
    checked = 0
    for route in api_routes(app.routes):
        if route.response_model is None or not route.include_in_schema:
            continue
        responses = by_id[operation_id(route)]["responses"]
        success = responses.get("200") or responses.get("201")
        for content in success["content"].values():
            route.response_model.model_validate(content["example"])
            checked += 1
    assert checked >= 25


def test_examples_come_from_the_fields_own_examples() -> None:
    components = {"Thing": {"type": "object", "properties": {"n": {"type": "integer"}}}}
    schema = {
        "type": "object",
        "properties": {
            "site_id": {"type": "string"},
            "when": {"type": "string", "format": "date-time"},
            "things": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}},
            "given": {"type": "string", "examples": ["mine"]},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "number"}]},
        },
    }
    assert example_of(schema, components) == {
        "site_id": "narvik-sentrum",
        "when": "2026-11-01T08:00:00Z",
        "things": [{"n": 1}],
        "given": "mine",
        "maybe": 12.3,
    }
