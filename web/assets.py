"""The site's static files: their URLs, with a version that changes with the content,
so that browsers may keep them for a long time (`StaticAssets`)."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC = Path(__file__).resolve().parent / "static"
VENDOR = STATIC / "vendor"
#: how long a versioned file may be kept (its URL changes when it does)
MAX_AGE_VERSIONED = 365 * 86400
#: and one asked for without a version
MAX_AGE_PLAIN = 3600


@functools.cache
def _digest(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def asset_url(name: str) -> str:
    """``/static/<name>?v=<content hash>`` of one of the site's own files."""
    return f"/static/{name}?v={_digest(name)}"


@functools.cache
def vendored() -> dict[str, Any]:
    """The vendored packages (`scripts/vendor`'s manifest): name -> version and files."""
    manifest: dict[str, Any] = json.loads((VENDOR / "MANIFEST.json").read_text("utf-8"))
    packages: dict[str, Any] = manifest["packages"]
    return packages


def vendor_url(package: str, file: str) -> str:
    """The URL of a vendored file; the version is in its folder's name."""
    entry = vendored()[package]
    if file not in entry["files"]:
        raise KeyError(f"{package} {entry['version']} has no vendored {file}")
    return f"/static/vendor/{package}-{entry['version']}/{file}"


class StaticAssets(StaticFiles):
    """Starlette's static files with a Cache-Control: a year for versioned URLs (our
    own with ``?v=``, and the vendored ones, whose folder names carry the version),
    an hour otherwise."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        versioned = b"v=" in scope.get("query_string", b"") or "/vendor/" in scope["path"]
        age = MAX_AGE_VERSIONED if versioned else MAX_AGE_PLAIN
        control = f"public, max-age={age}" + (", immutable" if versioned else "")

        async def send_with_cache_control(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                message["headers"] = [
                    *message.get("headers", []),
                    (b"cache-control", control.encode()),
                ]
            await send(message)

        await super().__call__(scope, receive, send_with_cache_control)
