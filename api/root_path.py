"""Serving under a path prefix (``SMARTBY_API_ROOT_PATH``), behind a reverse proxy
that publishes the API and website at, say, https://example.org/smartby/.

ASGI puts the prefix in ``root_path`` and keeps it in ``path`` too (the ASGI HTTP
connection scope: ``path`` is the full path, ``root_path`` the part the app is
mounted at).  Starlette routes on the path less the root path, builds
``request.base_url`` and ``url_for`` with it, and FastAPI's /openapi.json names it
as the server; so the links the API writes point under the prefix.

A proxy may strip the prefix before passing the request on (Caddy's
``handle_path``, nginx's ``proxy_pass`` with a URI) or not: `RootPath` takes both,
putting the prefix back where it was stripped.  Everything keyed by route inside
(the open-data edge policy, metrics route labels, the micro-cache) reads
`route_path`, the path as the routes see it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


def route_path(scope: Scope) -> str:
    """The request's path without the root path: what the routes match ("/v1/sites");
    the rule of Starlette's own routing."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


class RootPath:
    """Outermost middleware: ``root_path`` set, and the prefix in ``path`` whether
    or not the proxy stripped it."""

    def __init__(self, app: ASGIApp, *, root_path: str) -> None:
        self.app = app
        self.root = root_path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.root and scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            scope = dict(scope, root_path=self.root)
            if path != self.root and not path.startswith(self.root + "/"):
                raw: bytes = scope.get("raw_path") or path.encode()
                scope["path"] = self.root + path
                scope["raw_path"] = self.root.encode() + raw
        await self.app(scope, receive, send)
