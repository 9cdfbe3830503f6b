"""The platform's health in public: is ingest running, how much arrives, and how each
device is doing (counts only; a device's own quarantined payloads are shown to whoever
proves its secret, `api.device_auth`, and to nobody else)."""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from psycopg.rows import DictRow
from starlette.responses import Response

from api import health_queries, models, queries
from api.db import fetch_dicts, fetch_tuples
from api.device_auth import authenticate, credentials, device_pool_of
from api.params import KindFilter, device_path_id, time_range
from api.problems import not_found
from api.responses import MAX_AGE_LIVE, JSONBytes, dumps, read_response
from core.health import DEVICE_STATES, device_state, silent_after

router = APIRouter(tags=["status"])

#: the window of the device counts
HEALTH_WINDOW = timedelta(hours=24)
#: readings per minute are shown for this long
RATE_WINDOW = timedelta(hours=1)

#: QARTOD flags (QARTOD manual, "flag scheme") by the names documents use
FLAG_NAMES = {1: "good", 2: "not_evaluated", 3: "suspect", 4: "fail", 9: "missing"}


def _flag_counts(by_flag: dict[int, int]) -> dict[str, int]:
    counts = {name: by_flag.get(flag, 0) for flag, name in FLAG_NAMES.items()}
    counts["total"] = sum(by_flag.values())
    return counts


def _quarantine_counts(by_reason: dict[str, int]) -> dict[str, Any]:
    return {
        "total": sum(by_reason.values()),
        "by_reason": [{"reason": r, "count": n} for r, n in sorted(by_reason.items())],
    }


async def _device_health(
    request: Request, devices: list[DictRow], since: datetime, until: datetime, one: str | None
) -> list[dict[str, Any]]:
    """Each device's health document in the window [since, until)."""
    flags: dict[str, dict[int, int]] = defaultdict(dict)
    for device_id, quality, count in await fetch_tuples(
        request, health_queries.readings_by_flag_query(since, until, one)
    ):
        flags[device_id][quality] = count
    refused: dict[str | None, dict[str, int]] = defaultdict(dict)
    for device_id, reason, count in await fetch_tuples(
        request, health_queries.quarantine_by_reason_query(since, until, one)
    ):
        refused[device_id][reason] = count
    now = datetime.now(UTC)
    return [
        {
            "device_id": d["id"],
            "site_id": d["site_id"],
            "kind": d["kind"],
            "status": d["status"],
            "online": d["online"],
            "battery": d["battery"],
            "rssi": d["rssi"],
            "last_seen": d["last_seen"],
            "state": device_state(
                kind=d["kind"],
                status=d["status"],
                online=d["online"],
                last_seen=d["last_seen"],
                now=now,
            ),
            "silent_after_s": int(silent_after(d["kind"]).total_seconds()),
            "readings": _flag_counts(flags.get(d["id"], {})),
            "quarantined": _quarantine_counts(refused.get(d["id"], {})),
        }
        for d in devices
    ]


def _window(request: Request) -> tuple[datetime, datetime]:
    """The last 24 hours, ending at the next whole minute (as /v1's default ranges)."""
    span = time_range(
        None,
        None,
        default_span=HEALTH_WINDOW,
        max_days=request.app.state.settings.api_max_range_days,
    )
    return span.start, span.end


@router.get(
    "/status/devices",
    response_model=models.DeviceHealthList,
    summary="Health of every device over the last 24 hours",
)
async def devices_health(request: Request, kind: KindFilter = None) -> Response:
    """Per device: online, silent, offline, never seen or disabled; when last heard
    from; readings of the last 24 hours by QC flag; messages quarantined in that time
    by reason (counts only)."""
    since, until = _window(request)
    devices = await fetch_dicts(request, queries.devices_query(kind))
    data = await _device_health(request, devices, since, until, None)
    document = {"from": since, "to": until, "data": data, "meta": request.app.state.meta}
    return read_response(request, document, max_age=MAX_AGE_LIVE)


@router.get(
    "/devices/{device_id}/health",
    response_model=models.DeviceHealthDocument,
    summary="Health of one device over the last 24 hours",
    openapi_extra={"security": [{}, {"deviceBasic": []}, {"deviceBearer": []}]},
)
async def device_health(
    request: Request,
    device_id: Annotated[str, Path(description="The device's id.", examples=["aq-sentrum"])],
) -> Response:
    """As /v1/status/devices, for one device: its state, when it was last heard
    from, its readings of the last 24 hours by QC flag, and its quarantined messages
    by reason (counts only).  With the device's own secret (HTTP Basic <device
    id>:<secret>, or Bearer <secret>) also its last 20 rejected messages with their
    payloads and reasons; a wrong secret is 401."""
    given = credentials(request)
    if given is not None:
        # the owner's view: checked before anything is looked up, so a wrong secret
        # learns nothing, not even whether the device exists
        await authenticate(request, device_id, given)
    devices = await fetch_dicts(request, queries.devices_query(device_id=device_path_id(device_id)))
    if not devices:
        raise not_found("device", device_id)
    since, until = _window(request)
    [data] = await _device_health(request, devices, since, until, device_id)
    document = {"from": since, "to": until, "data": data, "meta": request.app.state.meta}
    if given is None:
        return read_response(request, document, max_age=MAX_AGE_LIVE)
    data["rejected"] = await _rejections(request, device_id)
    # for the device's owner only: no shared cache may keep it (RFC 9111 §5.2.2.5)
    return JSONBytes(dumps(document), headers={"cache-control": "private, no-store"})


#: how many of its last rejected messages a device's owner sees
REJECTIONS_SHOWN = 20


async def _rejections(request: Request, device_id: str) -> list[dict[str, Any]]:
    """The device's last quarantined messages, payloads included (migration 0015's
    function: no role reads payloads directly)."""
    async with device_pool_of(request).connection() as conn:
        cur = await conn.execute(
            "SELECT received_at, topic, reason, detail, payload"
            " FROM smartby_device_rejections(%s, %s)",
            (device_id, REJECTIONS_SHOWN),
        )
        rows = await cur.fetchall()
    shown = []
    for received_at, topic, reason, detail, payload in rows:
        raw = bytes(payload)
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(raw).decode(), "base64"
        shown.append(
            {
                "received_at": received_at,
                "topic": topic,
                "reason": reason,
                "detail": detail,
                "payload": text,
                "payload_encoding": encoding,
            }
        )
    return shown


@router.get("/status", response_model=models.PlatformStatusDocument, summary="Platform status")
async def platform_status(request: Request) -> Response:
    """Is ingest running (workers connected to the database), readings per minute
    over the last hour, the newest value per domain, devices by state, and messages
    quarantined in the last 24 hours by reason."""
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    [(workers,)] = await fetch_tuples(request, health_queries.ingest_sessions_query())
    per_minute = {
        m: n
        for m, n in await fetch_tuples(
            request, health_queries.readings_per_minute_query(minute - RATE_WINDOW, minute)
        )
    }
    minutes = [minute - RATE_WINDOW + timedelta(minutes=i) for i in range(60)]
    newest = await fetch_tuples(request, health_queries.newest_per_domain_query())
    devices = await fetch_dicts(request, queries.devices_query())
    states = dict.fromkeys(DEVICE_STATES, 0)
    for d in devices:
        state = device_state(
            kind=d["kind"],
            status=d["status"],
            online=d["online"],
            last_seen=d["last_seen"],
            now=now,
        )
        states[state] += 1
    refused: dict[str, int] = defaultdict(int)
    for _, reason, count in await fetch_tuples(
        request, health_queries.quarantine_by_reason_query(now - HEALTH_WINDOW, now)
    ):
        refused[reason] += count
    data: dict[str, Any] = {
        "time": now,
        "ingest": {"workers": workers, "running": workers > 0},
        "readings_per_minute": [{"minute": m, "readings": per_minute.get(m, 0)} for m in minutes],
        "newest": [{"domain": d, "time": t, "aggregate": a} for d, t, a in newest],
        "devices": {"registered": len(devices), **states},
        "quarantined": _quarantine_counts(refused),
    }
    return read_response(
        request, {"data": data, "meta": request.app.state.meta}, max_age=MAX_AGE_LIVE
    )
