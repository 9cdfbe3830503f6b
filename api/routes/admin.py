"""Device registry operations over HTTP, behind an API key.

The operations are db's (`db.registry`, shared with ``smartby devices``);
they are synchronous, so each request runs them on a worker thread with a
connection of its own.  Admin calls are rare; the open reads keep the async pool.

Once a change has committed, the device's broker account is brought in line, with
the new secret when there is one (the broker takes passwords only in clear, and
only now is it known): `core.broker.DeviceAccountSync`, supplied by ``smartby api``.
If the broker cannot be updated the change stands, and the response's ``broker``
says why and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import psycopg
from fastapi import APIRouter, Depends, Path, Request
from psycopg.rows import TupleRow, dict_row
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api import models, queries
from api.params import device_path_id
from api.problems import Problem, not_found
from api.responses import JSONBytes, dumps
from api.security import require_api_key
from core.broker import DeviceAccountSync
from core.profiles import BindingError, check_binding
from db.connect import connect
from db.registry import (
    DeviceRecord,
    RegistryError,
    add_device,
    disable_device,
    enable_device,
    rotate_secret,
)

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_api_key)])

DeviceId = Annotated[str, Path(description="The device's id.", examples=["aq-sentrum"])]
_T = TypeVar("_T")


def _no_store(document: dict[str, Any], status: int = 200) -> Response:
    return JSONBytes(dumps(document), status_code=status, headers={"cache-control": "no-store"})


def _device_view(conn: psycopg.Connection[TupleRow], device_id: str) -> dict[str, Any]:
    query, params = queries.devices_query(device_id=device_id, admin=True)
    with conn.cursor(row_factory=dict_row) as cur:
        row: dict[str, Any] | None = cur.execute(query, params).fetchone()
    if row is None:
        raise not_found("device", device_id)
    return row


async def _in_thread(request: Request, work: Callable[[psycopg.Connection[TupleRow]], _T]) -> _T:
    """Run a registry operation on its own connection, off the event loop."""
    url: str = request.app.state.admin_database_url

    def run() -> _T:
        with connect(url, autocommit=True, application_name="smartby-api-admin") as conn:
            try:
                return work(conn)
            except psycopg.DataError:
                raise Problem(
                    422, "Value not storable", "a value holds characters PostgreSQL cannot store"
                ) from None

    return await run_in_threadpool(run)


async def _write(
    request: Request,
    device_id: str,
    work: Callable[[psycopg.Connection[TupleRow]], dict[str, Any]],
    status: int = 200,
) -> Response:
    """Run a registry write and answer with its document, never cached; the open reads'
    micro-cache is emptied, since they show devices too.  Then the broker."""
    document = await _in_thread(request, work)
    request.app.state.cache.clear()
    sync: DeviceAccountSync | None = request.app.state.account_sync
    if sync is not None:
        problem = await run_in_threadpool(sync, device_id, document.get("secret"))
        if problem is not None:
            document["broker"] = problem
    return _no_store(document, status)


@router.get(
    "/devices",
    response_model=models.AdminDeviceList,
    summary="The full device registry (never secrets or their hashes)",
)
async def registry(request: Request) -> Response:
    """Every device with its calibration and whether it has a broker secret (the
    secret itself is never shown again). Needs the admin API key."""
    # on the admin connection: it tells whether a secret is set, which the open
    # reads' role (smartby_reader) may not look at
    query, params = queries.devices_query(admin=True)

    def work(conn: psycopg.Connection[TupleRow]) -> list[dict[str, Any]]:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    return _no_store({"data": await _in_thread(request, work)})


@router.post(
    "/devices",
    response_model=models.DeviceSecret,
    status_code=201,
    summary="Register a device; its secret is in the response, once",
)
async def add(request: Request, device: models.NewDevice) -> Response:
    """Register a device at a site; the answer holds its broker secret, shown this
    once only. Needs the admin API key; 409 when the id is taken; 422 when its profile
    settings do not hold (the same checks as `smartby devices add`)."""
    try:
        binding = check_binding(
            device.profile, device.topic, device.fields, device.timezone, device.numeric_strings
        )
    except BindingError as exc:
        raise Problem(422, "Device profile settings", f"device {device.id}: {exc}") from None
    record = DeviceRecord(
        device.id,
        device.site_id,
        device.kind,
        device.vendor,
        device.model,
        device.calibration,
        client_id=device.client_id,
        binding=binding,
    )

    def work(conn: psycopg.Connection[TupleRow]) -> dict[str, Any]:
        query, params = queries.devices_query(device_id=device.id, admin=True)
        if conn.execute(query, params).fetchone() is not None:
            raise Problem(409, "Device exists", f"device {device.id!r} already exists")
        query, params = queries.sites_query(site_id=device.site_id)
        if conn.execute(query, params).fetchone() is None:
            raise Problem(
                422,
                "Unknown site",
                f"site {device.site_id!r} does not exist; add or import it first",
                parameter="site_id",
            )
        try:
            secret = add_device(conn, record)
        except RegistryError as exc:
            raise Problem(422, "Device not registered", str(exc)) from None
        return {"data": _device_view(conn, device.id), "secret": secret}

    return await _write(request, device.id, work, status=201)


async def _change_device(
    request: Request,
    device_id: str,
    operation: Callable[[psycopg.Connection[TupleRow], str], str | None],
) -> Response:
    """Run a registry operation on one device and answer with the device as it is now
    (and the secret the operation made, if it made one)."""
    device_path_id(device_id)

    def work(conn: psycopg.Connection[TupleRow]) -> dict[str, Any]:
        try:
            secret = operation(conn, device_id)
        except RegistryError:
            raise not_found("device", device_id) from None
        document = {"data": _device_view(conn, device_id)}
        return document if secret is None else {**document, "secret": secret}

    return await _write(request, device_id, work)


@router.post(
    "/devices/{device_id}/disable",
    response_model=models.AdminDeviceDocument,
    summary="Lock a device out of the broker",
)
async def disable(request: Request, device_id: DeviceId) -> Response:
    """Lock the device out of the broker; what still arrives from it is quarantined.
    Needs the admin API key."""
    return await _change_device(request, device_id, disable_device)


@router.post(
    "/devices/{device_id}/enable",
    response_model=models.AdminDeviceDocument,
    summary="Let a disabled device in again",
)
async def enable(request: Request, device_id: DeviceId) -> Response:
    """Let a disabled device in again, with its current secret. Needs the admin API
    key."""
    return await _change_device(request, device_id, enable_device)


@router.post(
    "/devices/{device_id}/rotate-secret",
    response_model=models.DeviceSecret,
    summary="Give a device a new secret (shown once)",
)
async def rotate(request: Request, device_id: DeviceId) -> Response:
    """Give the device a new broker secret (shown this once only); the old one stops
    working when the broker reloads. Needs the admin API key."""
    return await _change_device(request, device_id, rotate_secret)
