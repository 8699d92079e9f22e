"""`entraide serve` as a real process: it answers, logs JSON when asked, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from server.appkeys import SETTINGS
from server.cli import main
from server.config import build_settings
from server.http.serving import serve


def test_serve_answers_then_stops_on_sigterm(tmp_path: Path) -> None:
    port = unused_port()
    origin = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    assert main(["init", "--data-dir", str(data_dir), "--origin", origin]) == 0
    config = str(data_dir / "entraide.toml")
    assert main(["association", "create", "demo", "--name", "Démo", "--config", config]) == 0
    env = {**os.environ, "ENTRAIDE_LOGGING__FORMAT": "json"}
    # The context manager closes the pipe once the process has ended; stdout is not read.
    with subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            url = f"{origin}/.well-known/webfinger?resource=acct:demo@127.0.0.1:{port}"
            body = None
            for _ in range(100):  # bounded: at most ~10 s for the server to come up
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        body = json.loads(response.read())
                    break
                except OSError:
                    time.sleep(0.1)
            assert body is not None, "the node did not answer"
            assert body["subject"] == f"acct:demo@127.0.0.1:{port}"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
            assert process.returncode == 0
            assert time.monotonic() - started < 12
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
        stderr = process.stderr.read() if process.stderr else ""
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "serving" and e["origin"] == origin for e in events), stderr
    # The default loop (decision 105) runs the web side and the in-process worker.
    loops = [e["event_loop"] for e in events if e["event"] in ("serving", "worker started")]
    assert loops == ["uvloop", "uvloop"], stderr


@pytest.mark.parametrize("freeze", [True, False])
async def test_serve_applies_the_collector_policy_while_it_serves(tmp_path: Path, freeze: bool) -> None:
    """``server.gc_threshold`` and ``server.gc_freeze`` hold once ``serve`` is ready, undone at exit."""
    port = unused_port()
    doc = {
        "server": {"origin": f"http://127.0.0.1:{port}", "gc_threshold": 5000, "gc_freeze": freeze},
        "database": {"url": "sqlite+aiosqlite:///node.sqlite3"},
    }
    app = web.Application()
    app[SETTINGS] = build_settings(doc, base_dir=tmp_path, environ={})
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    seen: list[tuple[int, int]] = []

    def ready() -> None:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))
        os.kill(os.getpid(), signal.SIGTERM)  # serve's own handler stops it

    async with asyncio.timeout(10):
        await serve(app, host="127.0.0.1", port=port, access_log=None, on_ready=ready)
    threshold, frozen = seen[0]
    assert threshold == 5000
    assert (frozen > 0) is freeze
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
