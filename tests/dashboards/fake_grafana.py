"""A small in-process stand-in for the part of Grafana's HTTP API that publishing uses.

It follows Grafana's documented behaviour for these endpoints (status codes, bodies,
bearer-token auth, /api/health open to all, dashboards/db versions and overwrite, 409
on duplicate folders and data sources), keeps state in memory, and logs every request
so tests can see what a publish sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class GrafanaState:
    token: str
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # uid -> {dashboard, folderUid}
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


class _Handler(BaseHTTPRequestHandler):
    state: GrafanaState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.state.token}":
            return True
        self._reply(401, {"message": "invalid API key"})
        return False

    def _handle(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        self.state.requests.append((method, path))
        if method == "GET" and path == "/api/health":
            self._reply(200, {"commit": "fake", "database": "ok", "version": "12.0.2"})
            return
        if not self._authorised():
            return
        parts = path.strip("/").split("/")
        route = (method, *parts[:2])
        s = self.state
        if route == ("GET", "api", "search"):
            self._reply(200, [{"uid": uid, "type": "dash-db"} for uid in s.dashboards])
        elif route[:3] == ("GET", "api", "folders") and len(parts) == 3:
            folder = s.folders.get(parts[2])
            self._reply(200, folder) if folder else self._reply(
                404, {"message": "folder not found"}
            )
        elif route == ("POST", "api", "folders"):
            body = self._body()
            uid = body.get("uid") or f"f{s.new_id()}"
            if uid in s.folders:
                self._reply(409, {"message": "a folder with the same uid already exists"})
                return
            s.folders[uid] = {"id": s.new_id(), "uid": uid, "title": body["title"], "version": 1}
            self._reply(200, s.folders[uid])
        elif route[:3] == ("PUT", "api", "folders") and len(parts) == 3:
            folder = s.folders.get(parts[2])
            if folder is None:
                self._reply(404, {"message": "folder not found"})
                return
            folder["title"] = self._body()["title"]
            self._reply(200, folder)
        elif route == ("GET", "api", "dashboards") and parts[2] == "uid" and len(parts) == 4:
            saved = s.dashboards.get(parts[3])
            if saved is None:
                self._reply(404, {"message": "Dashboard not found"})
                return
            meta = {"folderUid": saved["folderUid"], "slug": saved["dashboard"]["uid"]}
            self._reply(200, {"dashboard": saved["dashboard"], "meta": meta})
        elif route == ("POST", "api", "dashboards") and parts[2] == "db":
            self._save_dashboard(self._body())
        elif route == ("GET", "api", "datasources") and parts[2] == "uid" and len(parts) == 4:
            source = s.datasources.get(parts[3])
            if source is None:
                self._reply(404, {"message": "Data source not found"})
                return
            self._reply(200, {k: v for k, v in source.items() if k != "secureJsonData"})
        elif route == ("POST", "api", "datasources"):
            body = self._body()
            if any(d["name"] == body["name"] for d in s.datasources.values()):
                self._reply(409, {"message": "data source with the same name already exists"})
                return
            s.datasources[body["uid"]] = {**body, "id": s.new_id()}
            self._reply(200, {"message": "Datasource added", "datasource": body})
        elif route == ("PUT", "api", "datasources") and parts[2] == "uid" and len(parts) == 4:
            if parts[3] not in s.datasources:
                self._reply(404, {"message": "Data source not found"})
                return
            s.datasources[parts[3]] = {**self._body(), "id": s.datasources[parts[3]]["id"]}
            self._reply(200, {"message": "Datasource updated"})
        else:
            self._reply(404, {"message": "Not found"})

    def _save_dashboard(self, body: dict[str, Any]) -> None:
        s = self.state
        dashboard = dict(body["dashboard"])
        folder_uid = body.get("folderUid")
        if folder_uid and folder_uid not in s.folders:
            self._reply(400, {"message": "folder not found"})
            return
        uid = dashboard["uid"]
        existing = s.dashboards.get(uid)
        stale = existing and dashboard.get("version") != existing["dashboard"]["version"]
        if stale and not body.get("overwrite"):
            self._reply(412, {"message": "version-mismatch", "status": "version-mismatch"})
            return
        version = existing["dashboard"]["version"] + 1 if existing else 1
        dashboard["id"] = existing["dashboard"]["id"] if existing else s.new_id()
        dashboard["version"] = version
        s.dashboards[uid] = {"dashboard": dashboard, "folderUid": folder_uid}
        self._reply(
            200,
            {"id": dashboard["id"], "uid": uid, "status": "success", "version": version,
             "url": f"/d/{uid}"},
        )  # fmt: skip

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


@contextmanager
def fake_grafana(token: str) -> Iterator[tuple[str, GrafanaState]]:
    state = GrafanaState(token)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def answering(status: int, body: bytes = b"", content_type: str = "text/plain") -> Iterator[str]:
    """A server that answers every request with one fixed status and body."""

    class Fixed(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Fixed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
