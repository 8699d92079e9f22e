"""Wake the workers of the other processes of this node when jobs are enqueued (decision 100).

``serve`` and any ``entraide worker`` on the same machine share the data directory. Each process
that runs a :class:`~server.jobs.worker.Worker` listens on a Unix datagram socket in
``<data_dir>/wake/``; a process that enqueues sends one datagram, naming the kinds, to every other
socket found there. The receiver calls :meth:`Worker.notify`, exactly as an in-process enqueue
does, so a fan-out committed by ``serve`` is claimed by the ``worker`` process at once instead of
at its next poll (``worker.poll_interval_s``).

A wake-up is only a hint. Datagrams are sent without blocking and may be dropped (a full
receive buffer, a process starting or stopping, a data directory whose path is too long for a
socket address where ``/proc/self/fd`` cannot shorten it); the workers keep polling as before,
so a lost wake-up delays a job until the next poll and never loses it. Workers on other
machines (PostgreSQL) are not reached and poll.
The directory is private to the node's user (mode 0700, sockets 0600): only processes of that
user can make a worker claim early, which costs it a read or a claim, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Collection
from pathlib import Path

__all__ = ["WakeChannel"]

log = logging.getLogger(__name__)

_SUFFIX = ".sock"
# sun_path is 108 bytes on Linux, 104 on the BSDs, NUL included.
_MAX_PATH_BYTES = 103
_MAX_DATAGRAM = 4096
_ALL = b"*"


class WakeChannel:
    """One process's end: :meth:`send` reaches the other processes' listeners, :meth:`listen`
    makes this one reachable. Use from one event loop; :meth:`close` when the process stops.

    Args:
        directory: where listeners announce themselves (``<data_dir>/wake``).
        local_kinds: kinds never announced to the other processes: their jobs are best run
            where they were queued (an inbox activity, verified in memory by the process that
            stored it, decision 102); the other processes still find them at their poll.
    """

    def __init__(self, directory: Path, *, local_kinds: Collection[str] = ()) -> None:
        self.directory = directory
        self._local_kinds = frozenset(local_kinds)
        self._sender: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._own: str | None = None
        self._on_wake: Callable[[Collection[str] | None], None] | None = None
        # Kinds to send at the end of this turn of the event loop (None: every kind).
        self._pending: set[str] | None = set()
        self._flush_scheduled = False
        # The peers' socket paths, read again when the directory changes (its mtime).
        self._peers: list[str] = []
        self._peers_mtime: int | None = None
        self._usable = True
        # A path too long for a socket address is reached through a descriptor of the directory.
        self._short = len(os.fsencode(directory / f"{'x' * 32}{_SUFFIX}")) <= _MAX_PATH_BYTES
        self._dir_fd: int | None = None
        if not self._short and not os.path.isdir("/proc/self/fd"):
            self._usable = False
            log.warning(
                "data directory path too long for wake-up sockets; workers of other processes poll",
                extra={"directory": str(directory)},
            )

    def _address(self, name: str) -> bytes:
        """The socket address of ``name`` in the directory (which must exist)."""
        if self._short:
            return os.fsencode(self.directory / name)
        if self._dir_fd is None:
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._dir_fd}/{name}".encode()

    def listen(self, on_wake: Callable[[Collection[str] | None], None]) -> None:
        """Receive the other processes' wake-ups and pass their kinds to ``on_wake`` (``None``:
        every kind). A channel that cannot listen logs why; its worker polls as before."""
        if not self._usable or self._listener is not None:
            return
        name = f"{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        path = self.directory / name
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind(self._address(name))
                os.chmod(path, 0o600)
                asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
            except BaseException:
                sock.close()
                raise
        except OSError:
            log.warning("cannot listen for wake-ups; this worker polls", exc_info=True)
            return
        self._listener, self._own, self._on_wake = sock, name, on_wake

    def send(self, kinds: Collection[str] | None = None) -> None:
        """Wake the other processes' workers for ``kinds`` (``None``: every kind).

        Called right after enqueuing, like :meth:`Worker.notify`; the datagrams leave at the end
        of the current turn of the event loop, one per peer for every call made meanwhile.
        """
        if not self._usable:
            return
        if kinds is not None:
            kinds = set(kinds) - self._local_kinds
            if not kinds:
                return
        if kinds is None:
            self._pending = None
        elif self._pending is not None:
            self._pending.update(kinds)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def close(self) -> None:
        """Stop listening and remove this process's socket; further sends do nothing."""
        self._usable = False
        if self._listener is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                (self.directory / str(self._own)).unlink()
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, set()
        if not self._usable:
            return
        message = _ALL if pending is None else ",".join(sorted(pending)).encode()
        if len(message) > _MAX_DATAGRAM:
            message = _ALL
        for name in self._peer_names():
            path = self.directory / name
            try:
                if self._sender is None:
                    self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sender.setblocking(False)
                self._sender.sendto(message, self._address(name))
            except BlockingIOError:
                pass  # its buffer is full: wake-ups are already waiting there
            except ConnectionRefusedError:
                # Nobody listens there any more (a process that was killed): remove the name.
                # A live process never gets this, and a new one binds a name of its own.
                with contextlib.suppress(OSError):
                    path.unlink()
            except OSError:
                log.debug("wake-up not sent", exc_info=True, extra={"peer": name})

    def _peer_names(self) -> list[str]:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            self._peers, self._peers_mtime = [], None
            return self._peers
        if mtime != self._peers_mtime:
            try:
                names = [e.name for e in os.scandir(self.directory) if e.name.endswith(_SUFFIX)]
            except OSError:
                names = []
            self._peers = [name for name in names if name != self._own]
            self._peers_mtime = mtime
        return self._peers

    def _readable(self) -> None:
        listener = self._listener
        if listener is None:
            return
        kinds: set[str] | None = set()
        received = False
        while True:
            try:
                data = listener.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                log.debug("wake-up not read", exc_info=True)
                break
            received = True
            if data == _ALL:
                kinds = None
            elif kinds is not None:
                kinds.update(k for k in data.decode("ascii", "replace").split(",") if k)
        if received and self._on_wake is not None:
            try:
                self._on_wake(kinds)
            except Exception:
                log.exception("wake-up handler failed")
