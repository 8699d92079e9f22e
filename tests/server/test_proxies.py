"""Forwarded headers: believed from ``server.trusted_proxies`` only, read right to left."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.appkeys import SETTINGS
from server.http.proxies import AccessLogger, forwarded_client, forwarded_middleware
from tests.support.nodes import node_settings

LOOPBACK = ("127.0.0.1/32", "::1/128")


@pytest.mark.parametrize(
    ("peer", "xff", "proto", "expected"),
    [
        ("127.0.0.1", "203.0.113.7", "https", ("203.0.113.7", "https")),
        # a client's own header is on the left: the rightmost untrusted hop wins
        ("127.0.0.1", "6.6.6.6, 203.0.113.7", "https", ("203.0.113.7", "https")),
        # two proxies in a row: both skipped
        ("10.1.2.3", "203.0.113.7, 10.9.9.9", "http", ("203.0.113.7", "http")),
        ("::ffff:127.0.0.1", "2001:db8::1", "", ("2001:db8::1", None)),
        ("127.0.0.1", "[2001:db8::1]:4711", "HTTPS", ("2001:db8::1", "https")),
        ("127.0.0.1", "garbage, 203.0.113.7", "gopher", ("203.0.113.7", None)),
        # not from a proxy: the headers are the client's and are ignored
        ("198.51.100.9", "203.0.113.7", "https", (None, None)),
        (None, "203.0.113.7", "https", (None, None)),
    ],
)
def test_forwarded_client(
    peer: str | None, xff: str, proto: str, expected: tuple[str | None, str | None]
) -> None:
    assert forwarded_client(peer, xff, proto, (*LOOPBACK, "10.0.0.0/8")) == expected


def test_no_trusted_proxies_believes_nobody() -> None:
    assert forwarded_client("127.0.0.1", "203.0.113.7", "https", ()) == (None, None)


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"remote": request.remote, "secure": request.secure, "url": str(request.url)})


@pytest.mark.parametrize(
    ("trusted", "expected"), [((), ("127.0.0.1", False)), (LOOPBACK, ("203.0.113.7", True))]
)
async def test_middleware_rewrites_remote_and_scheme(
    tmp_path: Path, trusted: tuple[str, ...], expected: tuple[str, bool]
) -> None:
    settings = node_settings(
        tmp_path, "sqlite+aiosqlite:///:memory:", port=8080, server={"trusted_proxies": list(trusted)}
    )
    app = web.Application(middlewares=[forwarded_middleware])
    app[SETTINGS] = settings
    app.router.add_get("/echo/{name}", _echo)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get(
            "/echo/x", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
        )
        body = await response.json()
    assert (body["remote"], body["secure"]) == expected
    assert body["url"].startswith("https://" if expected[1] else "http://")


async def test_access_log_names_the_forwarded_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp logs the request it parsed, whose ``remote`` is the proxy's: the log must not."""
    settings = node_settings(
        tmp_path, "sqlite+aiosqlite:///:memory:", port=8080, server={"trusted_proxies": list(LOOPBACK)}
    )
    app = web.Application(middlewares=[forwarded_middleware])
    app[SETTINGS] = settings
    app.router.add_get("/echo/{name}", _echo)
    logger = logging.getLogger("test.access")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=logger, access_log_class=AccessLogger)
    with caplog.at_level(logging.INFO, logger="test.access"):
        async with TestClient(server) as client:
            for forwarded in ("203.0.113.7", ""):
                response = await client.get("/echo/x", headers={"X-Forwarded-For": forwarded})
                assert response.status == 200
    clients = [getattr(record, "client", None) for record in caplog.records if record.name == "test.access"]
    assert clients == ["203.0.113.7", "127.0.0.1"]
