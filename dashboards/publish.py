"""Publish the dashboards (and optionally the data sources) to an existing Grafana.

Idempotent: the folder is created once and found by uid afterwards; a data source is
created or updated by uid; a dashboard is saved only when it differs from what Grafana
holds (so a repeated publish adds no new dashboard versions).  Every failure a user can
fix (wrong URL, wrong token, too few permissions) becomes one `SmartbyError` line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from core.errors import SmartbyError
from dashboards.build import all_dashboards, dashboard_dict
from dashboards.common import DEFAULT_TIMEZONE, PROMETHEUS_UID, TIMESCALEDB_UID

T = TypeVar("T")

#: grafana-client's API objects: its element methods carry no annotations, so they are
#: typed as Any here; every call goes through `_call` / `_missing`, which check the rest.
Grafana = Any

DEFAULT_FOLDER = "smartby"
#: the folder's uid: stable, so a second publish finds the folder it made
FOLDER_UID = "smartby"
MESSAGE = "published by smartby dashboards publish"
# Fields Grafana adds or bumps on save; a dashboard differs only if something else does.
_VOLATILE = ("id", "version", "iteration")


@dataclass
class PublishReport:
    folder: str
    folder_created: bool = False
    datasources: dict[str, str] = field(default_factory=dict)  # uid -> created / updated
    dashboards: dict[str, str] = field(default_factory=dict)  # uid -> created / updated / unchanged
    missing_datasources: list[str] = field(default_factory=list)


def _error(url: str, what: str, exc: Exception) -> SmartbyError:
    """One clear line for what went wrong talking to Grafana."""
    if isinstance(exc, GrafanaUnauthorizedError):
        return SmartbyError(
            f"Grafana at {url} refused the token (401 Unauthorized) while {what}: "
            "check --token (a service account token with the Editor or Admin role)"
        )
    if isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        return SmartbyError(
            f"Grafana at {url} denied {what} (403 Forbidden): the token's role is too low"
            " (dashboards need Editor; data sources need Admin)"
        )
    if isinstance(exc, GrafanaClientError) and exc.status_code == 404:
        return SmartbyError(f"{url} has no Grafana HTTP API (404 while {what}): check --url")
    if isinstance(exc, GrafanaClientError):
        return SmartbyError(f"Grafana at {url} rejected {what}: {exc.message}")
    if isinstance(exc, GrafanaTimeoutError):
        return SmartbyError(f"Grafana at {url} did not answer in time while {what}")
    if isinstance(exc, GrafanaServerError):
        return SmartbyError(f"Grafana at {url} failed while {what}: {exc.message}")
    if isinstance(exc, GrafanaException | niquests.exceptions.RequestException):
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return SmartbyError(f"cannot reach Grafana at {url}: {reason}")
    # a body that is not JSON: something else answers at that address
    return SmartbyError(f"{url} does not answer like Grafana's API (while {what}): check --url")


_EXPECTED = (GrafanaException, niquests.exceptions.RequestException, ValueError)


def _call(url: str, what: str, request: Callable[[], T]) -> T:
    """Run one Grafana API call; what can go wrong becomes one `SmartbyError` line."""
    try:
        return request()
    except _EXPECTED as exc:
        raise _error(url, what, exc) from None


def _missing(url: str, what: str, request: Callable[[], T]) -> T | None:
    """`_call`, but a 404 means "not there" instead of an error."""
    try:
        return request()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise _error(url, what, exc) from None
    except _EXPECTED as exc:
        raise _error(url, what, exc) from None


def connect(url: str, token: str, timeout: float = 10.0) -> Grafana:
    """A client for `url`, checked: it is Grafana, and it accepts the token."""
    api: Grafana = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    # /api/health is Grafana's unauthenticated liveness endpoint (grafana-client's own
    # health.check reads /api/frontend/settings, which needs a session on some setups).
    health = _call(url, "checking /api/health", lambda: api.client.GET("/health"))
    if not isinstance(health, dict) or "database" not in health:
        raise SmartbyError(f"{url} does not answer like Grafana (GET /api/health): check --url")
    # /api/health needs no login; the search API does, with any role.
    _call(url, "checking the token", lambda: api.search.search_dashboards(limit=1))
    return api


def _ensure_folder(api: Grafana, url: str, title: str, report: PublishReport) -> str:
    folder = _missing(url, "reading the folder", lambda: api.folder.get_folder(FOLDER_UID))
    if folder is None:
        _call(url, "creating the folder", lambda: api.folder.create_folder(title, uid=FOLDER_UID))
        report.folder_created = True
    elif folder.get("title") != title:
        _call(
            url,
            "renaming the folder",
            lambda: api.folder.update_folder(FOLDER_UID, title=title, overwrite=True),
        )
    return FOLDER_UID


def _publish_datasource(
    api: Grafana, url: str, payload: dict[str, object], report: PublishReport
) -> None:
    uid = str(payload["uid"])
    existing = _missing(
        url, f"reading data source {uid}", lambda: api.datasource.get_datasource_by_uid(uid)
    )
    if existing is None:
        _call(url, f"creating data source {uid}", lambda: api.datasource.create_datasource(payload))
        report.datasources[uid] = "created"
    else:
        _call(
            url,
            f"updating data source {uid}",
            lambda: api.datasource.update_datasource_by_uid(uid, payload),
        )
        report.datasources[uid] = "updated"


def _comparable(dashboard: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in dashboard.items() if k not in _VOLATILE}, sort_keys=True)


def _publish_dashboard(
    api: Grafana, url: str, dashboard: dict[str, Any], folder_uid: str, report: PublishReport
) -> None:
    uid = str(dashboard["uid"])
    existing = _missing(url, f"reading dashboard {uid}", lambda: api.dashboard.get_dashboard(uid))
    if existing is not None:
        meta = existing.get("meta", {})
        same_folder = meta.get("folderUid") == folder_uid
        if same_folder and _comparable(existing.get("dashboard", {})) == _comparable(dashboard):
            report.dashboards[uid] = "unchanged"
            return
    body = {
        "dashboard": {**dashboard, "id": None},
        "folderUid": folder_uid,
        "overwrite": True,
        "message": MESSAGE,
    }
    _call(url, f"saving dashboard {uid}", lambda: api.dashboard.update_dashboard(body))
    report.dashboards[uid] = "created" if existing is None else "updated"


def _datasource_reader(api: Grafana, uid: str) -> Callable[[], Any]:
    return lambda: api.datasource.get_datasource_by_uid(uid)


def publish(
    url: str,
    token: str,
    folder: str = DEFAULT_FOLDER,
    datasources: list[dict[str, object]] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    timeout: float = 10.0,
) -> PublishReport:
    """Create or update the folder, the data sources (when given) and every dashboard."""
    url = url.rstrip("/")
    api = connect(url, token, timeout)
    report = PublishReport(folder)
    folder_uid = _ensure_folder(api, url, folder, report)
    for payload in datasources or []:
        _publish_datasource(api, url, payload, report)
    if not datasources:
        for uid in (TIMESCALEDB_UID, PROMETHEUS_UID):
            found = _missing(url, f"reading data source {uid}", _datasource_reader(api, uid))
            if found is None:
                report.missing_datasources.append(uid)
    for dashboard in all_dashboards(timezone):
        _publish_dashboard(api, url, dashboard_dict(dashboard), folder_uid, report)
    return report
