"""After a PostgreSQL restart, the API's pooled connections are dead; the pools check
each connection before lending it, so no request gets the broken one (issue 11)."""

from __future__ import annotations

import psycopg

from tests.api.conftest import ClientFactory
from tests.fixtures.ingest import register
from tests.fixtures.services import Services

#: read routes that take a connection of the main pool, and one of the export pool
ROUTES = ("/v1/latest", "/v1/sites", "/v1/devices", "/v1/metrics")
EXPORT = "/v1/export/sites?format=geojson"
#: past the reach of the response cache: every request goes to the database
FRESH = {"Cache-Control": "no-cache"}


def test_every_request_after_a_database_restart_answers_200(
    services: Services, db_url: str, conn: psycopg.Connection, make_client: ClientFactory
) -> None:
    register(conn, "aq-1")
    client = make_client(db_url)
    # every connection of both pools used once, so all of them are open when it stops
    for path in (*ROUTES, *ROUTES, EXPORT, EXPORT):
        assert client.get(path, headers=FRESH).status_code == 200, path
    services.cluster.stop()
    services.cluster.start()
    answers = [(path, client.get(path, headers=FRESH).status_code) for path in (*ROUTES, *ROUTES)]
    assert answers == [(path, 200) for path, _ in answers]
    for _ in range(2):
        # an export's status goes out before its rows: the body must be whole too
        export = client.get(EXPORT, headers=FRESH)
        assert export.status_code == 200
        features = export.json()["features"]
        assert [f["properties"]["id"] for f in features] == ["site-aq-1"]
