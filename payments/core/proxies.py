"""The client's address behind reverse proxies, believed only from proxies the operator named.

``X-Forwarded-For`` is a list every proxy appends to; anyone can start it with any address they like. So the list is
read from the right, skipping proxies in ``LEPHI_TRUSTED_PROXIES``, and the first address that is not one of them is
the client: the one the outermost trusted proxy saw. From a peer that is not a trusted proxy the headers are ignored,
and with no trusted proxy (the default) the peer is always the client. The result replaces the ASGI ``client`` (and
``scheme`` from ``X-Forwarded-Proto``), so rate limits, logs and everything else read the same address.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network


def is_trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ip_address(address.strip())
    except ValueError:
        return False
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in proxies)


def client_address(peer: str, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The right-most address of ``peer`` + ``X-Forwarded-For`` that is not a trusted proxy."""
    if not forwarded_for or not is_trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, proxies):
            return hop[:64]
    # Every hop is a proxy of ours (a request from inside): the left-most one is as near the client as we know.
    return hops[0][:64] if hops else peer


def _header(scope: Scope, name: bytes) -> str | None:
    # Several lines of one header are one comma-separated list (RFC 9110 5.3).
    values = [v.decode("latin-1") for k, v in scope["headers"] if k == name]
    return ", ".join(values) if values else None


class TrustedProxyMiddleware:
    def __init__(self, app: ASGIApp, proxies: Sequence[Network]) -> None:
        self.app = app
        self.proxies = list(proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in {"http", "websocket"} and self.proxies and client and is_trusted(client[0], self.proxies):
            scope = dict(scope)
            address = client_address(client[0], _header(scope, b"x-forwarded-for"), self.proxies)
            scope["client"] = (address, 0 if address != client[0] else client[1])
            proto = (_header(scope, b"x-forwarded-proto") or "").split(",")[-1].strip().lower()
            if proto in {"http", "https"}:
                scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]
        await self.app(scope, receive, send)
