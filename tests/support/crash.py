"""Crash-safety tooling: ``kill -9`` at a chosen point, then look at what the database kept.

* :class:`Tripwire` runs an action (SIGKILL a process) exactly once, when the n-th event of a
  kind happens (the n-th POST a fake peer receives, the n-th 202 a sender reads): a crash at a
  point the test picks with a seeded ``random.Random``, not at a point a poll happened to see.
* :class:`PacedPeers` are fake peers that answer every POST after a short delay (so a worker
  always has deliveries in flight) and count POSTs per target and per activity id.
* :class:`Site` is a node's database and settings without a server in the test process: what a
  real ``entraide serve`` or ``entraide worker`` process works on, and the test's oracle.
* :func:`signed_post` sends a signed activity to a real process over loopback.
* :func:`assert_sqlite_intact` runs ``PRAGMA integrity_check`` on a SQLite database file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from federation.http import AP_CONTENT_TYPE, Headers, OutgoingRequest
from federation.keys import KeyPair
from federation.signatures import sign_request
from federation.types import JsonObject, utc_now
from server.config import Settings
from server.db.engine import create_engine, create_sessionmaker
from server.db.models import Job
from server.jobs.runner import build_node_context
from server.services.actors import local as actor_service
from tests.support.fake_peers import FakePeers
from tests.support.processes import ServiceProcess
from tests.support.signed_inbox import encode


@dataclass
class Tripwire:
    """Calls ``action`` once, synchronously, at the ``after``-th :meth:`hit` (1-based)."""

    after: int
    action: Callable[[], None] = lambda: None
    hits: int = 0
    fired_at: int | None = None

    def hit(self) -> None:
        self.hits += 1
        if self.fired_at is None and self.hits >= self.after:
            self.fired_at = self.hits
            self.action()


def sigkill(process: ServiceProcess) -> Callable[[], None]:
    """An action for :class:`Tripwire`: ``kill -9`` the process now (no shutdown code runs)."""

    def kill() -> None:
        if process.alive:
            process.process.kill()  # type: ignore[union-attr]

    return kill


@dataclass
class PacedPeers(FakePeers):
    """Fake peers that answer POSTs after ``post_delay_s`` and count them.

    ``posts`` counts POSTs per ``(host, target)``, ``activities`` per ``(target, activity id)``;
    ``tripwire`` (shared by several peers if wanted) is hit when a POST arrives, before its
    answer: a worker killed there has the request in flight (the peer has it, the worker has
    not recorded the answer).
    """

    post_delay_s: float = 0.05
    tripwire: Tripwire | None = None
    posts: Counter[tuple[str, str]] = field(default_factory=Counter)
    activities: Counter[tuple[str, str]] = field(default_factory=Counter)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return await super()._handle(request)
        host = (request.host or "").rsplit(":", 1)[0].lower()
        body = await request.read()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        activity_id = str(doc.get("id")) if isinstance(doc, dict) else ""
        self.posts[(host, request.raw_path)] += 1
        self.activities[(request.raw_path, activity_id)] += 1
        if self.tripwire is not None:
            self.tripwire.hit()
        await asyncio.sleep(self.post_delay_s)
        return await super()._handle(request)


@dataclass
class Site:
    """One node's settings and database, driven from the test process (no server here)."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def origin(self) -> str:
        return self.settings.server.origin

    async def scalar(self, stmt: Any) -> Any:
        async with self.sessions() as session:
            return await session.scalar(stmt)

    async def create_association(self, handle: str) -> str:
        """The node's Application actor (as ``entraide init``) and an association."""
        node = build_node_context(self.settings, self.engine)
        async with self.sessions.begin() as session:
            await actor_service.ensure_application_actor(
                session, node.uris, node.vault, node_name="crash test", now=utc_now()
            )
            created = await actor_service.create_association(
                session, node.uris, node.vault, handle=handle, name=handle.title(), now=utc_now()
            )
        return created.actor.iri


async def expire_leases(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Jump past the leases of a killed worker's jobs (5 minutes in production).

    A job claimed by a worker that died stays ``running`` until its lease ends, then any
    worker claims it again (security.md §3.4 item 6); moving ``locked_until`` into the past
    is that wait, fast-forwarded. Returns how many jobs were running.
    """
    async with sessions.begin() as session:
        result = await session.execute(
            update(Job)
            .where(Job.state == "running")
            .values(locked_until=utc_now() - timedelta(seconds=1))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


@asynccontextmanager
async def open_site(settings: Settings) -> AsyncIterator[Site]:
    engine = create_engine(settings.database)
    try:
        yield Site(settings, engine, create_sessionmaker(engine))
    finally:
        await engine.dispose()


async def signed_post(http: aiohttp.ClientSession, url: str, activity: JsonObject, key: KeyPair) -> int:
    """POST ``activity`` to ``url`` signed (draft-cavage) by ``key``; returns the status."""
    request = OutgoingRequest("POST", url, Headers({"Content-Type": AP_CONTENT_TYPE}), encode(activity))
    signed = sign_request(request, key, now=utc_now(), spec="cavage")
    headers = [(name, signed.headers[name]) for name in signed.headers]
    async with http.post(url, data=request.body, headers=headers, allow_redirects=False) as response:
        await response.read()
        return response.status


def sqlite_path(database_url: str) -> Path | None:
    """The file of a ``sqlite+aiosqlite:///…`` URL, ``None`` for another engine."""
    prefix = "sqlite+aiosqlite:///"
    return Path(database_url[len(prefix) :]) if database_url.startswith(prefix) else None


def assert_sqlite_intact(database_url: str) -> None:
    """``PRAGMA integrity_check`` answers ``ok`` (a no-op on PostgreSQL)."""
    path = sqlite_path(database_url)
    if path is None:
        return
    connection = sqlite3.connect(path)
    try:
        result = connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()
    assert result == [("ok",)], result
