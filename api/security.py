"""API keys: a higher read limit, and access to the admin routes.

Keys come from ``SMARTBY_API_KEYS`` ("name:key,key2"; a key without a name is named
``key<n>``), are sent in the ``X-API-Key`` header and compared in constant time.
"""

from __future__ import annotations

import hmac

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from api.problems import Problem
from core.settings import Settings, SettingsError

API_KEY_HEADER = "X-API-Key"

#: documents the scheme in OpenAPI; the check itself is `require_api_key`
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="An API key from SMARTBY_API_KEYS: admin routes, and a higher read limit.",
)


def parse_api_keys(settings: Settings) -> dict[str, str]:
    """{key: name} from the settings (empty when no keys are configured)."""
    if settings.api_keys is None:
        return {}
    keys: dict[str, str] = {}
    for n, item in enumerate(settings.api_keys.get_secret_value().split(","), start=1):
        entry = item.strip()
        if not entry:
            continue
        name, sep, key = entry.partition(":")
        if not sep:
            name, key = f"key{n}", entry
        name, key = name.strip(), key.strip()
        if not key:
            raise SettingsError(f"SMARTBY_API_KEYS: the key named {name!r} is empty")
        if settings.env == "production" and len(key) < 16:
            raise SettingsError(
                f"SMARTBY_API_KEYS: the key named {name!r} is shorter than 16 characters"
            )
        keys[key] = name
    return keys


def key_name(keys: dict[str, str], presented: str) -> str | None:
    """The name of the presented key, or None; every key is compared, in constant time."""
    found: str | None = None
    candidate = presented.encode()
    for key, name in keys.items():
        if hmac.compare_digest(candidate, key.encode()):
            found = name
    return found


def invalid_key() -> Problem:
    return Problem(
        401,
        "Invalid API key",
        f"the {API_KEY_HEADER} header does not hold a valid API key",
        headers={"www-authenticate": API_KEY_HEADER},
    )


async def require_api_key(
    request: Request, presented: str | None = Security(api_key_scheme)
) -> str:
    """Dependency of the admin routes: the key's name, or 401."""
    if not presented:
        raise Problem(
            401,
            "API key required",
            f"this route needs an API key in the {API_KEY_HEADER} header",
            headers={"www-authenticate": API_KEY_HEADER},
        )
    name = key_name(request.app.state.api_keys, presented)
    if name is None:
        raise invalid_key()
    return name
