"""The node's private files: its data directory is 0700, the files in it 0600 (security case 59).

The SQLite database, the node secret and the configuration (which may hold a database password
or the metrics token) are the operator's alone, whatever the umask. Modes are tightened on
files that already exist too, so a node set up before this rule gets it at its next start.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def tighten(path: Path, mode: int) -> None:
    """Remove the group and other bits of an existing ``path``; one the node does not own (an
    operator's choice, e.g. a root-owned directory) is left as it is."""
    with contextlib.suppress(PermissionError):
        os.chmod(path, mode)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if needed; ``path`` itself ends up 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tighten(path, DIR_MODE)


def make_private_file(path: Path) -> None:
    """Create ``path`` empty if it does not exist (never world-readable, not even for an instant);
    it ends up 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    tighten(path, FILE_MODE)


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (created 0600, or tightened to 0600, then truncated)."""
    make_private_file(path)
    path.write_text(text, encoding="utf-8")
