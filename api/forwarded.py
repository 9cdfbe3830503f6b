"""Who the client is when a reverse proxy stands in front of the API.

The peer of a connection is the client, unless the peer is one of the proxies named
in ``SMARTBY_API_TRUSTED_PROXIES``: then the address that proxy forwarded (in
X-Forwarded-For, or in Forwarded, RFC 7239, per ``SMARTBY_API_FORWARDED_HEADER``)
is.  Everything keyed by client — the rate limits, the export caps — depends on it,
so a header is believed only from a trusted peer: anyone else could rotate it to get
a new allowance with every request.

A proxy appends the address it received the request from to whatever the client
sent, so the list is read from the right: trusted proxies are skipped and the first
address that is not a trusted proxy is the client (RFC 7239 §5.2; what nginx's
``real_ip_recursive`` does).  An entry that is not an address (``unknown``, an
obfuscated ``_hidden`` node, garbage) ends the walk at the last trusted hop: it is
no reason to believe what lies to its left.

This is the API's one mechanism for forwarded addresses: uvicorn's own
``--proxy-headers`` (which by default trusts 127.0.0.1, so any local client could
claim any address) is off in `api.server`.  Run uvicorn yourself with
``--no-proxy-headers`` too.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]

_SCHEMES = frozenset({"http", "https"})
#: one forwarded-pair of RFC 7239 §4: token "=" ( token / quoted-string )
_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*')
_BRACKETED = re.compile(r"^\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?$")
_IPV4_PORT = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$")


def parse_node(text: str) -> tuple[Address, int] | None:
    """An address, with its port or 0, from an X-Forwarded-For entry or a Forwarded
    ``for=`` value ("192.0.2.1", "192.0.2.1:443", "2001:db8::1", "[2001:db8::1]:443");
    None for anything else."""
    node = text.strip().strip('"')
    port = 0
    if (bracketed := _BRACKETED.match(node)) is not None:
        node, port = bracketed.group(1), int(bracketed.group(2) or 0)
    elif (with_port := _IPV4_PORT.match(node)) is not None:
        node, port = with_port.group(1), int(with_port.group(2))
    try:
        address = ip_address(node)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, port


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside quoted strings (a backslash escapes inside)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def forwarded_elements(value: str) -> list[dict[str, str]]:
    """The elements of a Forwarded header (RFC 7239 §4), each as its parameters with
    lower-cased names and unquoted values; a malformed pair is left out."""
    elements = []
    for element in _split(value, ","):
        parameters: dict[str, str] = {}
        for pair in _split(element, ";"):
            found = _PAIR.fullmatch(pair)
            if found is None:
                continue
            raw = found.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            parameters[found.group(1).lower()] = raw
        elements.append(parameters)
    return elements


class TrustedProxies:
    """The proxies whose forwarded addresses are believed, and the header they write."""

    def __init__(self, networks: tuple[Network, ...], header: ForwardedHeader) -> None:
        self.networks = networks
        self.header = header.encode()

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def _hops(self, scope: Scope) -> list[tuple[str, str | None]]:
        """(node, protocol) of each forwarded hop, the client's side first."""
        values = [v.decode("latin-1") for k, v in scope["headers"] if k == self.header]
        if not values:
            return []
        joined = ",".join(values)
        if self.header == b"forwarded":
            return [(e.get("for", ""), e.get("proto")) for e in forwarded_elements(joined)]
        nodes = [n.strip() for n in joined.split(",")]
        protos = [
            p.strip().lower()
            for k, v in scope["headers"]
            if k == b"x-forwarded-proto"
            for p in v.decode("latin-1").split(",")
        ]
        if len(protos) == len(nodes):
            return list(zip(nodes, protos, strict=True))
        # one protocol for a chain of proxies: the nearest proxy's word, for every hop
        last = protos[-1] if protos else None
        return [(node, last) for node in nodes]

    def resolve(self, scope: Scope) -> tuple[tuple[str, int], str | None] | None:
        """The client (host, port) and the scheme it used, when the peer is a trusted
        proxy that forwarded them; None to keep the peer as the client."""
        client = scope.get("client")
        if not self.networks or not client:
            return None
        peer = parse_node(str(client[0]))
        if peer is None or not self.trusts(peer[0]):
            return None
        hops = self._hops(scope)
        chosen: tuple[Address, int] | None = None
        scheme: str | None = None
        for node, proto in reversed(hops):
            parsed = parse_node(node)
            if parsed is None:
                break
            chosen, scheme = parsed, proto
            if not self.trusts(parsed[0]):
                break
        if chosen is None:
            return None
        return (str(chosen[0]), chosen[1]), scheme if scheme in _SCHEMES else None


class ForwardedFor:
    """Outermost middleware: the client address (and scheme) a trusted proxy
    forwarded replaces the proxy's own in the ASGI scope, for everything inside."""

    def __init__(self, app: ASGIApp, *, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            resolved = self.proxies.resolve(scope)
            if resolved is not None:
                client, scheme = resolved
                scope = dict(scope, client=client)
                if scheme is not None:
                    scope["scheme"] = scheme
        await self.app(scope, receive, send)
