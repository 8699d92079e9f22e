"""Migrations upgrade in place and match the models, on both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, Table, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine

from server.db import migrate
from server.db.models import Base, FollowerInbox, Relay


@pytest.fixture(autouse=True)
async def _back_at_head(database_url: str) -> AsyncIterator[None]:
    """Each test leaves its database at the newest revision, whatever it went down to: on PostgreSQL the
    database is the run's, shared by the tests that come after in this process."""
    yield
    engine = create_async_engine(database_url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def _reflected(conn: Connection) -> dict[str, Table]:
    meta = MetaData()
    meta.reflect(conn)
    return dict(meta.tables)


async def _insert_row(conn: AsyncConnection, table: Table, **values: object) -> int:
    """A row of ``table`` (as reflected) with ``values`` and the models' scalar defaults for the rest."""
    model = Base.metadata.tables[table.name]
    for column in table.columns:
        default = model.c[column.name].default if column.name in model.c else None
        if column.name not in values and default is not None and default.is_scalar:
            values[column.name] = default.arg
    row = await conn.execute(table.insert().values(**values).returning(table.c.id))
    return int(row.scalar_one())


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
        # Rows are written with the tables as they stand at 0009 (reflected), not the models: later
        # migrations add columns that do not exist yet.
        async with engine.begin() as conn:
            tables = await conn.run_sync(lambda sync: _reflected(sync))

            async def insert(table: str, **values: object) -> int:
                return await _insert_row(conn, tables[table], **values)

            actor = {"local": False, "created_at": now, "updated_at": now}
            ours = await insert(
                "actors",
                iri="https://here.test/groups/g",
                type="Group",
                handle="g",
                host="here.test",
                **{**actor, "local": True},
            )
            peer_iri = "https://peer.test/groups/p"
            peer = await insert("actors", iri=peer_iri, type="Group", handle="p", host="peer.test", **actor)
            note_iri = "https://peer.test/notes/1"
            await insert(
                "objects",
                iri=note_iri,
                local=False,
                type="Note",
                attributed_to_id=peer,
                visibility="public",
                document={},
                published=now,
                received_at=now,
            )
            await insert(
                "activities",
                iri="https://here.test/activities/1",
                actor_id=ours,
                type="Announce",
                object_iri=note_iri,
                visibility="public",
                document={},
                published=now,
            )
            received = {
                "signer_key_iri": f"{peer_iri}#main-key",
                "document": {},
                "received_at": now,
                "actor_iri": peer_iri,
                "state": "processed",
            }
            for iri, kind, target in (
                ("https://peer.test/c/1", "Create", note_iri),
                ("https://peer.test/a/1", "Announce", "https://peer.test/c/1"),
                ("https://peer.test/a/2", "Announce", "https://peer.test/notes/unknown"),
            ):
                await insert("inbox_activities", iri=iri, type=kind, object_iri=target, **received)
        await migrate.upgrade(engine)
        async with sessions() as session:
            relays = (await session.execute(select(Relay.announce_iri, Relay.object_iri))).all()
        assert sorted(relays) == [
            ("https://here.test/activities/1", "https://peer.test/notes/1"),
            ("https://peer.test/a/1", "https://peer.test/notes/1"),
        ]
    finally:
        await engine.dispose()


async def test_migration_0022_counts_the_followers_already_stored_per_shared_inbox(database_url: str) -> None:
    """Accepted follows by remote actors with a shared inbox, not deleted, are counted per
    (followed, shared inbox); pending follows, local, deleted and inbox-less followers are not."""
    engine = create_async_engine(database_url)
    try:
        await migrate.downgrade(engine, "0016")
        now = datetime(2026, 12, 1, tzinfo=UTC)
        async with engine.begin() as conn:
            tables = await conn.run_sync(lambda sync: _reflected(sync))

            async def insert(table: str, **values: object) -> int:
                return await _insert_row(conn, tables[table], **values)

            base = {"type": "Person", "created_at": now, "updated_at": now}
            group = await insert(
                "actors", iri="https://here.test/groups/g", handle="g", host="here.test", local=True, **base
            )
            followers = [
                ("a1", "accepted", "https://a.test/inbox", False, None),
                ("a2", "accepted", "https://a.test/inbox", False, None),
                ("b1", "accepted", "https://b.test/inbox", False, None),
                ("b2", "pending", "https://b.test/inbox", False, None),
                ("c1", "accepted", None, False, None),
                ("d1", "accepted", "https://d.test/inbox", False, now),
                ("here", "accepted", "https://here.test/inbox", True, None),
            ]
            for handle, state, shared, local, deleted in followers:
                actor = await insert(
                    "actors", iri=f"https://x.test/{handle}", handle=handle, host="x.test", local=local,
                    shared_inbox_iri=shared, deleted_at=deleted, **base,
                )  # fmt: skip
                await insert("follows", follower_id=actor, followed_id=group, state=state, created_at=now)
        await migrate.upgrade(engine)
        async with async_sessionmaker(engine)() as session:
            rows = (await session.execute(select(FollowerInbox.shared_inbox_iri, FollowerInbox.n))).all()
        assert sorted(rows) == [("https://a.test/inbox", 2), ("https://b.test/inbox", 1)]
    finally:
        await engine.dispose()


async def test_migration_0018_keeps_every_account_in_the_directory_and_bounds_invitation_uses(
    database_url: str,
) -> None:
    """Accounts created before 0018 stay listed in the member directory (the default, decision 59);
    an invitation can never be used more than its ``max_uses`` (decision 58), by the database itself."""

    from server.db.models import Account, Invitation

    engine = create_async_engine(database_url)
    try:
        await migrate.downgrade(engine, "0016")
        now = datetime(2026, 12, 1, tzinfo=UTC)
        async with engine.begin() as conn:
            tables = await conn.run_sync(lambda sync: _reflected(sync))
            assert "invitations" not in tables and "directory_opt_out" not in tables["accounts"].c
            values: dict[str, object] = {
                "iri": "https://here.test/users/ana",
                "type": "Person",
                "handle": "ana",
                "host": "here.test",
                "local": True,
                "created_at": now,
                "updated_at": now,
            }
            model = Base.metadata.tables["actors"]
            for column in tables["actors"].columns:  # the models' scalar defaults for the rest
                default = model.c[column.name].default if column.name in model.c else None
                if column.name not in values and default is not None and default.is_scalar:
                    values[column.name] = default.arg
            actors = tables["actors"]
            actor = await conn.execute(actors.insert().values(**values).returning(actors.c.id))
            ana = int(actor.scalar_one())
            await conn.execute(
                tables["accounts"]
                .insert()
                .values(actor_id=ana, password_hash="x", is_node_admin=False, created_at=now)
            )
        await migrate.upgrade(engine)
        sessions = async_sessionmaker(engine)
        async with sessions() as session:
            account = await session.get(Account, ana)
            assert account is not None and account.directory_opt_out is False
        row = {"token_hash": "0" * 64, "group_id": ana, "created_at": now, "expires_at": now, "max_uses": 1}
        async with sessions.begin() as session:
            session.add(Invitation(**row, uses=1))
        try:
            async with sessions.begin() as session:
                session.add(Invitation(**{**row, "token_hash": "1" * 64}, uses=2))
        except IntegrityError:
            pass
        else:
            raise AssertionError("an invitation used more than max_uses was stored")
    finally:
        await engine.dispose()


async def test_migration_0021_adds_the_drafts_table_and_removes_it(database_url: str) -> None:
    """Drafts are a table of their own (decision 65): added by 0021, dropped by its downgrade,
    with the states and kinds it accepts checked by the database."""
    engine = create_async_engine(database_url)
    try:
        await migrate.downgrade(engine, "0016")
        async with engine.connect() as conn:
            assert "drafts" not in await conn.run_sync(lambda sync: _reflected(sync))
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            drafts = (await conn.run_sync(lambda sync: _reflected(sync)))["drafts"]
        expected = {"group_id", "author_id", "kind", "fields", "state", "object_iri"}
        assert expected <= set(drafts.columns.keys())
        now = datetime(2026, 12, 7, tzinfo=UTC)
        async with engine.begin() as conn:
            tables = await conn.run_sync(lambda sync: _reflected(sync))
            values: dict[str, object] = {
                "iri": "https://here.test/groups/g", "type": "Group", "handle": "g", "host": "here.test",
                "local": True, "created_at": now, "updated_at": now,
            }  # fmt: skip
            for column in tables["actors"].columns:  # the models' scalar defaults for the rest
                default = Base.metadata.tables["actors"].c[column.name].default
                if column.name not in values and default is not None and default.is_scalar:
                    values[column.name] = default.arg
            actors = tables["actors"]
            inserted = await conn.execute(actors.insert().values(**values).returning(actors.c.id))
            actor_id = inserted.scalar_one()
            row = {"group_id": actor_id, "author_id": actor_id, "fields": {}, "created_at": now, "reason": ""}
            await conn.execute(drafts.insert().values(kind="alert", state="pending", **row))
        try:
            async with engine.begin() as conn:
                await conn.execute(drafts.insert().values(kind="post", state="pending", **row))
        except Exception as exc:  # the kind is checked by the database itself
            assert "ck_drafts_kind" in str(exc) or "CHECK" in str(exc).upper()
        else:
            raise AssertionError("a draft of an unknown kind was stored")
    finally:
        await engine.dispose()


async def _object_triggers(engine: AsyncEngine) -> list[str]:
    """The triggers on ``objects`` (0014's feed markers), by name, on either engine."""
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'objects'"
        if engine.dialect.name == "sqlite"
        else "SELECT tgname FROM pg_trigger WHERE tgrelid = 'objects'::regclass AND NOT tgisinternal"
    )
    async with engine.connect() as conn:
        names = sorted(str(n) for n in (await conn.execute(text(query))).scalars())
    assert names, "objects has no trigger"
    return names


async def test_migration_0017_adds_events_and_the_event_kind_and_goes_back(database_url: str) -> None:
    """Events and their participants are new tables; an ``event`` object is allowed from 0017 on,
    a negative capacity never is, and going back to 0016 turns events into generic content."""
    engine = create_async_engine(database_url)
    try:
        expected_triggers = await _object_triggers(engine)
        await migrate.downgrade(engine, "0016")
        await migrate.upgrade(engine, "0017")
        # SQLite rebuilds ``objects`` to change its check: the feed markers' triggers survive it.
        assert await _object_triggers(engine) == expected_triggers
        now = datetime(2026, 12, 1, tzinfo=UTC)
        async with engine.begin() as conn:
            tables = await conn.run_sync(lambda sync: _reflected(sync))
            assert {"events", "event_participants"} <= set(tables)
            actor_id = await _insert_row(
                conn,
                tables["actors"],
                iri="https://here.test/groups/g",
                type="Group",
                handle="g",
                host="here.test",
                local=True,
                created_at=now,
                updated_at=now,
            )
            object_id = await _insert_row(
                conn,
                tables["objects"],
                iri="https://here.test/objects/e",
                local=True,
                type="Event",
                kind="event",
                attributed_to_id=actor_id,
                visibility="public",
                document={},
                published=now,
                received_at=now,
            )
            values = {
                "object_id": object_id,
                "start_at": now,
                "timezone": "Europe/Paris",
                "join_mode": "restricted",
                "status": "confirmed",
                "sequence": 0,
            }
        bad = engine.begin()
        try:
            async with bad as conn:
                await conn.execute(tables["events"].insert().values(**values, capacity=-1))
            raise AssertionError("a negative capacity was stored")
        except IntegrityError:
            pass
        async with engine.begin() as conn:
            await conn.execute(tables["events"].insert().values(**values, capacity=20))
        await migrate.downgrade(engine, "0016")
        async with engine.connect() as conn:
            kinds = (await conn.execute(select(tables["objects"].c.kind))).scalars().all()
            remaining = await conn.run_sync(lambda sync: _reflected(sync))
        assert kinds == ["post"] and "events" not in remaining
        await migrate.upgrade(engine)
        assert await _object_triggers(engine) == expected_triggers
    finally:
        await engine.dispose()


async def test_migration_0025_adds_the_suspension_of_a_membership_and_removes_it(database_url: str) -> None:
    """A membership's suspension (decision 76): three nullable columns, added by 0025 and dropped by
    its downgrade, the memberships kept both ways."""
    engine = create_async_engine(database_url)
    suspension = {"suspended_at", "suspended_until", "suspension_reason"}
    try:
        now = datetime(2026, 12, 7, tzinfo=UTC)
        await migrate.downgrade(engine, "0017")
        async with engine.begin() as conn:
            tables = await conn.run_sync(lambda sync: _reflected(sync))
            assert not suspension & set(tables["memberships"].columns.keys())
            group = await _insert_row(
                conn, tables["actors"], iri="https://here.test/groups/g", type="Group", handle="g",
                host="here.test", local=True, created_at=now, updated_at=now,
            )  # fmt: skip
            person = await _insert_row(
                conn, tables["actors"], iri="https://here.test/users/p", type="Person", handle="p",
                host="here.test", local=True, created_at=now, updated_at=now,
            )  # fmt: skip
            await _insert_row(
                conn, tables["memberships"], group_id=group, member_id=person, role="member", state="active",
                created_at=now, updated_at=now,
            )  # fmt: skip
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            memberships = (await conn.run_sync(lambda sync: _reflected(sync)))["memberships"]
            assert suspension <= set(memberships.columns.keys())
            await conn.execute(
                memberships.update().values(suspended_at=now, suspended_until=now, suspension_reason="Pause")
            )
        await migrate.downgrade(engine, "0017")
        async with engine.connect() as conn:
            memberships = (await conn.run_sync(lambda sync: _reflected(sync)))["memberships"]
            assert (await conn.execute(select(memberships.c.state))).scalars().all() == ["active"]
    finally:
        await engine.dispose()
