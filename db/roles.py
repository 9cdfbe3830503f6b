"""The services' database logins: members of the group roles of migration 0011.

The group roles (NOLOGIN) carry the privileges and come with the schema; the logins
carry passwords and are made here, by the owner (`smartby db roles`, and `smartby up`
for its private cluster).  A password is sent to the server only as a SCRAM-SHA-256
verifier (RFC 7677, RFC 5802 §3), computed here, so it never appears in clear in the
server's statement log or in ``pg_stat_activity``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from core.errors import SmartbyError

Kind = Literal["writer", "reader", "admin"]


@dataclass(frozen=True, slots=True)
class Login:
    kind: Kind
    name: str  # the login role
    group: str  # the group role of migration 0011 it is a member of
    setting: str  # where its password comes from
    who: str


LOGINS: dict[Kind, Login] = {
    "writer": Login(
        "writer", "smartby_ingest", "smartby_writer", "SMARTBY_DB_WRITER_PASSWORD", "ingest"
    ),
    "reader": Login(
        "reader", "smartby_read", "smartby_reader", "SMARTBY_DB_READER_PASSWORD", "API, Grafana"
    ),
    "admin": Login(
        "admin",
        "smartby_registry",
        "smartby_registrar",
        "SMARTBY_DB_ADMIN_PASSWORD",
        "the API's admin routes",
    ),
}

#: PostgreSQL's own default (scram_iterations, PostgreSQL 16)
SCRAM_ITERATIONS = 4096


class RoleError(SmartbyError):
    """A login could not be made."""


def scram_verifier(password: str, *, iterations: int = SCRAM_ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$<i>:<salt>$<StoredKey>:<ServerKey>`` verifier PostgreSQL
    stores for a password.  SASLprep (RFC 4013) leaves printable ASCII unchanged,
    which is all this accepts (compose puts passwords into URLs anyway)."""
    if not password or not all(33 <= ord(c) < 127 for c in password):
        raise RoleError("database passwords must be printable ASCII without spaces")
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def ensure_login(conn: psycopg.Connection[TupleRow], login: Login, password: str) -> bool:
    """Create the login (or give it this password), a member of its group; True when
    it was new.  Needs CREATEROLE (the owner in compose and under `smartby up`)."""
    verifier = sql.Literal(scram_verifier(password))
    name = sql.Identifier(login.name)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login.name,)).fetchone()
    group = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login.group,)).fetchone()
    if group is None:
        raise RoleError(f"role {login.group} does not exist: run `smartby db migrate` first")
    try:
        if exists is None:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    name, verifier, sql.Identifier(login.group)
                )
            )
        else:
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(name, verifier))
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(login.group), name))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise RoleError(
            f"cannot create or change role {login.name}: {exc.diag.message_primary}"
            " (run this as the database owner with CREATEROLE)"
        ) from None
    return exists is None


def login_url(owner_url: str, login: Login, password: str) -> str:
    """The owner's URL (host, port, database, options) with this login instead."""
    parts = urlsplit(owner_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(login.name, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
