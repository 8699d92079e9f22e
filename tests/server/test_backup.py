"""`entraide backup` under write load and `entraide restore`: the restored node is consistent.

Consistent means: every table has the rows the backup's manifest counted in its snapshot, the
restored node serves the objects and media of the snapshot exactly as the original does, and
the node secret in the backup decrypts private keys that match the keys the original publishes.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from server.backup import BackupError, count_rows, create_backup, read_manifest, restore_backup
from server.cli import main
from server.config import DatabaseSettings
from server.db.engine import create_engine
from server.db.models import Actor, RemoteObject
from server.services.actors.signing import actor_key_pair
from tests.server.test_media import bearer, form, png
from tests.support.databases import PostgresRun, SqliteTemplate, pg_required
from tests.support.nodes import Node, running_node

AS_JSON = {"Accept": "application/activity+json"}

# (engine the node runs on, pg_dump to use on PostgreSQL, engine restored into)
ROUTES = {
    "sqlite": ("sqlite", "auto", "sqlite"),
    "postgresql-pg_dump": ("postgresql", "auto", "postgresql"),
    "postgresql-rows": ("postgresql", None, "postgresql"),
    "sqlite-to-postgresql": ("sqlite", "auto", "postgresql"),
}


async def _database(
    engine: str, index: int, tmp_path: Path, sqlite_template: SqliteTemplate, postgres_run: PostgresRun
) -> str:
    if engine == "sqlite":
        return sqlite_template.copy_to(tmp_path / f"db{index}")
    if postgres_run.error:
        if pg_required():
            pytest.fail(postgres_run.error)
        pytest.skip(postgres_run.error)
    return await postgres_run.database(index)


async def _write_load(
    node: Node, token: str, stop: asyncio.Event, written: list[str], warmed: asyncio.Event
) -> None:
    for n in itertools.count():
        if stop.is_set() or n >= 400:  # bounded whatever happens to the backup
            return
        body = {"type": "Note", "content": f"<p>note {n}</p>", "visibility": "public"}
        written.append((await node.post_outbox("/groups/demo", token, body))["object"])
        if len(written) >= 10:  # the backup starts under a load already running
            warmed.set()


@pytest.mark.parametrize("route", list(ROUTES))
async def test_backup_under_write_load_restores_a_consistent_node(
    tmp_path: Path, route: str, sqlite_template: SqliteTemplate, postgres_run: PostgresRun
) -> None:
    engine, pg_dump, restored_engine = ROUTES[route]
    source_url = await _database(engine, 0, tmp_path, sqlite_template, postgres_run)
    target_url = None  # restore's default: a SQLite file in the new data directory
    if restored_engine == "postgresql":
        index = 1 if engine == "postgresql" else 0
        target_url = await _database(restored_engine, index, tmp_path, sqlite_template, postgres_run)
    archive = tmp_path / "backups" / "node.tar.gz"
    async with running_node(tmp_path / "node", source_url) as node:
        await node.create_association("demo")
        await node.add_member("alice", "demo", role="admin")
        token = await node.token("alice")
        uploaded = await node.client.post("/api/media", data=form(png(4, 4)), headers=bearer(token))
        assert uploaded.status == 201, await uploaded.text()
        media_url = urlsplit((await uploaded.json())["url"]).path
        stop = asyncio.Event()
        written: list[str] = []
        warmed = asyncio.Event()
        writers = [asyncio.create_task(_write_load(node, token, stop, written, warmed)) for _ in range(3)]
        await asyncio.wait_for(warmed.wait(), timeout=60)
        before = len(written)
        manifest = await create_backup(node.settings, archive, pg_dump=pg_dump)
        stop.set()
        await asyncio.gather(*writers)
        assert len(written) > before, "no write happened while the backup ran"
        assert archive.stat().st_mode & 0o777 == 0o600
        dumped = engine == "postgresql" and pg_dump is not None
        assert manifest.database == ("database.pgdump" if dumped else "database.sqlite3")

        restored_dir = tmp_path / "restored"
        await restore_backup(archive, restored_dir, database_url=target_url)
        restored_url = target_url or f"sqlite+aiosqlite:///{restored_dir / 'entraide.sqlite3'}"
        for private in ("entraide.toml", "secret.key"):
            assert (restored_dir / private).stat().st_mode & 0o777 == 0o600
        counted = create_engine(DatabaseSettings(url=restored_url, pool_size=2, echo=False))
        try:
            async with counted.connect() as conn:
                assert await count_rows(conn) == manifest.row_counts
        finally:
            await counted.dispose()
        assert 10 <= manifest.row_counts["objects"] < 10 + len(written) + 5

        origin = {"server": {"origin": node.settings.server.origin}}
        async with running_node(restored_dir, restored_url, **origin) as restored:
            await _assert_serves_the_same(node, restored, media_url)
            await _assert_keys_match(node, restored)


async def _assert_serves_the_same(node: Node, restored: Node, media_url: str) -> None:
    async with restored.sessions() as session:
        notes = select(RemoteObject.iri).where(RemoteObject.type == "Note").order_by(RemoteObject.id)
        iris = list((await session.scalars(notes)).all())
    assert iris
    both = (node, restored)
    for iri in iris[:3] + iris[-5:]:  # the last ones were written as the snapshot was taken
        path = urlsplit(iri).path
        served = [await (await n.client.get(path, headers=AS_JSON)).json(content_type=None) for n in both]
        assert served[0]["id"] == iri
        assert served[0] == served[1]
    original, copy = [await (await n.client.get(media_url)).read() for n in (node, restored)]
    assert original == copy and len(copy) > 0


async def _assert_keys_match(node: Node, restored: Node) -> None:
    """The restored secret decrypts a private key whose public half the original publishes."""
    async with restored.sessions() as session:
        actor = (await session.scalars(select(Actor).where(Actor.iri.endswith("/groups/demo")))).one()
    pair = await actor_key_pair(restored.fed.node, actor)
    published: dict[str, Any] = await (await node.client.get("/groups/demo", headers=AS_JSON)).json(
        content_type=None
    )
    assert pair.public.to_pem().strip() == published["publicKey"]["publicKeyPem"].strip()
    message = b"restored node signs"
    assert pair.public.verify(pair.sign(message), message)


def test_restore_refuses_a_used_directory_and_a_foreign_archive(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(BackupError, match="not a readable Entraide backup"):
        read_manifest(tmp_path / "junk.tar.gz")
    assert main(["restore", str(tmp_path / "junk.tar.gz"), "--data-dir", str(tmp_path / "new")]) == 1
