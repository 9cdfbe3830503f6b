"""The licence the data is published under, and the attribution it asks for.

NLOD 2.0 §4 asks the user to name the licensor and the licence; every /v1 response
says both, in headers (`licence_headers`) and, for JSON documents, in a ``meta``
member (GeoJSON: foreign members, RFC 7946 §6.1).
"""

from __future__ import annotations

from typing import Any

NLOD_URL = "https://data.norge.no/nlod/en/2.0"
LICENSE_ID = "NLOD-2.0"
LICENSE_NAME = "Norwegian Licence for Open Government Data (NLOD) 2.0"


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
    """Raw ASGI headers sent on every /v1 response (header values are latin-1, so a
    municipality name outside it is transliterated rather than breaking responses)."""
    text = attribution(city).encode("latin-1", errors="replace")
    return [
        (b"link", f'<{NLOD_URL}>; rel="license"'.encode()),
        (b"x-license", LICENSE_ID.encode()),
        (b"x-attribution", text),
    ]
