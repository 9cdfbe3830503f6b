"""Errors as RFC 9457 problem details (``application/problem+json``).

Route code raises `Problem`; the app's exception handlers turn it, request
validation errors and anything unexpected into a problem document, so a client
always gets a clear JSON error and never a raw database message.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error to send as problem+json: ``status`` and ``title`` say what kind,
    ``detail`` says what exactly was wrong with this request, naming the parameter
    and the limit where there is one; ``extra`` members are added to the document
    (RFC 9457 §3.2), e.g. ``parameter="to"``."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.headers = headers or {}
        self.extra = extra

    def document(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        body.update(self.extra)
        return body


def bad_parameter(parameter: str, detail: str) -> Problem:
    """A 400 for one query parameter (RFC 9457 extension member ``parameter``)."""
    return Problem(400, "Bad request parameter", detail, parameter=parameter)


def not_found(what: str, key: str) -> Problem:
    return Problem(404, "Not found", f"no {what} {key!r}", resource=what)


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    """The problem as an ``application/problem+json`` response, with its headers."""
    return Response(
        orjson.dumps(problem.document(instance)),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers={"cache-control": "no-store", **problem.headers},
    )
