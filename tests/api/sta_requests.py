"""Requests to the SensorThings view, as the STA tests make them: a document that must
be 200, a problem that must be problem+json, and a whole collection by its
@iot.nextLink chain."""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROOT = "/sta/v1.1"


def get(client: TestClient, url: str, **params: Any) -> Any:
    response = client.get(url if url.startswith("http") else ROOT + url, params=params or None)
    assert response.status_code == 200, response.text
    return response.json()


def problem(client: TestClient, url: str, status: int = 400, **params: Any) -> dict[str, Any]:
    response = client.get(ROOT + url, params=params or None)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    return document


def follow(client: TestClient, url: str, **params: Any) -> list[dict[str, Any]]:
    """Every entity of a collection, following @iot.nextLink to the end."""
    document = get(client, url, **params)
    entities = list(document["value"])
    while "@iot.nextLink" in document:
        document = get(client, document["@iot.nextLink"])
        entities += document["value"]
    return entities
