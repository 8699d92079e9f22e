"""Audience and delivery rows for the fan-out and deliver jobs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import ColumnElement, Table, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import queue
from server.db.models import Actor, Block, Delivery, Follow, FollowerInbox, Membership
from server.db.queries import bare
from server.db.upsert import insert_for

DELIVERIES = cast(Table, Delivery.__table__)


async def remote_followers(
    session: AsyncSession, actor_id: int, *, after_id: int, limit: int
) -> Sequence[tuple[int, str, str | None, str | None]]:
    """Accepted remote followers, as (follow id, actor IRI, inbox, shared inbox), by follow id.

    Followers that told us they block ``actor_id`` are left out.
    """
    blocked = select(Block.blocker_id).where(Block.blocked_id == actor_id)
    stmt = (
        select(Follow.id, Actor.iri, Actor.inbox_iri, Actor.shared_inbox_iri)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(
            Follow.followed_id == actor_id,
            Follow.state == "accepted",
            Follow.id > after_id,
            Actor.local.is_(False),
            Actor.deleted_at.is_(None),
            Actor.id.not_in(blocked),
        )
        .order_by(Follow.id)
        .limit(limit)
    )
    return [(r[0], r[1], r[2], r[3]) for r in (await session.execute(stmt)).all()]


def _accepted_remote_followers(actor_id: int) -> tuple[ColumnElement[bool], ...]:
    """Follows of ``actor_id`` that are accepted, by remote actors not deleted (blocks aside)."""
    return (
        Follow.followed_id == actor_id,
        Follow.state == "accepted",
        Actor.local.is_(False),
        Actor.deleted_at.is_(None),
    )


def _followers_filter(actor_id: int) -> tuple[ColumnElement[bool], ...]:
    blocked = select(Block.blocker_id).where(Block.blocked_id == actor_id)
    return (*_accepted_remote_followers(actor_id), Actor.id.not_in(blocked))


def _has_shared_inbox() -> ColumnElement[bool]:
    return and_(Actor.shared_inbox_iri.is_not(None), Actor.shared_inbox_iri != "")


async def remote_follower_shared_inboxes(session: AsyncSession, actor_id: int) -> list[tuple[str, int]]:
    """The shared inboxes of ``actor_id``'s accepted remote followers, with how many each serves.

    Read from ``follower_inboxes`` (kept by triggers, decision 70): one row per shared inbox (a
    host, in practice), so planning a shared fan-out costs O(hosts) whatever the number of
    followers. Followers that told us they block ``actor_id`` are counted there too; they are
    few and are grouped here and subtracted.
    """
    counts = await session.execute(
        select(FollowerInbox.shared_inbox_iri, FollowerInbox.n)
        .where(FollowerInbox.followed_id == actor_id, FollowerInbox.n > 0)
        .order_by(FollowerInbox.shared_inbox_iri)
    )
    blockers = select(Block.blocker_id).where(Block.blocked_id == actor_id)
    blocking = await session.execute(
        select(Actor.shared_inbox_iri, func.count())
        .select_from(Follow)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(*_accepted_remote_followers(actor_id), _has_shared_inbox(), Actor.id.in_(blockers))
        .group_by(Actor.shared_inbox_iri)
    )
    blocked = {str(inbox): int(n) for inbox, n in blocking.all()}
    served = [(str(inbox), int(n) - blocked.get(str(inbox), 0)) for inbox, n in counts.all()]
    return [(inbox, n) for inbox, n in served if n > 0]


async def remote_followers_without_shared_inbox(
    session: AsyncSession, actor_id: int, *, after_id: int, limit: int
) -> Sequence[tuple[int, str, str | None, str | None]]:
    """Like :func:`remote_followers`, only those without a shared inbox (their own inbox is used)."""
    stmt = (
        select(Follow.id, Actor.iri, Actor.inbox_iri, Actor.shared_inbox_iri)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(*_followers_filter(actor_id), Follow.id > after_id, ~_has_shared_inbox())
        .order_by(Follow.id)
        .limit(limit)
    )
    return [(r[0], r[1], r[2], r[3]) for r in (await session.execute(stmt)).all()]


async def remote_members(
    session: AsyncSession, group_id: int, *, after_id: int, limit: int
) -> Sequence[tuple[int, str, str | None, str | None]]:
    """Active remote members of a group, as (membership id, actor IRI, inbox, shared inbox)."""
    stmt = (
        select(Membership.id, Actor.iri, Actor.inbox_iri, Actor.shared_inbox_iri)
        .join(Actor, Actor.id == Membership.member_id)
        .where(
            Membership.group_id == group_id,
            Membership.state == "active",
            Membership.id > after_id,
            Actor.local.is_(False),
            Actor.deleted_at.is_(None),
        )
        .order_by(Membership.id)
        .limit(limit)
    )
    return [(r[0], r[1], r[2], r[3]) for r in (await session.execute(stmt)).all()]


async def remote_actors_by_iri(
    session: AsyncSession, iris: Sequence[str], *, sender_id: int
) -> Sequence[tuple[str, str | None, str | None]]:
    """Known remote actors among ``iris`` (explicitly addressed), minus those blocking the sender."""
    if not iris:
        return []
    blocked = select(Block.blocker_id).where(Block.blocked_id == sender_id)
    stmt = select(Actor.iri, Actor.inbox_iri, Actor.shared_inbox_iri).where(
        Actor.iri.in_(iris), Actor.local.is_(False), Actor.deleted_at.is_(None), Actor.id.not_in(blocked)
    )
    return [(r[0], r[1], r[2]) for r in (await session.execute(stmt)).all()]


async def known_addressees(session: AsyncSession, iris: Sequence[str]) -> set[str]:
    """Those of ``iris`` that are a stored actor or a stored actor's followers collection."""
    if not iris:
        return set()
    stmt = select(Actor.iri, Actor.followers_iri).where(
        or_(Actor.iri.in_(iris), Actor.followers_iri.in_(iris))
    )
    wanted = set(iris)
    return {iri for row in (await session.execute(stmt)).all() for iri in row if iri in wanted}


async def insert_deliveries(
    session: AsyncSession, activity_id: int, targets: Sequence[tuple[str, str]], *, now: object
) -> list[int]:
    """Insert one pending delivery per (inbox, host); returns the ids of rows that were new.

    ``ON CONFLICT DO NOTHING`` on the unique (activity, inbox) makes a re-run of an interrupted
    fan-out neither duplicate nor lose deliveries.
    """
    if not targets:
        return []
    rows = [
        {
            "activity_id": activity_id,
            "inbox_iri": inbox,
            "host": host,
            "state": "pending",
            "attempts": 0,
            "created_at": now,
        }
        for inbox, host in targets
    ]
    # One statement shape whatever the number of rows (executemany through SQLAlchemy's
    # "insertmanyvalues"): compiled once and cached instead of once per fan-out page.
    stmt = (
        insert_for(session, DELIVERIES)
        .on_conflict_do_nothing(index_elements=["activity_id", "inbox_iri"])
        .returning(Delivery.id)
    )
    return [row[0] for row in (await session.execute(stmt, rows)).all()]


_PLAN_DELIVERY_ROW = "(?, ?, ?, 'pending', 0, ?)"
_PLAN_JOB_SQLITE = (
    "INSERT INTO jobs (kind, payload, dedup_key, priority, state, attempts, max_attempts, run_at,"
    " created_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING"
)


async def plan_deliveries(
    session: AsyncSession,
    activity_id: int,
    targets: Sequence[tuple[str, str]],
    *,
    kind: str,
    priority: int,
    max_attempts: int,
    now: datetime,
) -> list[int]:
    """:func:`insert_deliveries`, then one ``kind`` job per new row (payload ``delivery_id``, dedup
    key ``deliver:<id>``), and the commit: a fan-out page (decision 108). Returns the new rows' ids.

    On SQLite the whole page is one hand-off to aiosqlite's thread that commits: through the ORM
    it was several (the rows, their jobs, the commit), and the write lock stayed held while the
    event loop ran whatever was ready between them (in ``serve``, the deliveries its lane signs), so
    a worker process's records and claims waited up to seconds on ``busy_timeout`` while a fan-out
    was planned. On PostgreSQL, through the ORM as before (row locks only); the session commits.
    """
    if not targets:
        return []
    if bare.on_postgresql(session):
        ids = await insert_deliveries(session, activity_id, targets, now=now)
        jobs = [
            queue.NewJob(
                kind,
                {"delivery_id": i},
                dedup_key=f"deliver:{i}",
                priority=priority,
                max_attempts=max_attempts,
            )
            for i in ids
        ]
        await queue.enqueue_many(session, jobs, now=now)
        return ids
    stamp = bare.sqlite_stamp(now)
    rows_sql = (
        "INSERT INTO deliveries (activity_id, inbox_iri, host, state, attempts, created_at) VALUES "
        + ", ".join([_PLAN_DELIVERY_ROW] * len(targets))
        + " ON CONFLICT (activity_id, inbox_iri) DO NOTHING RETURNING id"
    )
    rows_params = [value for inbox, host in targets for value in (activity_id, inbox, host, stamp)]

    def plan(db: sqlite3.Connection) -> list[int]:
        ids = sorted(int(row[0]) for row in db.execute(rows_sql, rows_params).fetchall())
        db.executemany(
            _PLAN_JOB_SQLITE,
            [
                (kind, f'{{"delivery_id":{i}}}', f"deliver:{i}", priority, max_attempts, stamp, stamp)
                for i in ids
            ],
        )
        return ids

    return await bare.in_sqlite_thread(session, plan, commit=True)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """What a delivery attempt needs of its row (and the values it leaves unchanged)."""

    id: int
    activity_id: int
    inbox_iri: str
    host: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HostRow:
    """A ``peer_hosts`` row as a delivery batch reads it: the host's health and signature spec."""

    host: str
    breaker: str
    recent_failures: int
    window_started_at: datetime | None
    open_until: datetime | None
    failing_days: int
    last_failure_day: str | None
    unavailable: bool
    signature_spec: str | None


def _maybe_utc(value: Any) -> datetime | None:
    return None if value is None else bare.utc(value)


async def batch_rows(
    session: bare.Source, ids: Collection[int]
) -> tuple[dict[int, DeliveryRow], dict[str, HostRow]]:
    """The delivery rows among ``ids`` and the health rows of their hosts that exist, in one
    statement through the bare driver (decision 106): a ``LEFT JOIN`` of ``peer_hosts``, the
    host's columns repeated on each of its deliveries. Only the hosts of pending rows are kept."""
    if not ids:
        return {}, {}
    among, params = bare.any_of(session, "d.id", sorted(set(ids)))  # type: ignore[arg-type]
    sql = (
        "SELECT d.id, d.activity_id, d.inbox_iri, d.host, d.state, d.attempts, d.last_status, d.last_error,"
        " d.created_at, h.host, h.breaker, h.recent_failures, h.window_started_at, h.open_until,"
        " h.failing_days, h.last_failure_day, h.unavailable, h.signature_spec"
        f" FROM deliveries AS d LEFT JOIN peer_hosts AS h ON h.host = d.host WHERE {among}"
    )
    rows: dict[int, DeliveryRow] = {}
    hosts: dict[str, HostRow] = {}
    for r in await bare.fetch(session, sql, params):
        row = DeliveryRow(int(r[0]), int(r[1]), r[2], r[3], r[4], int(r[5]), r[6], r[7], bare.utc(r[8]))
        rows[row.id] = row
        if r[9] is not None and row.state == "pending" and r[9] not in hosts:
            opened, until = _maybe_utc(r[12]), _maybe_utc(r[13])
            failing, unavailable = int(r[14]), bool(r[16])
            hosts[r[9]] = HostRow(r[9], r[10], int(r[11]), opened, until, failing, r[15], unavailable, r[17])
    return rows, hosts


async def activities_with_senders(
    session: bare.Source, activity_ids: Collection[int]
) -> list[tuple[int, dict[str, Any], int, str]]:
    """(activity id, document, sender id, sender IRI) of each of ``activity_ids`` that exists, in
    one statement through the bare driver; the document decoded as the ORM's JSON type does
    (``json.loads``: ``orjson`` would turn an integer beyond 64 bits into a float)."""
    if not activity_ids:
        return []
    among, params = bare.any_of(session, "a.id", sorted(set(activity_ids)))  # type: ignore[arg-type]
    sql = (
        "SELECT a.id, a.document, s.id, s.iri FROM activities AS a JOIN actors AS s ON s.id = a.actor_id"
        f" WHERE {among} ORDER BY a.id"
    )
    return [
        (int(a), json.loads(doc) if isinstance(doc, str | bytes) else doc, int(sender), str(iri))
        for a, doc, sender, iri in await bare.fetch(session, sql, params)
    ]


_RECORD_SQLITE = """UPDATE deliveries SET state = json_extract(v.value, '$[1]'),
 attempts = json_extract(v.value, '$[2]'), last_status = json_extract(v.value, '$[3]'),
 last_error = json_extract(v.value, '$[4]'), delivered_at = json_extract(v.value, '$[5]')
 FROM json_each(?) AS v
 WHERE deliveries.id = json_extract(v.value, '$[0]') AND deliveries.state = 'pending'"""

_RECORD_POSTGRESQL = """UPDATE deliveries AS d SET state = v.state, attempts = v.attempts,
 last_status = v.last_status, last_error = v.last_error, delivered_at = v.delivered_at
 FROM unnest(?::bigint[], ?::text[], ?::int[], ?::int[], ?::text[], ?::timestamptz[])
      AS v(id, state, attempts, last_status, last_error, delivered_at)
 WHERE d.id = v.id AND d.state = 'pending'"""


def record_deliveries_later(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """The outcome of many attempts, one statement left with ``bare.later`` for the completion of
    the batch's jobs (decision 106); only rows still pending change. Each mapping has ``b_id``,
    ``state``, ``attempts``, ``last_status``, ``last_error`` and ``delivered_at`` (the caller
    copies the values that do not change). It was an executemany through SQLAlchemy; the rows
    are now one JSON document (SQLite, ``json_each``) or one array per column (PostgreSQL,
    ``unnest``), so the statement's text never varies with their number."""
    if not rows:
        return
    columns = [
        [r["b_id"] for r in rows],
        [r["state"] for r in rows],
        [r["attempts"] for r in rows],
        [r["last_status"] for r in rows],
        [r["last_error"] for r in rows],
        [r["delivered_at"] for r in rows],
    ]
    if bare.on_postgresql(session):
        bare.later(session, _RECORD_POSTGRESQL, columns)
        return
    stamped = [bare.sqlite_stamp(d) if isinstance(d, datetime) else None for d in columns[5]]
    document = orjson.dumps([list(values) for values in zip(*columns[:5], stamped, strict=True)]).decode()
    bare.later(session, _RECORD_SQLITE, [document])


_HEALTHY_HOSTS = """INSERT INTO peer_hosts (host, breaker, recent_failures, window_started_at, open_until,
 failing_days, last_failure_day, unavailable, last_success_at, updated_at, signature_spec)
 SELECT {host}, 'closed', 0, {null_ts}, {null_ts}, 0, {null_text}, {false}, {ts}, {ts}, {spec}
 FROM {rows} WHERE TRUE
 ON CONFLICT (host) DO UPDATE SET breaker = excluded.breaker, recent_failures = excluded.recent_failures,
 window_started_at = excluded.window_started_at, open_until = excluded.open_until,
 failing_days = excluded.failing_days, last_failure_day = excluded.last_failure_day,
 unavailable = excluded.unavailable, last_success_at = excluded.last_success_at,
 updated_at = excluded.updated_at,
 signature_spec = COALESCE(excluded.signature_spec, peer_hosts.signature_spec)"""

_HEALTHY_POSTGRESQL = _HEALTHY_HOSTS.format(
    host="v.h",
    null_ts="NULL::timestamptz",
    null_text="NULL::text",
    false="FALSE",
    ts="?::timestamptz",
    spec="v.s",
    rows="unnest(?::text[], ?::text[]) AS v(h, s)",
)

_HEALTHY_SQLITE = _HEALTHY_HOSTS.format(  # WHERE TRUE: SQLite's parser needs it before ON CONFLICT
    host="json_extract(value, '$[0]')",
    null_ts="NULL",
    null_text="NULL",
    false="0",
    ts="?",
    spec="json_extract(value, '$[1]')",
    rows="json_each(?)",
)


def reset_hosts_later(session: AsyncSession, specs: Mapping[str, str | None], *, now: datetime) -> None:
    """Hosts that just answered with a success, left with ``bare.later`` (decision 106): health
    reset (``circuit.record_success``), last success now, and the signature spec that worked
    when known (else the one stored is kept); a host without a row gets one. One statement whose
    text does not vary with the number of hosts."""
    if not specs:
        return
    hosts = sorted(specs)
    if bare.on_postgresql(session):
        bare.later(session, _HEALTHY_POSTGRESQL, [now, now, hosts, [specs[h] for h in hosts]])
        return
    bare.later(session, _HEALTHY_SQLITE, [now, now, orjson.dumps([[h, specs[h]] for h in hosts]).decode()])


async def deactivate_followers_at_inbox(session: AsyncSession, followed_id: int, inbox: str) -> int:
    """An inbox answered 404/410: followers whose personal inbox it is stop receiving."""
    followers = select(Actor.id).where(Actor.inbox_iri == inbox, Actor.local.is_(False))
    result = await session.execute(
        update(Follow)
        .where(and_(Follow.followed_id == followed_id, Follow.follower_id.in_(followers)))
        .values(state="rejected")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
