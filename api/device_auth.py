"""A device proving who it is over HTTP, with its own secret (the one its broker account
has): HTTP Basic ``<device id>:<secret>`` (RFC 7617) or ``Authorization: Bearer
<secret>`` (RFC 6750 §2.1).

The secret is checked against the registry's hash exactly as Mosquitto checks a
password (`db.registry.verify_secret`: PBKDF2-HMAC-SHA512, compared in constant time).
A device nobody registered, one without a secret and a wrong secret all get the same
401, after the same work (a check against a dummy hash), so an answer never tells
whether a device exists.  A disabled device that proves its secret gets 403.

The hashes are read with the registrar's login (``SMARTBY_ADMIN_DATABASE_URL``): the
API's reader and the ingest writer never read a secret (migration 0011).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from api.problems import Problem
from db.registry import hash_secret, verify_secret

Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]

#: what a 401 asks for (RFC 9110 §11.6.1): either scheme
CHALLENGE = 'Basic realm="smartby devices", Bearer realm="smartby devices"'
#: checked when there is no hash to check against, so that costs the same
_DUMMY_HASH = hash_secret("no device has this secret", salt=b"smartby-none")


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str | None  # the Basic user name (None for Bearer)
    secret: str


def credentials(request: Request) -> Credentials | None:
    """The Authorization header's credentials, None when there is none; a malformed one
    is a 401."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return Credentials(None, value)
    if scheme.lower() == "basic" and value:
        try:
            text = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized("the Basic credentials are not base64 of user:password") from None
        user, sep, secret = text.partition(":")
        if sep:
            return Credentials(user, secret)
    raise unauthorized("the Authorization header is neither Basic nor Bearer credentials")


def unauthorized(detail: str = "the device's id and secret do not match") -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"www-authenticate": CHALLENGE})


def device_pool_of(request: Request) -> Pool:
    pool: Pool = request.app.state.device_pool
    return pool


async def authenticate(request: Request, device_id: str, given: Credentials | None) -> str:
    """The device's status ('active' or 'disabled') once ``given`` proves it is
    ``device_id``; 401 otherwise (the same for an unknown device)."""
    if given is None:
        raise unauthorized(
            "this route needs the device's secret: HTTP Basic <device id>:<secret>, or "
            "Authorization: Bearer <secret>"
        )
    async with device_pool_of(request).connection() as conn:
        cur = await conn.execute(
            "SELECT status, secret_hash FROM devices WHERE id = %s", (device_id,)
        )
        row = await cur.fetchone()
    hashed = row[1] if row is not None and row[1] else None
    matches = verify_secret(given.secret, hashed or _DUMMY_HASH)
    user_ok = given.user is None or given.user == device_id
    if row is None or hashed is None or not matches or not user_ok:
        raise unauthorized()
    return str(row[0])


async def authenticate_active(request: Request, device_id: str, given: Credentials | None) -> None:
    """As `authenticate`, and 403 for a disabled device."""
    status = await authenticate(request, device_id, given)
    if status != "active":
        raise Problem(
            403,
            "Forbidden",
            f"device {device_id!r} is {status}: its pushes are refused until it is enabled",
        )
