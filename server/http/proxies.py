"""Requests that come through a reverse proxy: who the client is and whether it used https.

Behind nginx or Caddy every connection comes from the proxy, so ``request.remote`` is the
proxy's address and ``request.scheme`` is ``http``. The proxy says who the client was in
``X-Forwarded-For`` and which scheme it used in ``X-Forwarded-Proto``; anyone can send those
headers too, so they are believed only when the connection itself comes from an address in
``server.trusted_proxies`` (docs/deploy.md). Anything else keeps the socket's own address.

``X-Forwarded-For`` is read right to left: each trusted proxy appends the address it saw, so
the first address from the right that is not a trusted proxy is the client; what is left of
it was written by the client and is ignored (a client cannot pick the address it is limited
or logged under by sending the header itself).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from server.appkeys import SETTINGS

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CLIENT_ADDRESS = web.RequestKey("client_address", str)
"""The forwarded client address, kept on the request object the access log is given (aiohttp
logs the request it parsed, not the clone the handlers see)."""


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _address(text: str) -> IPAddress | None:
    candidate = text.strip()
    if candidate.startswith("[") and "]" in candidate:  # [v6]:port
        candidate = candidate[1 : candidate.index("]")]
    elif candidate.count(":") == 1:  # v4:port
        candidate = candidate.partition(":")[0]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def _trusted(address: IPAddress | None, networks: Iterable[IPNetwork]) -> bool:
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def forwarded_client(
    peer: str | None, forwarded_for: str, forwarded_proto: str, trusted: tuple[str, ...]
) -> tuple[str | None, str | None]:
    """The client address and scheme to use for a connection from ``peer``.

    Returns ``(None, None)`` when ``peer`` is not a trusted proxy: the request stays as it came.
    A scheme other than ``http``/``https`` is ignored, as is an address that does not parse.
    """
    networks = _networks(trusted)
    if not networks or not _trusted(_address(peer or ""), networks):
        return None, None
    client: str | None = None
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        address = _address(hop)
        if address is None:
            break  # garbage from the client side: keep the last good hop
        client = str(address)
        if not _trusted(address, networks):
            break
    proto = forwarded_proto.split(",")[-1].strip().lower()
    return client, proto if proto in ("http", "https") else None


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rewrite ``remote`` and ``scheme`` from a trusted proxy's forwarded headers."""
    trusted = request.app[SETTINGS].server.trusted_proxies
    if not trusted:
        return await handler(request)
    client, scheme = forwarded_client(
        request.remote,
        request.headers.get("X-Forwarded-For", ""),
        request.headers.get("X-Forwarded-Proto", ""),
        trusted,
    )
    if client is None and scheme is None:
        return await handler(request)
    if client is not None:
        request[CLIENT_ADDRESS] = client
    forwarded = request.clone(remote=client or request.remote or "", scheme=scheme or request.scheme)
    return await handler(forwarded)


class AccessLogger(AbstractAccessLogger):
    """One line per request with the client's address as computed here, not the proxy's."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        client = request.get(CLIENT_ADDRESS) or request.remote or "-"
        self.logger.info(
            '%s "%s %s" %s %s %.3f',
            client,
            request.method,
            request.path_qs,
            response.status,
            response.body_length,
            time,
            extra={
                "client": client,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_s": round(time, 6),
            },
        )
