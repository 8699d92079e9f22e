"""Fixtures: a real Fedify peer started on 127.0.0.1 for each test (see ``support.py``).

Nothing is installed at test time: ``npm ci --prefix tests/interop/peer`` installs the pinned
``@fedify/fedify`` and the Node 22 binary first. Without them the peer tests fail under CI
(``CI=true``) with that instruction, and are skipped locally.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.interop.support import RECORD_DIR, RFC9421, FedifyPeer, run_peer


@pytest.fixture
def start_peer(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[FedifyPeer]]:
    """``async with start_peer(first_knock=…) as peer``: a Fedify peer for this test."""

    def start(*, first_knock: str = RFC9421) -> AbstractAsyncContextManager[FedifyPeer]:
        return run_peer(tmp_path / "peer-logs", first_knock=first_knock)

    return start


@pytest.fixture
def record_payload() -> Callable[[str, str], None]:
    """``record_payload(name, text)``: with ``ENTRAIDE_RECORD_FEDIFY=1``, keep ``text``
    (the exact bytes the peer sent or served) as ``tests/fixtures/payloads/fedify/peer/<name>``.
    Otherwise only checks that ``text`` is JSON."""

    def record(name: str, text: str) -> None:
        json.loads(text)
        if os.environ.get("ENTRAIDE_RECORD_FEDIFY") == "1":
            RECORD_DIR.mkdir(parents=True, exist_ok=True)
            (RECORD_DIR / name).write_text(text, encoding="utf-8")

    return record
