"""What no request may be, whatever route it is for: checked at the edge before
routing, so a hostile request is a 4xx problem that names the limit, never a 500.

- A URL longer than `MAX_URL_BYTES` (path and query, percent-encoded) is 414 (RFC
  9110 §15.5.15).  No real query comes near it: the longest is a SensorThings
  ``$filter``, itself capped at 4 000 characters.
- A NUL byte (``%00``) in the path or in any query parameter is 400: no value of
  this API holds one, and PostgreSQL cannot store one in text (psycopg refuses to
  send it, which used to surface as a 500).

Header fields beyond `MAX_HEADER_BYTES` in all, and URLs that a server would have to
buffer before the app sees them, are refused by the server's protocol (`api.server`)
with the same problem documents.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import Scope

from api.problems import Problem

#: longest request target (path + "?" + query) accepted, in bytes
MAX_URL_BYTES = 8 * 1024
#: most bytes of header fields (names and values) in one request
MAX_HEADER_BYTES = 64 * 1024


def url_too_long(length: int) -> Problem:
    return Problem(
        414,
        "URI too long",
        f"the URL is {length} bytes or more; the limit is {MAX_URL_BYTES} bytes "
        "(for more series or sites, use /v1/export or several requests)",
        limit=MAX_URL_BYTES,
    )


def headers_too_large(length: int) -> Problem:
    return Problem(
        431,
        "Request header fields too large",
        f"the header fields are {length} bytes or more; the limit is {MAX_HEADER_BYTES} bytes",
        limit=MAX_HEADER_BYTES,
    )


def _target_length(scope: Scope) -> int:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    path = raw_path.partition(b"?")[0]  # some servers and test clients include the query
    return len(path) + (1 + len(query) if query else 0)


def refusal(scope: Scope) -> Problem | None:
    """The problem with this request before any route sees it, or None."""
    length = _target_length(scope)
    if length > MAX_URL_BYTES:
        return url_too_long(length)
    if "\x00" in scope["path"]:
        return Problem(
            400, "Bad request path", "the path holds a NUL byte (%00), which no id may hold"
        )
    query: bytes = scope.get("query_string", b"")
    # '%' always opens an escape, so "%00" anywhere decodes to NUL
    if b"%00" in query or b"\x00" in query:
        parameter = next(
            (
                name
                for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                if "\x00" in name or "\x00" in value
            ),
            "",
        )
        named = f"parameter {parameter!r}" if parameter and "\x00" not in parameter else "a name"
        return Problem(
            400,
            "Bad request parameter",
            f"{named} holds a NUL byte (%00), which no parameter may hold",
            parameter=parameter.replace("\x00", ""),
        )
    return None
