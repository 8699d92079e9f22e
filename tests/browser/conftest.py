"""Fixtures of the browser tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``$ENTRAIDE_SCREENSHOTS`` when set (the README's come from there),
    else the test's temporary directory."""
    folder = Path(os.environ.get("ENTRAIDE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
