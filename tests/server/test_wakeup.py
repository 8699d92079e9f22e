"""Wake-ups across the node's processes (decision 100): a datagram per enqueue, a hint only.

What it promises: an enqueue in one process wakes the workers listening in the node's other
processes, for the kinds enqueued; a process does not wake itself twice; a socket left by a killed
process is removed; a data directory whose path is too long for a socket address still works;
inbox activities are not announced (the process that verified them processes them, decision 102).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Collection
from pathlib import Path

from server.services.federation import open_federation
from server.services.wakeup import WakeChannel
from tests.support.nodes import Node, running_node


class Calls:
    def __init__(self) -> None:
        self.kinds: list[set[str] | None] = []
        self.event = asyncio.Event()

    def __call__(self, kinds: Collection[str] | None) -> None:
        self.kinds.append(None if kinds is None else set(kinds))
        self.event.set()

    async def next(self) -> set[str] | None:
        await asyncio.wait_for(self.event.wait(), 5)
        self.event.clear()
        return self.kinds[-1]


async def test_an_enqueue_wakes_the_other_processes_listeners_with_its_kinds(tmp_path: Path) -> None:
    sender, listener, quiet = (WakeChannel(tmp_path / "wake") for _ in range(3))
    calls, own = Calls(), Calls()
    listener.listen(calls)
    sender.listen(own)
    try:
        sender.send({"deliver"})
        sender.send({"fanout"})  # same turn of the loop: one datagram
        assert await calls.next() == {"deliver", "fanout"}
        sender.send(None)
        assert await calls.next() is None
        quiet.send({"process_inbox"})  # a process without a worker still wakes the others
        assert await calls.next() == {"process_inbox"}
        await asyncio.wait_for(own.next(), 5)  # ... this one included
        assert own.kinds == [{"process_inbox"}]  # but never by its own sends
        assert len(calls.kinds) == 3
    finally:
        for channel in (sender, listener, quiet):
            channel.close()
    assert not list((tmp_path / "wake").iterdir())  # closing removes the sockets


async def test_a_socket_left_by_a_killed_process_is_removed_and_the_others_still_woken(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "wake"
    listener, sender = WakeChannel(directory), WakeChannel(directory)
    calls = Calls()
    listener.listen(calls)
    stale = directory / "1-dead.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(os.fsencode(stale))
    dead.close()  # the file stays, nobody listens: what a killed process leaves
    try:
        sender.send({"deliver"})
        assert await calls.next() == {"deliver"}
        assert not stale.exists()
    finally:
        listener.close()
        sender.close()


async def test_a_data_directory_too_long_for_a_socket_address_is_reached_through_a_descriptor(
    tmp_path: Path,
) -> None:
    directory = tmp_path / ("d" * 120) / "wake"
    assert len(os.fsencode(directory)) > 108  # sun_path's size on Linux
    sender, listener = WakeChannel(directory), WakeChannel(directory)
    calls = Calls()
    listener.listen(calls)
    try:
        sender.send({"deliver"})
        assert await calls.next() == {"deliver"}
    finally:
        listener.close()
        sender.close()
    assert not list(directory.iterdir())


async def test_the_federation_runtime_wakes_the_node_s_other_processes(
    tmp_path: Path, database_url: str
) -> None:
    """``notify_worker`` goes through the channel that :func:`open_federation` opens in the data
    directory, which a worker process of the same node listens on."""
    node: Node
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as node:
        other = WakeChannel(node.settings.storage.data_dir / "wake")
        calls = Calls()
        other.listen(calls)
        try:
            async with open_federation(node.fed.node) as fed:
                fed.notify_worker({"deliver"})
                assert await calls.next() == {"deliver"}
                # Inbox activities stay with the process that verified them (decision 102).
                fed.notify_worker({"process_inbox"})
                fed.notify_worker({"process_inbox", "fanout"})
                assert await calls.next() == {"fanout"}
                assert calls.kinds == [{"deliver"}, {"fanout"}]
        finally:
            other.close()
