"""``server.event_loop``: which loop ``serve`` and ``worker`` run on (decision 105).

The suite's own async tests run on asyncio's loop (pytest-aiohttp gives it). What depends on the
loop's internals is therefore run here on uvloop, in one process: the wake-up channel's datagram
reader (``add_reader``), aiosqlite's hand-backs from its thread (``call_soon_threadsafe``), signal
handlers, aiohttp's server and client. The end-to-end tests that start ``serve`` and ``worker``
(tests/e2e/, tests/security/test_crash_safety.py, test_serve.py) run them on the default loop,
uvloop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Collection
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from server.cli import main
from server.config import ConfigError
from server.eventloop import loop_factory, run, running_loop_name
from server.services.wakeup import WakeChannel

uvloop = pytest.importorskip("uvloop", reason="uvloop is a dependency on Linux and macOS only")


@pytest.fixture
def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import uvloop`` fails, as on a platform without it."""
    monkeypatch.setitem(sys.modules, "uvloop", None)


def test_auto_and_uvloop_choose_uvloop_where_it_is_installed() -> None:
    assert loop_factory("auto") == ("uvloop", uvloop.new_event_loop)
    assert loop_factory("uvloop") == ("uvloop", uvloop.new_event_loop)
    assert loop_factory("asyncio") == ("asyncio", None)


@pytest.mark.usefixtures("without_uvloop")
def test_auto_falls_back_to_asyncio_and_uvloop_refuses_to_start_without_it() -> None:
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(ConfigError, match=r"server\.event_loop is 'uvloop' but uvloop cannot be imported"):
        loop_factory("uvloop")


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"server\.event_loop: 'trio'"):
        loop_factory("trio")


@pytest.mark.parametrize(
    ("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_run_runs_the_coroutine_on_the_chosen_loop(choice: str, expected: str) -> None:
    async def which() -> str:
        return running_loop_name()

    assert run(which(), choice) == expected


@pytest.mark.usefixtures("without_uvloop")
def test_serve_and_worker_without_uvloop_when_it_is_required_stop_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    assert main(["init", "--data-dir", str(data_dir), "--origin", "http://127.0.0.1:8080"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("ENTRAIDE_SERVER__EVENT_LOOP", "uvloop")
    config = str(data_dir / "entraide.toml")
    for command in ("serve", "worker"):
        assert main([command, "--config", config]) == 1
        assert "server.event_loop is 'uvloop' but uvloop cannot be imported" in capsys.readouterr().err


def test_what_depends_on_the_loop_works_on_uvloop(tmp_path: Path) -> None:
    """Datagram wake-ups, aiosqlite's thread, a signal handler, aiohttp's server and client."""

    async def scenario() -> dict[str, object]:
        seen: dict[str, object] = {"loop": running_loop_name()}
        # The wake-up channel reads its socket with add_reader.
        woken: asyncio.Future[Collection[str] | None] = asyncio.get_running_loop().create_future()
        sender, listener = WakeChannel(tmp_path / "wake"), WakeChannel(tmp_path / "wake")
        listener.listen(lambda kinds: woken.done() or woken.set_result(kinds))
        try:
            sender.send({"deliver"})
            seen["woken"] = set(await asyncio.wait_for(woken, 5) or ())
        finally:
            sender.close()
            listener.close()
        # aiosqlite answers from its own thread through call_soon_threadsafe.
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'loop.sqlite3'}")
        try:
            async with engine.begin() as connection:
                await connection.execute(text("CREATE TABLE t (n INTEGER)"))
                await connection.execute(text("INSERT INTO t VALUES (1), (2), (3)"))
            async with engine.connect() as connection:
                seen["sum"] = (await connection.execute(text("SELECT sum(n) FROM t"))).scalar_one()
        finally:
            await engine.dispose()
        # serve and worker stop on a signal handler.
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, stopped.set)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(stopped.wait(), 5)
            seen["signal"] = True
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
        # aiohttp's server and client, on loopback.
        app = web.Application()

        async def echo(request: web.Request) -> web.Response:
            return web.json_response({"got": await request.text()}, status=202)

        app.router.add_post("/inbox", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with (
                ClientSession() as client,
                client.post(f"http://127.0.0.1:{port}/inbox", data=b"hello") as response,
            ):
                seen["http"] = (response.status, await response.json())
        finally:
            await runner.cleanup()
        return seen

    assert run(scenario(), "uvloop") == {
        "loop": "uvloop",
        "woken": {"deliver"},
        "sum": 6,
        "signal": True,
        "http": (202, {"got": "hello"}),
    }
