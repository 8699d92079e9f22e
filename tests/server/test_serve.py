"""`entraide serve` as a real process: it answers, logs JSON when asked, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from aiohttp.test_utils import unused_port

from server.cli import main


def test_serve_answers_then_stops_on_sigterm(tmp_path: Path) -> None:
    port = unused_port()
    origin = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    assert main(["init", "--data-dir", str(data_dir), "--origin", origin]) == 0
    config = str(data_dir / "entraide.toml")
    assert main(["association", "create", "demo", "--name", "Démo", "--config", config]) == 0
    env = {**os.environ, "ENTRAIDE_LOGGING__FORMAT": "json"}
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--config", config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
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
