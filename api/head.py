"""HEAD on every GET route (RFC 9110 §9.3.2): the headers a GET would send, no body.

FastAPI registers a route for the methods it is declared with, so a ``@router.get``
answers HEAD with 405, and link checkers and DCAT harvesters, which ask HEAD first,
saw every distribution of the catalogue as dead (issue 16).  Declaring HEAD on each
route would put a second operation per path into the OpenAPI document; instead this
middleware, outermost, hands a HEAD request to the app as a GET and drops the body
on the way out.  The server still sees the request as HEAD (its own scope is not
touched), so it sends no body either, and the Content-Length is the GET's.

A route that would compute a large body for nothing (a bulk export) asks
`is_head` and answers with its headers alone.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: scope key set on the GET a HEAD request became
HEAD_KEY = "smartby.head"


def is_head(request: Request) -> bool:
    """Whether this GET is a HEAD request in disguise (only its headers are sent)."""
    return bool(request.scope.get(HEAD_KEY))


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        finished = False

        async def headers_only(message: Message) -> None:
            nonlocal finished
            if message["type"] != "http.response.body":
                await send(message)
            elif not finished and not message.get("more_body", False):
                finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET", HEAD_KEY: True}, receive, headers_only)
