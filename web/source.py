"""Where the pages get their numbers: the /v1 API's own documents.

`web` may not import `api` (the import contract: `api` serves `web`, not the other
way round), so `api` hands the website an `ApiReader` that answers a /v1 request
in-process, through the very route that would answer it over HTTP.  A page therefore
never shows a number the API would not give, and what the page's scripts fetch
later (the same /v1 URLs) agrees with what the server drew first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request

Params = Mapping[str, str | int | Sequence[str]]


class DocumentNotFound(Exception):
    """The API answered 404: no such site, device or series."""


class DataUnavailable(Exception):
    """The API could not answer (503: the database is away); the page says so."""


class ApiReader(Protocol):
    async def get(self, path: str, params: Params | None = None) -> Any:
        """The JSON document the API serves at ``path`` (under /v1) with these query
        parameters.  Raises `DocumentNotFound` for a 404 and `DataUnavailable` when
        the API cannot answer."""
        ...


#: what `api` gives the website: a reader for the request a page is answering (the
#: documents hold absolute links, made from the request's scheme and host)
ReaderFactory = Callable[[Request], ApiReader]

#: the largest page /v1 serves (api.params.MAX_PAGE)
PAGE_LIMIT = 10_000


async def all_rows(reader: ApiReader, path: str, params: Params) -> list[dict[str, Any]]:
    """Every row of a paged /v1 document: ``data`` of each page, following ``next``
    (cursor pagination) to the end."""
    query: dict[str, Any] = {**params, "limit": PAGE_LIMIT}
    rows: list[dict[str, Any]] = []
    while True:
        document = await reader.get(path, query)
        rows.extend(document["data"])
        following = document.get("next")
        if not following:
            return rows
        query["cursor"] = parse_qs(urlsplit(following).query)["cursor"][0]


def api_time(moment: datetime) -> str:
    """A time as /v1 takes it in ``from`` and ``to``: RFC 3339 in UTC."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
