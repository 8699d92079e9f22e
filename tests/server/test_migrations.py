"""Migrations upgrade in place and match the models, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from server.db import migrate
from server.db.models import Activity, Actor, Base, InboxActivity, Relay, RemoteObject


async def test_migrations_match_the_models_and_round_trip(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        assert await migrate.current_revision(engine) == migrate.head_revision()

        def diff(conn):  # type: ignore[no-untyped-def]
            return compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        before, after = await migrate.upgrade(engine)
        assert (before, after) == (None, migrate.head_revision())
    finally:
        await engine.dispose()


async def test_migration_0010_fills_relays_from_what_is_stored(database_url: str) -> None:
    """Our actors' Announces and the processed ones received (of an object, or of the Create of one)
    become relays of the object; an Announce of something we do not hold does not."""
    engine = create_async_engine(database_url)
    try:
        await migrate.downgrade(engine, "0009")
        now = datetime(2026, 12, 1, tzinfo=UTC)
        sessions = async_sessionmaker(engine)
        async with sessions.begin() as session:
            ours = Actor(
                iri="https://here.test/groups/g", local=True, type="Group", handle="g", host="here.test"
            )
            peer = Actor(
                iri="https://peer.test/groups/p", local=False, type="Group", handle="p", host="peer.test"
            )
            for actor in (ours, peer):
                actor.created_at = actor.updated_at = now
            session.add_all([ours, peer])
            await session.flush()
            note = RemoteObject(
                iri="https://peer.test/notes/1",
                local=False,
                type="Note",
                attributed_to_id=peer.id,
                visibility="public",
                document={},
                published=now,
                received_at=now,
            )
            session.add(note)
            session.add(
                Activity(
                    iri="https://here.test/activities/1",
                    actor_id=ours.id,
                    type="Announce",
                    object_iri=note.iri,
                    visibility="public",
                    document={},
                    published=now,
                )
            )
            received = {"signer_key_iri": f"{peer.iri}#main-key", "document": {}, "received_at": now}
            session.add_all(
                [
                    InboxActivity(
                        iri="https://peer.test/c/1",
                        actor_iri=peer.iri,
                        type="Create",
                        object_iri=note.iri,
                        state="processed",
                        **received,
                    ),
                    InboxActivity(
                        iri="https://peer.test/a/1",
                        actor_iri=peer.iri,
                        type="Announce",
                        object_iri="https://peer.test/c/1",
                        state="processed",
                        **received,
                    ),
                    InboxActivity(
                        iri="https://peer.test/a/2",
                        actor_iri=peer.iri,
                        type="Announce",
                        object_iri="https://peer.test/notes/unknown",
                        state="processed",
                        **received,
                    ),
                ]
            )
        await migrate.upgrade(engine)
        async with sessions() as session:
            relays = (await session.execute(select(Relay.announce_iri, Relay.object_iri))).all()
        assert sorted(relays) == [
            ("https://here.test/activities/1", "https://peer.test/notes/1"),
            ("https://peer.test/a/1", "https://peer.test/notes/1"),
        ]
    finally:
        await engine.dispose()
