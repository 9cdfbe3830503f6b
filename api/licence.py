"""The licence the data is published under, the attribution it asks for, and where
the open data is served.

NLOD 2.0 §4 asks the user to name the licensor and the licence; every open-data
response (`is_open_data`: the REST API under /v1 and its SensorThings view), and the
documents describing it (`LICENSED_DOCUMENTS`), say both in headers
(`licence_headers`) and, for JSON documents of /v1, in a ``meta``
member (GeoJSON: foreign members, RFC 7946 §6.1).
"""

from __future__ import annotations

from typing import Any

NLOD_URL = "https://data.norge.no/nlod/en/2.0"
LICENSE_ID = "NLOD-2.0"
LICENSE_NAME = "Norwegian Licence for Open Government Data (NLOD) 2.0"

#: roots of the open data: the REST API and the OGC SensorThings view of the same data,
#: under one edge policy (rate limit, licence headers, micro-cache; `api.edge`)
OPEN_DATA_ROOTS = ("/v1", "/sta/v1.1")


#: the documents that describe the open data (the API's description, its two
#: readers, and the platform's metrics): they carry the licence headers too, so that
#: whoever reads only the documentation still learns the terms
LICENSED_DOCUMENTS = frozenset({"/openapi.json", "/docs", "/redoc", "/metrics"})


def carries_licence(path: str) -> bool:
    """Whether a response to this request path gets the licence headers."""
    return is_open_data(path) or path in LICENSED_DOCUMENTS


#: where devices push their readings (`api.routes.ingest`): under /v1, but not open
#: data: no licence to state, nothing to cache, and each request is authenticated by
#: a device's secret, not limited per address like an anonymous read
INGEST_ROOT = "/v1/ingest/"


def is_open_data(path: str) -> bool:
    """Whether a request path is under one of the `OPEN_DATA_ROOTS` (and not a push)."""
    if path.startswith(INGEST_ROOT):
        return False
    return any(path == root or path.startswith(root + "/") for root in OPEN_DATA_ROOTS)


def attribution(city: str) -> str:
    """The attribution text NLOD asks for, with the publishing municipality."""
    return (
        "Contains data under the Norwegian licence for Open Government data (NLOD) "
        f"distributed by {city}"
    )


def licence_meta(city: str) -> dict[str, Any]:
    """The ``meta`` member of JSON documents (and GeoJSON foreign members)."""
    return {
        "license": LICENSE_ID,
        "license_url": NLOD_URL,
        "attribution": attribution(city),
    }


def licence_headers(city: str) -> list[tuple[bytes, bytes]]:
    """Raw ASGI headers sent on every open-data response (header values are latin-1, so a
    municipality name outside it is transliterated rather than breaking responses)."""
    text = attribution(city).encode("latin-1", errors="replace")
    return [
        (b"link", f'<{NLOD_URL}>; rel="license"'.encode()),
        (b"x-license", LICENSE_ID.encode()),
        (b"x-attribution", text),
    ]
