"""HTTP push: devices that post their readings instead of publishing them over MQTT.

``POST /v1/ingest/{device_id}`` takes SenML JSON (``application/senml+json``, RFC 8428
§5), SenML CBOR (``application/senml+cbor``, §6) or the smartby JSON object
(``application/json``); ``POST /v1/ingest/sensor-community`` takes what the
sensor.community (airRohr) firmware sends to "own API", the device named by its
``X-Sensor`` header.  The device proves itself with its own secret (`api.device_auth`).

The body is read up to ``SMARTBY_INGEST_MAX_PAYLOAD_BYTES`` and no further (413 past it,
the same limit MQTT payloads have).  It is stored by the process's push sink (built by
``ingest.http_push``: the MQTT path's decode, QC, rollups and quarantine), and the answer
comes only after the transaction holding its readings committed: 200 with the count
when every record was stored, 422 naming the first rejected record (the others are
stored, the rejected ones are in the quarantine, as for an MQTT message), 400 when the
body could not be read at all (quarantined too).  A retry is harmless: readings with a
time are stored once; a time-less body keeps its first time under an
``Idempotency-Key`` header.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from starlette.responses import Response

from api import models
from api.device_auth import authenticate_active, credentials, unauthorized
from api.problems import PROBLEM_JSON, Problem
from api.responses import JSONBytes, dumps
from core.push import (
    IdempotencyKeyReused,
    Push,
    PushBusy,
    PushForm,
    PushOutcome,
    PushSink,
)

router = APIRouter(tags=["ingest"])

#: media type -> form of the body (RFC 8428 §12.3 registers the SenML ones)
MEDIA_TYPES: dict[str, PushForm] = {
    "application/senml+json": "senml+json",
    "application/senml+cbor": "senml+cbor",
    "application/json": "json",
}
#: the device id of sensor.community firmware: esp8266-<chip id> or esp32-<chip id>
SENSOR_HEADER = "X-Sensor"


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _PROBLEM}}}


_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_SECURITY: list[dict[str, list[str]]] = [{"deviceBasic": []}, {"deviceBearer": []}]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _problem("No credentials, or not the device's id and secret (an unknown device too)."),
    403: _problem("The device is disabled in the registry."),
    413: _problem("The body is larger than the limit (SMARTBY_INGEST_MAX_PAYLOAD_BYTES)."),
    415: _problem("The Content-Type is not one this route takes."),
    422: _problem(
        "Some records were rejected (and quarantined); the detail names the first, "
        "`rejected` lists them; the other records are stored."
    ),
}
_SENML_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "bn": {"type": "string"},
            "bt": {"type": "number"},
            "bu": {"type": "string"},
            "n": {"type": "string"},
            "u": {"type": "string"},
            "v": {"type": "number"},
            "s": {"type": "number"},
            "t": {"type": "number"},
        },
    },
}
_PUSH_BODY = {
    "required": True,
    "content": {
        "application/senml+json": {
            "schema": _SENML_SCHEMA,
            "example": [
                {"bn": "aq-torget-4/", "bt": 1.7e9, "n": "pm25", "u": "ug/m3", "v": 5.1},
                {"n": "pm10", "u": "ug/m3", "v": 12.3},
            ],
        },
        "application/senml+cbor": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"time": {"type": ["string", "number"]}},
                "additionalProperties": {"type": "number"},
            },
            "example": {"time": "2024-01-15T07:00:00Z", "pm25": 5.1, "pm10": 12.3},
        },
    },
}
_SENSOR_COMMUNITY_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["sensordatavalues"],
                "properties": {
                    "esp8266id": {"type": "string"},
                    "software_version": {"type": "string"},
                    "sensordatavalues": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["value_type", "value"],
                            "properties": {
                                "value_type": {"type": "string"},
                                "value": {"type": ["string", "number"]},
                            },
                        },
                    },
                },
            },
            "example": {
                "esp8266id": "12345678",
                "software_version": "NRZ-2024-134-B5",
                "sensordatavalues": [
                    {"value_type": "SDS_P1", "value": "12.30"},
                    {"value_type": "SDS_P2", "value": "5.10"},
                    {"value_type": "signal", "value": "-71"},
                ],
            },
        }
    },
}


async def read_body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it passes the limit (never read whole)."""
    limit: int = request.app.state.settings.ingest_max_payload_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Problem(400, "Bad request", "Content-Length is not a number")
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> Problem:
    return Problem(
        413,
        "Content too large",
        f"the body is {size} bytes or more; the limit is {limit} bytes "
        "(SMARTBY_INGEST_MAX_PAYLOAD_BYTES): send fewer records per request",
        limit=limit,
        headers={"connection": "close"},
    )


def _media_type(request: Request, allowed: dict[str, PushForm]) -> PushForm:
    given = request.headers.get("content-type", "")
    media = given.split(";", 1)[0].strip().lower()
    form = allowed.get(media)
    if form is None:
        raise Problem(
            415,
            "Unsupported media type",
            f"Content-Type {media or '(none)'!r} is not taken here; send "
            + ", ".join(sorted(allowed)),
            headers={"accept-post": ", ".join(sorted(allowed))},
        )
    return form


def _sink(request: Request) -> PushSink:
    sink: PushSink | None = request.app.state.push_sink
    if sink is None:
        raise Problem(
            503,
            "Service unavailable",
            "this API process does not take pushes (it runs without an ingest path)",
            headers={"retry-after": "60"},
        )
    return sink


async def _store(request: Request, push: Push) -> Response:
    """Hand the push to the sink and answer once its transaction committed."""
    try:
        outcome = await asyncio.wrap_future(_sink(request).submit(push))
    except PushBusy:
        raise Problem(
            503,
            "Service unavailable",
            "too many pushes are waiting to be stored; retry shortly",
            headers={"retry-after": "1"},
        ) from None
    except IdempotencyKeyReused:
        raise Problem(
            422,
            "Idempotency-Key reused",
            "this Idempotency-Key was used before with another body; a retry must "
            "send the same body, a new request a new key",
            reason="idempotency_key_reused",
        ) from None
    return _answer(push, outcome)


def _answer(push: Push, outcome: PushOutcome) -> Response:
    if not outcome.rejected:
        document = {"device_id": push.device_id, "stored": outcome.stored, "rejected": 0}
        return JSONBytes(dumps(document), headers={"cache-control": "no-store"})
    first = outcome.rejected[0]
    rejected = [
        {"record": r.record, "reason": r.reason, "detail": r.detail} for r in outcome.rejected
    ]
    which = f"record {first.record}" if first.record is not None else "the body"
    if outcome.undecodable:
        raise Problem(
            400,
            "Undecodable body",
            f"{which}: {first.reason}: {first.detail} (quarantined)",
            reason=first.reason,
            record=first.record,
            stored=outcome.stored,
            rejected=rejected,
        )
    raise Problem(
        422,
        "Records rejected",
        f"{which}: {first.reason}: {first.detail} ({len(rejected)} rejected and "
        f"quarantined, {outcome.stored} readings stored)",
        reason=first.reason,
        record=first.record,
        stored=outcome.stored,
        rejected=rejected,
    )


@router.post(
    "/ingest/sensor-community",
    response_model=models.PushResult,
    summary="Readings of a sensor.community (airRohr) sensor, as its firmware sends them",
    responses=_RESPONSES,
    openapi_extra={"requestBody": _SENSOR_COMMUNITY_BODY, "security": _SECURITY},
)
async def push_sensor_community(
    request: Request,
    x_sensor: Annotated[
        str | None,
        Header(
            alias=SENSOR_HEADER,
            description="The sensor's id, esp8266-<chip id> (or esp32-): the registry "
            "device with that id.",
            examples=["esp8266-12345678"],
        ),
    ] = None,
    x_pin: Annotated[
        str | None,
        Header(
            alias="X-Pin",
            description="Which sensor of the board (sensor.community's own API); the "
            "firmware does not send it to own APIs, and it is ignored here.",
        ),
    ] = None,
) -> Response:
    """The firmware's "Send data to own API": server = this host, path
    /v1/ingest/sensor-community, user = the X-Sensor id (esp8266-<chip id>), password
    = the device's secret.  P1 → pm10, P2 → pm25, temperature, humidity and pressure
    (pascals, stored in hPa); `signal` is the device's RSSI (health).  The readings get
    the time the request arrived."""
    given = credentials(request)
    device_id = x_sensor.strip() if x_sensor else (given.user if given else None)
    if not device_id:
        raise unauthorized(f"the {SENSOR_HEADER} header names no sensor")
    await authenticate_active(request, device_id, given)
    form = _media_type(request, {"application/json": "sensor-community"})
    payload = await read_body(request)
    push = Push(
        device_id,
        payload,
        form,
        time.time(),
        f"http:/v1/ingest/sensor-community ({device_id})",
    )
    return await _store(request, push)


@router.post(
    "/ingest/{device_id}",
    response_model=models.PushResult,
    summary="Readings of one device, posted by the device",
    responses=_RESPONSES,
    openapi_extra={"requestBody": _PUSH_BODY, "security": _SECURITY},
)
async def push_readings(
    request: Request,
    device_id: Annotated[str, Path(description="The device's id.", examples=["aq-torget-4"])],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="For bodies without times: a retry under the same key (and body) "
            "keeps the first post's time, so it is stored once (kept for 24 hours).",
        ),
    ] = None,
) -> Response:
    """SenML JSON or CBOR (RFC 8428), or the smartby JSON object, for one device; the
    answer comes after the readings are committed."""
    await authenticate_active(request, device_id, credentials(request))
    form = _media_type(request, MEDIA_TYPES)
    payload = await read_body(request)
    push = Push(
        device_id,
        payload,
        form,
        time.time(),
        f"http:/v1/ingest/{device_id}",
        idempotency_key or None,
    )
    return await _store(request, push)
