"""Shared helpers for the schema, context and JSON-LD tests."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = REPO_ROOT / "tests" / "fixtures" / "payloads"
EXAMPLES = Path(__file__).resolve().parent / "examples"
CONTEXTS_DIR = REPO_ROOT / "schemas" / "contexts"


def load_json(path: Path) -> Any:
    """Decode one JSON file."""
    return json.loads(path.read_bytes())


def load_payload(relative: str) -> Any:
    """Decode a recorded payload, e.g. ``load_payload("mastodon/create_note.json")``."""
    return load_json(PAYLOADS / relative)


def load_example(name: str) -> Any:
    """Decode one of our golden output examples (``tests/schemas/examples``)."""
    return load_json(EXAMPLES / f"{name}.json")


def forbid_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every attempt to open a connection fail the test; return the list of attempts.

    Patches name resolution and connection at the socket layer, below requests/urllib3/aiohttp,
    so that whatever pyld might use underneath is caught.
    """
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise AssertionError(f"network access attempted: {args[:2]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts
