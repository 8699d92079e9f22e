"""Nodes that can be stopped and started again, and a probe in front of their inboxes.

Reliability tests need what :func:`tests.support.nodes.running_node` does not offer: stop a node
(its server closes, its database and data directory stay), start it again on the *same* port
and database, give its in-process worker a fast retry policy, and watch or hold the answers of
its inboxes. Everything listens on 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, unused_port
from aiohttp.typedefs import Handler

from federation.retry import RetryPolicy
from federation.types import utc_now
from server.app import create_app
from server.services.actors import local as actor_service
from server.services.actors.keys import load_vault
from tests.support.nodes import Node, node_settings

# A held inbox answer is released after this long even if the test forgets to (bounded waits).
HOLD_LIMIT_S = 15.0


def _is_inbox(path: str) -> bool:
    return path == "/inbox" or path.endswith("/inbox")


@dataclass
class InboxProbe:
    """A middleware in front of a node's inboxes (shared and per actor).

    It records the ``id`` of every activity POSTed, in arrival order, and, once :meth:`hold`
    is called, lets the node store what it receives but holds the answer until
    :meth:`release`: to the sender the delivery is still in flight, while the receiver
    already has it (the window in which a crashed sender re-delivers).
    """

    posts: list[str] = field(default_factory=list)
    held: int = 0
    _hold_after: int | None = None
    _gate: asyncio.Event = field(default_factory=asyncio.Event)

    def hold(self, *, after: int = 0) -> None:
        """Hold the answers of POSTs arriving after the next ``after`` ones."""
        self._gate.clear()
        self._hold_after = len(self.posts) + after

    def release(self) -> None:
        """Answer every held POST now, and stop holding."""
        self._hold_after = None
        self._gate.set()

    def count(self, activity_id: str) -> int:
        """How many times ``activity_id`` was POSTed to this node."""
        return self.posts.count(activity_id)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or not _is_inbox(request.path):
            return await handler(request)
        body = await request.read()  # cached by aiohttp: the handler reads the same bytes
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        self.posts.append(str(doc.get("id")) if isinstance(doc, dict) else "")
        position = len(self.posts)
        response = await handler(request)
        if self._hold_after is not None and position > self._hold_after:
            self.held += 1
            try:
                await asyncio.wait_for(self._gate.wait(), HOLD_LIMIT_S)
            except TimeoutError:
                pass
            finally:
                self.held -= 1
        return response


@dataclass
class RestartableNode:
    """One node's identity (data directory, database, port) across several server lifetimes.

    ``node`` is the running :class:`Node`, or ``None`` while stopped. Each :meth:`start`
    builds a fresh application (a new process would do the same) over the same database,
    secret and origin, with a fresh :class:`InboxProbe` in front of its inboxes.
    """

    data_dir: Path
    database_url: str
    port: int
    retry_policy: RetryPolicy | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    node: Node | None = None
    probe: InboxProbe = field(default_factory=InboxProbe)

    @property
    def running(self) -> Node:
        assert self.node is not None, "the node is stopped"
        return self.node

    async def start(self) -> Node:
        """Start the node on its port; the Application actor is created on the first start."""
        assert self.node is None, "the node is already running"
        settings = node_settings(self.data_dir, self.database_url, port=self.port, **self.overrides)
        app = create_app(settings, retry_policy=self.retry_policy)
        self.probe = InboxProbe()
        # Innermost: errors raised while reading the body still go through problem_middleware.
        app.middlewares.append(self.probe.middleware)
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=self.port))
        await client.start_server()
        node = Node(settings, client)
        try:
            vault = load_vault(settings.storage.secret_key_file)
            async with node.sessions.begin() as session:
                await actor_service.ensure_application_actor(
                    session, node.uris, vault, node_name="test node", now=utc_now()
                )
        except BaseException:
            await client.close()
            raise
        self.node = node
        return node

    async def stop(self) -> None:
        """Close the server and its worker (graceful); the database and data dir are kept."""
        if self.node is None:
            return
        node, self.node = self.node, None
        self.probe.release()  # held answers must not delay the shutdown
        await node.client.close()


@asynccontextmanager
async def restartable_node(
    data_dir: Path,
    database_url: str,
    *,
    retry_policy: RetryPolicy | None = None,
    **overrides: Any,
) -> AsyncIterator[RestartableNode]:
    """A started :class:`RestartableNode` on a free port, stopped when the block ends."""
    handle = RestartableNode(data_dir, database_url, unused_port(), retry_policy, dict(overrides))
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()
