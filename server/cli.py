"""The ``entraide`` command line (also ``python -m server``). Every command has ``--help``.

Exit codes: 0 success, 1 a clear error (printed as one line on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from federation.errors import FederationError, UnsafeAddress
from federation.fetch import FetchForbidden
from federation.types import utc_now
from federation.uris import UriScheme
from federation.vocab.entraide import AlertCategory, Eligibility, Severity
from server import __version__
from server.config import (
    CONFIG_ENV,
    CONFIG_FILE_NAME,
    DEFAULTS,
    SQLITE_FILE_NAME,
    ConfigError,
    Settings,
    build_settings,
    load_settings,
    render_toml,
)
from server.db import migrate as migrations
from server.db.engine import DatabaseUnavailable, check_connection, create_engine, create_sessionmaker
from server.eventloop import loop_factory
from server.eventloop import run as run_on_loop
from server.files import make_private_dir, make_private_file, write_private_file
from server.logging import setup_logging
from server.services.actors import local as actor_service
from server.services.actors.keys import SecretKeyError, create_secret_file, load_vault
from server.services.audit import channel_scope as audit_channel
from server.services.errors import ServiceError
from server.services.moderation import blocks

if TYPE_CHECKING:
    from server.services.context import NodeContext

log = logging.getLogger("entraide")


class CommandError(Exception):
    """A failure to report as one line, exit code 1."""


def _out(message: str) -> None:
    print(message, flush=True)


def _progress(message: str) -> None:
    print(f"• {message}", file=sys.stderr, flush=True)


# --- shared plumbing ---------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


async def _open_database(settings: Settings, *, require_head: bool = True) -> AsyncEngine:
    engine = create_engine(settings.database)
    try:
        await check_connection(engine)
        if require_head:
            current, head = await migrations.current_revision(engine), migrations.head_revision()
            if current != head:
                raise CommandError(
                    f"the database schema is at {current or 'nothing'}, this version needs {head}: "
                    f"run `entraide migrate --config {settings.source or 'FILE'}`"
                )
    except BaseException:
        await engine.dispose()
        raise
    return engine


@asynccontextmanager
async def _node(settings: Settings) -> AsyncIterator[NodeContext]:
    """The node's context (as ``serve`` builds it) over a checked database, closed on the way out.

    Every command that acts through a service opens the node this way; deliveries it queues are
    sent by a running ``serve`` or ``worker``.
    """
    from server.jobs.runner import build_node_context

    engine = await _open_database(settings)
    try:
        yield build_node_context(settings, engine)
    finally:
        await engine.dispose()


async def _with_session(settings: Settings, work: Callable[[Any, UriScheme], Awaitable[int]]) -> int:
    engine = await _open_database(settings)
    try:
        sessions = create_sessionmaker(engine)
        async with sessions.begin() as session:
            return await work(session, UriScheme(settings.server.origin))
    finally:
        await engine.dispose()


# --- init ----------------------------------------------------------------------------------------


def _cmd_init(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).expanduser().resolve()
    config_file = data_dir / CONFIG_FILE_NAME
    database_url = args.database or f"sqlite+aiosqlite:///{SQLITE_FILE_NAME}"
    if config_file.exists():
        settings = load_settings(config_file)
        if settings.server.origin != args.origin.rstrip("/"):
            raise CommandError(
                f"{config_file} already exists with origin {settings.server.origin}; the origin is permanent "
                "(every actor IRI is minted under it) and init never changes it"
            )
        _progress(f"configuration {config_file} exists, kept as it is")
    else:
        doc: dict[str, dict[str, Any]] = {
            # Listen on the origin's explicit port (a loopback node); behind a proxy, on the default.
            "server": {
                "origin": args.origin.rstrip("/"),
                "host": DEFAULTS["server"]["host"],
                "port": urlsplit(args.origin).port or DEFAULTS["server"]["port"],
            },
            "database": {"url": database_url},
            "storage": {"data_dir": ".", "secret_key_file": DEFAULTS["storage"]["secret_key_file"]},
            "federation": {
                "allow_private_addresses": bool(args.allow_private_addresses),
                "authorized_fetch": False,
                "network": "open",
                "blocked_domains": [],
            },
            "logging": {"level": "info", "format": "text"},
        }
        settings = build_settings(doc, base_dir=data_dir, source=config_file)  # validate before writing
        make_private_dir(data_dir)
        write_private_file(
            config_file, "# Entraide node configuration, written by `entraide init`.\n" + render_toml(doc)
        )
        _progress(f"wrote {config_file} (mode 0600)")
    make_private_dir(data_dir)
    if create_secret_file(settings.storage.secret_key_file):
        _progress(f"created the node secret {settings.storage.secret_key_file} (mode 0600; back it up)")
    return asyncio.run(_init_database(settings, args.node_name))


async def _init_database(settings: Settings, node_name: str | None) -> int:
    engine = await _open_database(settings, require_head=False)
    try:
        before, after = await migrations.upgrade(engine)
        _progress(
            f"database {settings.database.redacted_url()}: "
            + (f"migrated {before or 'empty'} → {after}" if before != after else f"already at {after}")
        )
        vault = load_vault(settings.storage.secret_key_file)
        uris = UriScheme(settings.server.origin)
        async with create_sessionmaker(engine).begin() as session:
            actor, created = await actor_service.ensure_application_actor(
                session, uris, vault, node_name=node_name or uris.host, now=utc_now()
            )
            # The configuration's network, allowlist and blocked domains become the stored policy
            # now, not at the first command that opens the federation (decision 62).
            await blocks.seed_from_config(session, settings.federation, now=utc_now())
        _progress(("created" if created else "kept") + f" the node's Application actor {actor.iri}")
    finally:
        await engine.dispose()
    _out(str(settings.source))
    return 0


# --- serve ---------------------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    from server.app import create_app  # the web layer is only imported by the commands that serve
    from server.http.serving import serve

    settings = _settings(args)
    setup_logging(settings.logging)
    loop_name, _ = loop_factory(settings.server.event_loop)  # refuse a loop that cannot run, first
    make_private_dir(settings.storage.data_dir)

    async def preflight() -> None:
        engine = await _open_database(settings)
        await engine.dispose()
        load_vault(settings.storage.secret_key_file)

    asyncio.run(preflight())
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    app = create_app(settings)
    log.info(
        "serving",
        extra={
            "origin": settings.server.origin,
            "listen": f"{host}:{port}",
            "version": __version__,
            "event_loop": loop_name,
        },
    )
    run_on_loop(
        serve(
            app,
            host=host,
            port=port,
            access_log=logging.getLogger("aiohttp.access") if settings.logging.access_log else None,
            on_ready=lambda: _progress(
                f"Entraide {__version__} serving {settings.server.origin} on http://{host}:{port}"
                " (Ctrl-C or SIGTERM to stop)"
            ),
        ),
        settings.server.event_loop,
    )
    return 0


# --- worker, follow, deliveries ------------------------------------------------------------------


def _cmd_worker(args: argparse.Namespace) -> int:
    from server.jobs.runner import run_worker_process

    settings = _settings(args)
    setup_logging(settings.logging)

    async def run() -> None:
        engine = await _open_database(settings)
        await engine.dispose()
        _progress(f"Entraide {__version__} worker for {settings.server.origin} (SIGTERM to stop)")
        await run_worker_process(settings)

    run_on_loop(run(), settings.server.event_loop)
    return 0


def _follow_refused(target: str, exc: FederationError) -> str:
    """One line saying why following ``target`` failed, and what to do when there is something to do."""
    if isinstance(exc, UnsafeAddress):
        return (
            f"cannot follow {target}: {exc.detail}; private, loopback and link-local addresses are refused"
            " unless federation.allow_private_addresses is true in the settings (for nodes on one machine"
            " or a private network)"
        )
    if isinstance(exc, FetchForbidden):
        return (
            f"cannot follow {target}: {exc.detail} (the peer refused our signed request: a peer that"
            " checks signatures fetches this node's key, so this node must be serving at its origin)"
        )
    return f"cannot follow {target}: {exc.detail} ({exc.code})"


def _cmd_follow(args: argparse.Namespace) -> int:
    from server.services.actors.remote import lookup_account
    from server.services.federation import open_federation
    from server.services.membership import following

    settings = _settings(args)

    async def run() -> int:
        try:
            async with _node(settings) as node, open_federation(node) as fed:
                target = args.target
                if not target.startswith(("http://", "https://")):
                    host = target.lstrip("@").rpartition("@")[2].split(":")[0]
                    loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
                    _progress(f"looking up {target} with WebFinger")
                    insecure = settings.federation.allow_private_addresses and loopback
                    found = await lookup_account(
                        node,
                        fed.transport,
                        target,
                        policy=fed.policy,
                        actor_type={"group": "Group", "person": "Person"}.get(args.type),
                        allow_http=insecure,
                        scheme="http" if insecure else "https",
                    )
                    target = found.iri
                result = await following.follow(fed, local_name=args.as_name, target_iri=target)
        except FederationError as exc:
            raise CommandError(_follow_refused(args.target, exc)) from None
        _out(result.follow_iri)
        _progress(
            f"{args.as_name} → {result.target}: {result.state}"
            + (
                " (the Follow is queued; a running serve or worker delivers it)"
                if result.state == "pending"
                else ""
            )
        )
        return 0

    return asyncio.run(run())


def _cmd_deliveries_status(args: argparse.Namespace) -> int:
    from server.db import queue
    from server.services.delivery.fanout import delivery_status

    settings = _settings(args)

    async def run() -> int:
        engine = await _open_database(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                rows = await delivery_status(session, limit=args.limit)
                stats = await queue.stats(session, now=utc_now())
        finally:
            await engine.dispose()
        if args.json:
            _out(
                json.dumps(
                    {"activities": rows, "jobs": {f"{k}:{s}": n for (k, s), n in stats.counts.items()}},
                    default=str,
                )
            )
            return 0
        states = ("pending", "delivered", "failed", "gone", "rejected")
        _out(f"{'activity':<70} {'type':<10} " + " ".join(f"{s:>9}" for s in states))
        for row in rows:
            _out(
                f"{row['activity'][:70]:<70} {row['type']:<10} "
                + " ".join(f"{row.get(s, 0):>9}" for s in states)
            )
        _out("jobs: " + (", ".join(f"{k} {s} {n}" for (k, s), n in sorted(stats.counts.items())) or "none"))
        return 0

    return asyncio.run(run())


# --- migrate, config check -------------------------------------------------------------------------


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def run() -> int:
        engine = await _open_database(settings, require_head=False)
        try:
            before, after = await migrations.upgrade(engine, args.revision)
        finally:
            await engine.dispose()
        _out(f"migrated {before or 'empty'} → {after}" if before != after else f"already at {after}")
        return 0

    return asyncio.run(run())


def _cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    problems: list[str] = []
    try:
        load_vault(settings.storage.secret_key_file)
    except SecretKeyError as exc:
        problems.append(str(exc))
    if not args.offline:

        async def probe() -> None:
            engine = await _open_database(settings, require_head=True)
            await engine.dispose()

        try:
            asyncio.run(probe())
        except (DatabaseUnavailable, CommandError) as exc:
            problems.append(str(exc))
    if args.show:
        _out(render_toml(settings.as_document(redact=True)))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    _out(f"{settings.source}: configuration is valid")
    return 0


# --- backup, restore ------------------------------------------------------------------------------


def _cmd_backup(args: argparse.Namespace) -> int:
    from server.backup import BackupError, create_backup

    settings = _settings(args)
    try:
        manifest = asyncio.run(
            create_backup(settings, Path(args.to), pg_dump=None if args.no_pg_dump else "auto")
        )
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    rows = sum(manifest.row_counts.values())
    _out(f"backed up {settings.server.origin} ({rows} rows, {manifest.database}) to {args.to}")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from server.backup import BackupError, restore_backup

    data_dir = Path(args.data_dir)
    try:
        manifest = asyncio.run(restore_backup(Path(args.file), data_dir, database_url=args.database_url))
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    rows = sum(manifest.row_counts.values())
    _out(
        f"restored {manifest.origin} ({rows} rows, taken {manifest.created_at}) into {data_dir}; "
        f"next: entraide migrate --config {data_dir / CONFIG_FILE_NAME}"
    )
    return 0


# --- associations, members, tokens ---------------------------------------------------------------


def _cmd_association_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    vault = load_vault(settings.storage.secret_key_file)

    async def work(session: Any, uris: UriScheme) -> int:
        result = await actor_service.create_association(
            session, uris, vault, handle=args.slug, name=args.name, summary=args.summary or "", now=utc_now()
        )
        _out(result.actor.iri)
        _progress(("created" if result.created else "already exists:") + f" @{args.slug}@{uris.host}")
        return 0

    return asyncio.run(_with_session(settings, work))


def _cmd_association_delete(args: argparse.Namespace) -> int:
    """Delete an association for good, as the operator (decision 97)."""
    from server.services.actors import dissolution
    from server.services.federation import open_federation

    settings = _settings(args)

    async def run() -> int:
        async with _node(settings) as node:
            async with open_federation(node) as fed:
                try:
                    if not args.yes:
                        plan = await dissolution.plan(fed, args.slug)
                        raise CommandError(
                            f"this deletes @{args.slug} for good: {plan.objects} objects become tombstones "
                            f"(a Delete goes to every server that holds them), {plan.members} memberships "
                            f"and {plan.followers} follows end, and the handle is never given again; "
                            "run again with --yes to confirm"
                        )
                    result = await dissolution.delete_association(fed, args.slug, reason=args.reason)
                except ServiceError as exc:
                    raise _service_refused(exc, {"slug": "SLUG"}) from None
        _out(result.actor_iri)
        _progress(
            f"deleted @{args.slug}: {result.objects} objects tombstoned, {result.members} memberships ended, "
            f"Delete queued for {result.recipients} remote actors (a running serve or worker delivers it)"
        )
        return 0

    return asyncio.run(run())


ASSOCIATION_OPTIONS = {
    "join_policy": "--join-policy",
    "replies_policy": "--replies",
    "members_visibility": "--members-list",
    "name": "--name",
    "summary": "--summary",
    "language": "--language",
    "slug": "SLUG",
}


def _cmd_association_set(args: argparse.Namespace) -> int:
    settings = _settings(args)
    changes = {
        name: value
        for name, value in (
            ("join_policy", args.join_policy),
            ("replies_policy", args.replies),
            ("members_visibility", args.members_list),
            ("name", args.name),
            ("summary", args.summary),
            ("language", args.language),
        )
        if value is not None
    }

    async def work(session: Any, uris: UriScheme) -> int:
        by = None
        if args.by is not None:
            by = await _manager_of(
                session, await _association_of(session, args.slug, "SLUG"), args.by, roles=("admin",)
            )
        try:
            edited = await actor_service.edit_association(
                session, uris, handle=args.slug, changes=changes, by=by, now=utc_now()
            )
        except ServiceError as exc:
            raise _service_refused(exc, ASSOCIATION_OPTIONS) from None
        group = edited.group
        for name in actor_service.ASSOCIATION_SETTINGS:
            _out(f"{name} = {getattr(group, name)}")
        for name in actor_service.PROFILE_FIELDS:
            _out(f"{name} = {getattr(group, name) or ''}")
        _progress(
            f"@{args.slug}: "
            + (", ".join(f"{k} → {v[1]}" for k, v in edited.changed.items()) or "unchanged")
            + ("; Update sent to its followers (queued)" if edited.update_iri else "")
        )
        return 0

    return asyncio.run(_with_session(settings, work))


def _cmd_member_set(args: argparse.Namespace) -> int:
    """Show or change a member's own profile and settings; a change sends ``Update{Person}``."""
    from server.db.queries import actors as actor_queries
    from server.services.accounts import erasure as accounts
    from server.services.federation import open_federation

    settings = _settings(args)
    choice = None if args.discoverable is None else args.discoverable == "yes"
    by_hand = None if args.approve_followers is None else args.approve_followers == "yes"
    summary = _read_body(args.summary_file) if args.summary_file is not None else args.summary
    node_admin = getattr(args, "node_admin", None)

    async def run() -> int:
        async with _node(settings) as node:
            async with node.sessions() as session:
                person = await actor_queries.local_by_handle(session, "Person", args.username)
            if person is None:
                raise CommandError(f"no account {args.username!r} on this node")
            async with open_federation(node) as fed:
                try:
                    result = await accounts.update_profile(
                        fed,
                        person.id,
                        name=args.name,
                        summary=summary,
                        discoverable=choice,
                        manually_approves_followers=by_hand,
                    )
                except ServiceError as exc:
                    field = exc.context.get("field")
                    raise CommandError(f"--{field}: {exc.detail}" if field else exc.detail) from None
            if node_admin is not None:
                async with node.sessions.begin() as session:
                    await actor_service.set_node_admin(
                        session, username=args.username, node_admin=node_admin == "yes", now=utc_now()
                    )
        actor = result.actor
        _out(f"discoverable = {'yes' if actor.discoverable else 'no'}")
        _out(f"approve_followers = {'yes' if actor.manually_approves_followers else 'no'}")
        _out(f"name = {actor.name}")
        if node_admin is not None:
            _out(f"node_admin = {node_admin}")
        if result.changed:
            _progress("changed; an Update of the profile is queued: a running serve or worker delivers it")
        return 0

    return asyncio.run(run())


def _cmd_member_delete(args: argparse.Namespace) -> int:
    """Delete a member's account for good (GDPR art. 17), as the operator."""
    from server.db.queries import actors as actor_queries
    from server.services.accounts import erasure as accounts
    from server.services.federation import open_federation

    if not args.yes:
        raise CommandError(
            f"this deletes {args.username!r} and all their content for good; run again with --yes to confirm"
        )
    settings = _settings(args)

    async def run() -> int:
        async with _node(settings) as node:
            async with node.sessions() as session:
                person = await actor_queries.local_by_handle(session, "Person", args.username)
            if person is None:
                raise CommandError(f"no account {args.username!r} on this node")
            async with open_federation(node) as fed:
                result = await accounts.delete_account(fed, person.id, reason="cli")
        _out(result.actor_iri)
        _progress(
            f"deleted {args.username}: {result.objects} objects tombstoned, {result.votes_withdrawn} open "
            f"votes withdrawn, Delete queued for {result.recipients} remote actors "
            "(a running serve or worker delivers it)"
        )
        return 0

    return asyncio.run(run())


def _cmd_member_export(args: argparse.Namespace) -> int:
    """Write a member's archive (the web page's zip) to a file, never over an existing one."""
    from server.db.queries import actors as actor_queries
    from server.services.accounts import export as export_service

    settings = _settings(args)
    target = Path(args.output).expanduser()
    if target.exists() and not args.force:
        raise CommandError(f"--output: {target} exists (add --force to replace it)")
    if not target.parent.is_dir():
        raise CommandError(f"--output: the directory {target.parent} does not exist")

    async def work(session: Any, uris: UriScheme) -> int:
        person = await actor_queries.local_by_handle(session, "Person", args.username)
        if person is None:
            raise CommandError(f"no account {args.username!r} on this node")
        data = await export_service.archive(session, uris, person, now=utc_now(), progress=_progress)
        make_private_file(target)
        target.write_bytes(data)
        _out(str(target))
        _progress(f"archive of {args.username} written ({len(data)} bytes)")
        return 0

    return asyncio.run(_with_session(settings, work))


def _cmd_member_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    vault = load_vault(settings.storage.secret_key_file)
    password: str | None = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("--password-stdin given but standard input had no password")

    async def work(session: Any, uris: UriScheme) -> int:
        result = await actor_service.add_member(
            session,
            uris,
            vault,
            username=args.username,
            association=args.association,
            role=args.role,
            password=password,
            now=utc_now(),
        )
        _out(result.person.iri)
        if result.password:
            _out(f"password: {result.password}")
        what = "added" if result.role_changed else "unchanged:"
        _progress(f"{what} {args.username} is {args.role} of {args.association}")
        return 0

    return asyncio.run(_with_session(settings, work))


def _cmd_member_decide(args: argparse.Namespace) -> int:
    """Answer a request to join (approve, refuse) or remove a member, as an admin or moderator."""
    from sqlalchemy import select

    from server.db.models import Actor, Membership
    from server.db.queries import actors as actor_queries
    from server.services.errors import ServiceError
    from server.services.federation import open_federation
    from server.services.membership import members as membership

    settings = _settings(args)

    async def run() -> int:
        async with _node(settings) as node:
            async with open_federation(node) as fed, node.sessions() as session:
                group = await actor_queries.local_by_handle(session, "Group", args.association)
                if group is None:
                    raise CommandError(f"--association: no association {args.association!r} on this node")
                stmt = (
                    select(Actor)
                    .join(Membership, Membership.member_id == Actor.id)
                    .where(
                        Membership.group_id == group.id,
                        Membership.state == "active",
                        Membership.role.in_(("admin", "moderator")),
                    )
                )
                if args.by is not None:
                    stmt = stmt.where(Actor.local.is_(True), Actor.handle == args.by)
                by = await session.scalar(stmt.order_by(Membership.id).limit(1))
                if by is None:
                    who = args.by or "anyone"
                    raise CommandError(f"--by: {who} is not an admin or moderator of {args.association}")
                try:
                    # A local username, a handle @user@host or an actor IRI (issue 17).
                    member_iri = (await membership.resolve_member(session, node.uris, args.actor)).iri
                    if args.member_command == "remove":
                        await membership.remove(fed, group, member_iri, by=by)
                    else:
                        await membership.decide(
                            fed,
                            group,
                            member_iri,
                            by=by,
                            approve=args.member_command == "approve",
                            reason=getattr(args, "reason", None),
                        )
                except ServiceError as exc:
                    raise CommandError(f"{args.actor}: {exc}") from None
        _progress(f"{args.member_command}: {args.actor} in {args.association} (by {by.handle})")
        return 0

    return asyncio.run(run())


def _cmd_member_pending(args: argparse.Namespace) -> int:
    """List the actors waiting for approval, one IRI per line."""
    from sqlalchemy import select

    from server.db.models import Actor, Membership
    from server.db.queries import actors as actor_queries

    settings = _settings(args)

    async def work(session: Any, uris: UriScheme) -> int:
        group = await actor_queries.local_by_handle(session, "Group", args.association)
        if group is None:
            raise CommandError(f"--association: no association {args.association!r} on this node")
        rows = await session.scalars(
            select(Actor.iri)
            .join(Membership, Membership.member_id == Actor.id)
            .where(Membership.group_id == group.id, Membership.state == "pending")
            .order_by(Membership.id)
        )
        for iri in rows:
            _out(iri)
        return 0

    return asyncio.run(_with_session(settings, work))


def _cmd_token_create(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(session: Any, uris: UriScheme) -> int:
        token = await actor_service.create_token(
            session, username=args.username, scope=args.scope, label=args.label or "", now=utc_now()
        )
        _out(token)
        return 0

    return asyncio.run(_with_session(settings, work))


# --- publish ---------------------------------------------------------------------------------------

PUBLISH_KINDS = {
    "alert": {"type": "Note", "entraideKind": "Alert"},
    "resource": {"type": "Article", "entraideKind": "Resource"},
    "proposal": {"type": "Question", "entraideKind": "Proposal"},
    "reply": {"type": "Note"},
    "event": {"type": "Event"},
}
# The service names wire fields; the operator typed options.
PUBLISH_OPTIONS = {
    "name": "--title",
    "content": "--body-file",
    "severity": "--severity",
    "category": "--category",
    "area": "--area",
    "areaCode": "--area-code",
    "validUntil": "--valid-until",
    "supersedes": "--supersedes",
    "summary": "--summary",
    "language": "--language",
    "license": "--license",
    "tag": "--tag",
    "oneOf": "--option",
    "anyOf": "--option",
    "endTime": "--end-time",
    "eligibility": "--eligibility",
    "visibility": "--visibility",
    "to": "--visibility",
    "inReplyTo": "--in-reply-to",
    "startTime": "--start-time",
    "timezone": "--timezone",
    "location": "--place",
    "onlineUrl": "--online-url",
    "joinMode": "--join-mode",
    "maximumAttendeeCapacity": "--capacity",
}
_HTML_TAG = re.compile(r"<[A-Za-z][^>]*>")


def _read_body(path: str | None) -> str | None:
    """The body from ``--body-file`` (``-``: standard input); plain text becomes paragraphs."""
    if path is None:
        return None
    try:
        raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"--body-file: cannot read {path}: {exc}") from None
    if not raw.strip() or _HTML_TAG.search(raw):
        return raw.strip()
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", raw.strip()) if p.strip()]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.splitlines()) + "</p>" for p in paragraphs
    )


def _publish_object(args: argparse.Namespace) -> dict[str, Any]:
    """The client object that ``content.create`` takes, from the options given (None left out)."""
    fields: dict[str, Any] = {
        **PUBLISH_KINDS[args.kind],
        "name": args.title,
        "content": _read_body(args.body_file),
        "visibility": args.visibility,
        "language": args.language,
    }
    if args.kind == "alert":
        fields.update(
            severity=args.severity,
            category=args.category,
            area=args.area,
            areaCode=args.area_code,
            validUntil=args.valid_until,
            supersedes=args.supersedes,
        )
    elif args.kind == "resource":
        fields.update(summary=args.summary, license=args.license, tag=args.tag)
    elif args.kind == "reply":
        fields["inReplyTo"] = args.in_reply_to
    elif args.kind == "event":
        fields.update(_event_fields(args))
    else:
        fields["anyOf" if args.multiple else "oneOf"] = args.option or []
        fields.update(endTime=args.end_time, eligibility=args.eligibility)
    return {key: value for key, value in fields.items() if value is not None}


def _event_fields(args: argparse.Namespace) -> dict[str, Any]:
    """An event's own fields (issue 18): times, place or online link, join mode, capacity."""
    return {
        "startTime": args.start_time,
        "endTime": args.end_time,
        "timezone": args.timezone,
        "location": _place(args) or None,
        "onlineUrl": args.online_url,
        "joinMode": args.join_mode,
        "maximumAttendeeCapacity": args.capacity,
        "category": args.category,
        "tag": args.tag,
    }


def _place(args: argparse.Namespace) -> dict[str, str] | None:
    """An event's place from its options (``publish event``, ``content edit``): the parts given,
    empty ones left out; ``None`` when no part is given."""
    parts = {
        "name": args.place,
        "streetAddress": args.street,
        "postalCode": args.postal_code,
        "addressLocality": args.locality,
        "addressCountry": args.country,
    }
    if all(value is None for value in parts.values()):
        return None
    return {key: value for key, value in parts.items() if value is not None and value.strip()}


def _add_place_options(p: argparse.ArgumentParser, *, prefix: str = "", note: str = "") -> None:
    """The place options of an event, the same for publishing and editing (``--place`` and
    ``--place-name`` are one option)."""
    p.add_argument(
        "--place", "--place-name", dest="place", metavar="NAME", help=f"{prefix}name of the place{note}"
    )
    p.add_argument("--street", help=f"{prefix}street address")
    p.add_argument("--postal-code", metavar="CODE", help=f"{prefix}postal code")
    p.add_argument("--locality", metavar="CITY", help=f"{prefix}city")
    p.add_argument("--country", help=f"{prefix}country")


def _add_event_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start-time", metavar="DATETIME", help="start, ISO 8601 with a time zone")
    p.add_argument("--end-time", metavar="DATETIME", help="end, ISO 8601 with a time zone (after the start)")
    p.add_argument("--timezone", metavar="ZONE", help="IANA time zone of the event, e.g. Europe/Paris")
    _add_place_options(p)
    p.add_argument("--online-url", metavar="URL", help="link of an online event")
    p.add_argument("--join-mode", metavar="MODE", help="free (default), restricted or invite")
    p.add_argument("--capacity", type=int, metavar="N", help="places (0 or absent: no limit)")
    p.add_argument("--category", help="category, e.g. MEETING")
    p.add_argument("--tag", action="append", metavar="NAME", help="hashtag (repeatable)")


def _cmd_publish(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from server.db.models import Actor, Membership
    from server.db.queries import actors as actor_queries
    from server.services.content import local as content
    from server.services.errors import InvalidInput
    from server.services.federation import open_federation
    from server.services.reading.visibility import Viewer, ViewerKind, role_in

    settings = _settings(args)
    obj = _publish_object(args)

    async def publisher(session: Any) -> tuple[Any, Any]:
        group = await actor_queries.local_by_handle(session, "Group", args.as_slug)
        if group is None:
            raise CommandError(f"--as: no association {args.as_slug!r} on this node")
        if args.by is None:
            member = await session.scalar(
                select(Actor)
                .join(Membership, Membership.member_id == Actor.id)
                .where(
                    Membership.group_id == group.id,
                    Membership.role == "admin",
                    Membership.state == "active",
                    Actor.deleted_at.is_(None),
                )
                .order_by(Membership.id)
                .limit(1)
            )
            # An association without admins yet (a fresh demo node): the operator, who holds the
            # node's database, publishes as the association itself; the audit log says so.
            return group, member if member is not None else group
        member = await actor_queries.local_by_handle(session, "Person", args.by)
        viewer = Viewer(ViewerKind.LOCAL, actor_id=member.id) if member is not None else None
        if viewer is None or await role_in(session, viewer, group) not in ("admin", "moderator"):
            raise CommandError(f"--by: {args.by} is not an admin or moderator of {args.as_slug}")
        return group, member

    async def run() -> int:
        async with _node(settings) as node:
            async with node.sessions() as session:
                group, member = await publisher(session)
            async with open_federation(node) as fed:
                try:
                    result = await content.create(fed, group, obj, by=member)
                except InvalidInput as exc:
                    field = exc.context.get("field")
                    option = PUBLISH_OPTIONS.get(field, f"{field}") if isinstance(field, str) else None
                    raise CommandError(f"{option}: {exc.detail}" if option else exc.detail) from None
        _out(str(result.object_iri))
        _progress(
            f"published {args.kind} as {args.as_slug} (by {member.handle}); "
            "the delivery is queued: a running serve or worker delivers it"
        )
        return 0

    return asyncio.run(run())


# --- content, members, associations, tokens, audit (issue 17) -------------------------------------
# Each command calls the same service as the JSON API, with the same rules; the audit log records it
# with the channel ``cli`` (set in :func:`main`). ``--by`` names the admin or moderator who acts.


async def _fed_run(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    """Run ``work(fed)`` with the node's federation runtime (deliveries are queued, not sent)."""
    from server.services.federation import open_federation

    async with _node(settings) as node, open_federation(node) as fed:
        return await work(fed)


async def _association_of(session: Any, slug: str, option: str = "--association") -> Any:
    from server.db.queries import actors as actor_queries

    group = await actor_queries.local_by_handle(session, "Group", slug)
    if group is None:
        raise CommandError(f"{option}: no association {slug!r} on this node")
    return group


async def _manager_of(
    session: Any, group: Any, by: str | None, *, roles: tuple[str, ...] = ("admin", "moderator")
) -> Any:
    """The admin or moderator who acts (``--by``; default: the first one, admins first)."""
    from sqlalchemy import case, select

    from server.db.models import Actor, Membership

    stmt = (
        select(Actor)
        .join(Membership, Membership.member_id == Actor.id)
        .where(
            Membership.group_id == group.id,
            Membership.state == "active",
            Membership.role.in_(roles),
            Actor.deleted_at.is_(None),
        )
    )
    if by is not None:
        stmt = stmt.where(Actor.local.is_(True), Actor.handle == by)
    order = case((Membership.role == "admin", 0), else_=1)
    found = await session.scalar(stmt.order_by(order, Membership.id).limit(1))
    if found is None:
        what = " or ".join(roles)
        raise CommandError(f"--by: {by or 'no one'} is not an {what} of {group.handle}")
    return found


async def _content_actors(session: Any, iri: str, by: str | None) -> tuple[Any, Any, str]:
    """The author of our live object ``iri`` and who acts for it: for an association, an admin or
    moderator (``--by``, default its first admin; with none, the operator acts as the association,
    as ``publish`` does); for a member's own object, that member."""
    from sqlalchemy import select

    from server.db.models import Actor, RemoteObject

    row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    author = await session.get(Actor, row.attributed_to_id) if row is not None else None
    if row is None or author is None or not row.local or row.deleted_at is not None:
        raise CommandError(f"{iri}: no such object on this node (or it was deleted)")
    if author.type == "Group":
        if by is None:
            try:
                return author, await _manager_of(session, author, None, roles=("admin",)), row.kind
            except CommandError:
                return author, author, row.kind
        return author, await _manager_of(session, author, by), row.kind
    if by is not None and by != author.handle:
        raise CommandError(f"--by: only {author.handle}, its author, changes this object")
    return author, author, row.kind


def _service_refused(exc: ServiceError, options: dict[str, str]) -> CommandError:
    field = exc.context.get("field")
    option = options.get(field, "") if isinstance(field, str) else ""
    return CommandError(f"{option}: {exc.detail}" if option else exc.detail)


CONTENT_KINDS = ("alert", "resource", "proposal", "post")


def _cmd_content_list(args: argparse.Namespace) -> int:
    from server.services.content import local as content

    settings = _settings(args)

    async def work(session: Any, uris: UriScheme) -> int:
        group = await _association_of(session, args.as_slug, "--as")
        kinds = (args.kind,) if args.kind else content.LISTED_KINDS
        rows = await content.list_content(
            session, group, kinds=kinds, include_deleted=args.deleted, limit=args.limit
        )
        now = utc_now()
        items: list[dict[str, Any]] = [
            {
                "id": row.iri,
                "kind": row.kind,
                "status": content.status_of(row, now),
                "visibility": row.visibility,
                "published": row.published.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "updated": row.updated.isoformat(timespec="seconds").replace("+00:00", "Z")
                if row.updated
                else None,
                "title": row.document.get("name") if row.deleted_at is None else None,
            }
            for row in rows
        ]
        if args.json:
            _out(json.dumps(items, ensure_ascii=False))
            return 0
        for item in items:
            _out(
                "\t".join(
                    [
                        item["id"],
                        item["kind"],
                        item["status"],
                        item["visibility"],
                        item["published"],
                        str(item["title"] or ""),
                    ]
                )
            )
        return 0

    return asyncio.run(_with_session(settings, work))


EDIT_OPTIONS = {
    "name": "--title",
    "content": "--body-file",
    "summary": "--summary",
    "license": "--license",
    "tag": "--tag",
    "severity": "--severity",
    "category": "--category",
    "area": "--area",
    "areaCode": "--area-code",
    "validUntil": "--valid-until",
    "changeNote": "--note",
    "object": "IRI",
    "startTime": "--start-time",
    "endTime": "--end-time",
    "timezone": "--timezone",
    "onlineUrl": "--online-url",
    "joinMode": "--join-mode",
    "maximumAttendeeCapacity": "--capacity",
    "location": "--place",
}
CLEARED_BY_EMPTY = ("endTime", "onlineUrl")
"""Edit options that an empty value (``--end-time ''``) removes from the object."""


def _edit_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": args.title,
        "content": _read_body(args.body_file),
        "summary": args.summary,
        "license": args.license,
        "tag": args.tag,
        "severity": args.severity,
        "category": args.category,
        "area": args.area,
        "areaCode": args.area_code,
        "validUntil": args.valid_until,
        "startTime": args.start_time,
        "endTime": args.end_time,
        "timezone": args.timezone,
        "onlineUrl": args.online_url,
        "joinMode": args.join_mode,
        "maximumAttendeeCapacity": args.capacity,
    }
    changes = {key: value for key, value in fields.items() if value is not None}
    for key in CLEARED_BY_EMPTY:
        if isinstance(changes.get(key), str) and not changes[key].strip():
            changes[key] = None  # removed, as a JSON null does
    place = _place(args)
    if place is not None:
        changes["location"] = place or None  # the parts given replace the place; only '': removed
    if not changes:
        raise CommandError(
            "nothing to change: give at least one of --title, --body-file, --summary, "
            "--license, --tag, --severity, --category, --area, --area-code, --valid-until, "
            "or an event's --start-time, --end-time, --timezone, --place-name, --street, --postal-code, "
            "--locality, --country, --online-url, --join-mode, --capacity"
        )
    if args.note is not None:
        changes["changeNote"] = args.note
    return changes


def _add_event_edit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start-time", metavar="DATETIME", help="events: new start, ISO 8601 with a time zone")
    p.add_argument(
        "--end-time", metavar="DATETIME", help="events: new end, ISO 8601 with a time zone; '' removes it"
    )
    p.add_argument("--timezone", metavar="ZONE", help="events: IANA time zone, e.g. Europe/Paris")
    _add_place_options(
        p, prefix="events: ", note="; the place options given replace the place, '' removes it"
    )
    p.add_argument("--online-url", metavar="URL", help="events: link of an online event; '' removes it")
    p.add_argument("--join-mode", metavar="MODE", help="events: free, restricted or invite")
    p.add_argument("--capacity", type=int, metavar="N", help="events: places (0: no limit)")


def _cmd_content_change(args: argparse.Namespace) -> int:
    """``content edit|retract|close|delete IRI``: one service call, as the author (or for it)."""
    from server.services.content import local as content
    from server.services.content import polls

    settings = _settings(args)
    verb = args.content_command
    fields = _edit_fields(args) if verb == "edit" else {}

    async def work(fed: Any) -> int:
        async with fed.node.sessions() as session:
            author, by, kind = await _content_actors(session, args.iri, args.by)
        try:
            if verb == "edit":
                content.check_fields_apply(kind, fields)  # as the JSON API does
                result = await content.update(fed, author, {**fields, "id": args.iri}, by=by)
            elif verb == "retract":
                result = await content.retract_alert(fed, author, args.iri, by=by)
            elif verb == "close":
                result = await polls.close_early(fed, author, args.iri, by=by)
            else:
                result = await content.delete(fed, author, args.iri, by=by)
        except ServiceError as exc:
            raise _service_refused(exc, EDIT_OPTIONS) from None
        _out(str(result.activity_iri))
        done = {"edit": "edited", "retract": "retracted", "close": "closed", "delete": "deleted"}[verb]
        _progress(
            f"{done} {args.iri} (by {by.handle}); the "
            + ("Delete" if verb == "delete" else "Update")
            + " is queued: a running serve or worker delivers it"
        )
        return 0

    return asyncio.run(_fed_run(settings, work))


# --- content drafts (members' drafts, decision 65) --------------------------------------------------


def _cmd_content_drafts(args: argparse.Namespace) -> int:
    """``content drafts list|publish|refuse``: the drafts service, as one of the association's
    admins or moderators (``--by``, default its first admin)."""
    from server.services.content import drafts

    settings = _settings(args)
    verb = args.drafts_command

    async def work(fed: Any) -> int:
        async with fed.node.sessions() as session:
            group = await _association_of(session, args.as_slug, "--as")
            by = await _manager_of(session, group, args.by)
        try:
            if verb == "list":
                views = await drafts.listing(fed, group, by, state=args.state)
                for view in views:
                    title = str(view.fields.get("name", ""))
                    _out("\t".join([str(view.id), view.kind, view.state, f"@{view.author_handle}", title]))
            elif verb == "publish":
                result = await drafts.publish(fed, group, args.id, by=by)
                _out(str(result.object_iri))
                _progress(f"published draft {args.id} as {group.handle} (by {by.handle})")
            else:
                await drafts.refuse(fed, group, args.id, by=by, reason=args.reason or "")
                _progress(f"refused draft {args.id} (by {by.handle})")
        except ServiceError as exc:
            raise _service_refused(exc, {"reason": "--reason", "state": "--state"}) from None
        return 0

    return asyncio.run(_fed_run(settings, work))


def _add_drafts_commands(content_commands: Any) -> None:
    drafts = content_commands.add_parser(
        "drafts",
        help="list, publish or refuse members' drafts",
        description="Drafts that an association's members proposed: list them (ID, kind, state, author, "
        "title), publish one as the association, or refuse it with a reason its author reads.",
    )
    commands = drafts.add_subparsers(dest="drafts_command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    by_help = "the admin or moderator who decides (default: the association's first admin)"
    for verb, short in (
        ("list", "list the drafts in one state"),
        ("publish", "publish a pending draft as the association"),
        ("refuse", "refuse a pending draft"),
    ):
        p = commands.add_parser(verb, help=short, description=short[0].upper() + short[1:] + ".")
        if verb != "list":
            p.add_argument(
                "id", type=_count(10**18), metavar="ID", help="the draft's id (see `content drafts list`)"
            )
        p.add_argument("--as", dest="as_slug", required=True, metavar="SLUG", help="the association")
        p.add_argument("--by", metavar="USERNAME", help=by_help)
        if verb == "list":
            p.add_argument("--state", choices=("pending", "published", "refused"), default="pending")
        if verb == "refuse":
            p.add_argument("--reason", metavar="TEXT", help="why (plain text), shown to its author")
        _add_config(p)
        p.set_defaults(func=_cmd_content_drafts)


def _cmd_member_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from server.db.models import Actor, Membership
    from server.services.membership.standing import is_suspended

    settings = _settings(args)

    async def work(session: Any, uris: UriScheme) -> int:
        group = await _association_of(session, args.association)
        now = utc_now()
        query = (
            select(Membership, Actor)
            .join(Actor, Actor.id == Membership.member_id)
            .where(Membership.group_id == group.id)
            .order_by(Membership.state, Actor.host, Actor.handle)
        )
        if args.state != "all":
            query = query.where(Membership.state == args.state)
        if args.role:
            query = query.where(Membership.role == args.role)
        items = [
            {
                "handle": f"@{actor.handle}@{actor.host}",
                "role": row.role,
                "state": "suspended" if is_suspended(row, now) else row.state,
                "local": actor.local,
                "since": row.updated_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "member": actor.iri,
            }
            for row, actor in (await session.execute(query)).all()
        ]
        if args.json:
            _out(json.dumps(items, ensure_ascii=False))
        for item in [] if args.json else items:
            _out("\t".join([item["handle"], item["role"], item["state"], item["since"], item["member"]]))
        return 0

    return asyncio.run(_with_session(settings, work))


def _cmd_member_role(args: argparse.Namespace) -> int:
    from server.services.membership import members as membership

    settings = _settings(args)

    async def work(fed: Any) -> int:
        async with fed.node.sessions() as session:
            group = await _association_of(session, args.association)
            by = await _manager_of(session, group, args.by, roles=("admin",))
            try:
                member = await membership.resolve_member(session, fed.node.uris, args.user)
            except ServiceError as exc:
                raise CommandError(f"{args.user}: {exc.detail}") from None
        try:
            previous = await membership.set_role(fed, group, member.iri, args.role, by=by)
        except ServiceError as exc:
            raise CommandError(f"{args.user}: {exc.detail}") from None
        _out(f"role = {args.role}")
        _progress(
            f"@{member.handle}@{member.host} in {args.association}: {previous} → {args.role} (by {by.handle})"
        )
        return 0

    return asyncio.run(_fed_run(settings, work))


def _cmd_member_suspension(args: argparse.Namespace) -> int:
    """Suspend a member (for a time or until lifted) or lift it, as an admin or moderator."""
    from server.services.membership import members as membership
    from server.services.membership import suspension

    settings = _settings(args)

    async def work(fed: Any) -> int:
        async with fed.node.sessions() as session:
            group = await _association_of(session, args.association)
            by = await _manager_of(session, group, args.by)
            try:
                member = await membership.resolve_member(session, fed.node.uris, args.user)
            except ServiceError as exc:
                raise CommandError(f"{args.user}: {exc.detail}") from None
        try:
            if args.member_command == "suspend":
                until = suspension.parse_until(args.until, now=fed.node.clock())
                done = await suspension.suspend(
                    fed, group, member.iri, by=by, until=until, reason=args.reason
                )
                _out(f"suspended until {done.as_json()['until'] or 'lifted'}")
            else:
                await suspension.unsuspend(fed, group, member.iri, by=by)
                _out("active")
        except ServiceError as exc:
            options = {"until": "--until", "reason": "--reason", "member": args.user}
            raise _service_refused(exc, options) from None
        who = f"@{member.handle}@{member.host}"
        _progress(f"{args.member_command}: {who} in {args.association} (by {by.handle})")
        return 0

    return asyncio.run(_fed_run(settings, work))


def _add_suspension_commands(member_commands: Any) -> None:
    for verb, short in (
        ("suspend", "suspend a member: reads on, acts in nothing (admins and moderators)"),
        ("unsuspend", "lift a member's suspension (admins and moderators)"),
    ):
        p = member_commands.add_parser(
            verb,
            help=short,
            description=short[0].upper() + short[1:] + ". A suspended member neither publishes, replies, "
            "votes, co-signs, proposes drafts nor invites in the association. Audited; the member is "
            "notified.",
        )
        p.add_argument("user", metavar="USER", help="a local username, a handle @user@host or an actor IRI")
        p.add_argument("--association", required=True, metavar="SLUG")
        if verb == "suspend":
            p.add_argument(
                "--until",
                metavar="DATE",
                help="when it ends by itself: YYYY-MM-DD (end of that day, UTC) or an ISO 8601 date and time "
                "(default: until lifted)",
            )
            p.add_argument("--reason", metavar="TEXT", help="why (plain text), told to the member")
        p.add_argument("--by", metavar="USERNAME", help="the admin or moderator (default: the first one)")
        _add_config(p)
        p.set_defaults(func=_cmd_member_suspension)


def _cmd_association_list(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(session: Any, uris: UriScheme) -> int:
        rows = await actor_service.list_associations(session)
        items = [
            {
                "handle": group.handle,
                "name": group.name,
                "members": members,
                "pending": pending,
                "join_policy": group.join_policy,
                "language": group.language,
                "id": group.iri,
            }
            for group, members, pending in rows
        ]
        if args.json:
            _out(json.dumps(items, ensure_ascii=False))
            return 0
        for item in items:
            _out(
                f"{item['handle']}\t{item['name']}\t{item['members']} members\t{item['pending']} pending"
                f"\t{item['join_policy']}\t{item['id']}"
            )
        return 0

    return asyncio.run(_with_session(settings, work))


def _cmd_token_list(args: argparse.Namespace) -> int:
    settings = _settings(args)

    def iso(value: Any) -> str | None:
        return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value is not None else None

    async def work(session: Any, uris: UriScheme) -> int:
        tokens = await actor_service.list_tokens(session, username=args.username, revoked=args.all)
        items = [
            {
                "id": t.id,
                "scope": t.scope,
                "label": t.label,
                "created": iso(t.created_at),
                "lastUsed": iso(t.last_used_at),
                "revoked": iso(t.revoked_at),
            }
            for t in tokens
        ]
        if args.json:
            _out(json.dumps(items, ensure_ascii=False))
            return 0
        for item in items:
            state = f"revoked {item['revoked']}" if item["revoked"] else "active"
            _out(
                f"{item['id']}\t{item['scope']}\t{state}\tcreated {item['created']}"
                f"\tlast used {item['lastUsed'] or 'never'}\t{item['label']}"
            )
        return 0

    return asyncio.run(_with_session(settings, work))


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(session: Any, uris: UriScheme) -> int:
        token = await actor_service.revoke_token(
            session, username=args.username, token_id=args.token_id, now=utc_now()
        )
        _out(f"{token.id}\trevoked")
        return 0

    return asyncio.run(_with_session(settings, work))


def _when_option(value: str | None, option: str) -> Any:
    if value is None:
        return None
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option}: {value!r} is not an ISO 8601 date or date and time") from None
    if parsed.tzinfo is None:
        raise CommandError(f"{option}: give a time zone, e.g. {value}+00:00 or {value}Z")
    return parsed


def _cmd_audit_list(args: argparse.Namespace) -> int:
    from server.services import audit
    from server.services.membership import members as membership

    settings = _settings(args)

    async def work(session: Any, uris: UriScheme) -> int:
        try:
            filters = audit.Filters(
                group_id=(await _association_of(session, args.association)).id if args.association else None,
                by_id=(await membership.resolve_member(session, uris, args.by)).id if args.by else None,
                action=audit.check_action(args.action),
                channel=audit.check_channel(args.channel),
                target=args.target,
                since=_when_option(args.since, "--since"),
                until=_when_option(args.until, "--until"),
            )
        except ServiceError as exc:
            raise _service_refused(
                exc, {"member": "--by", "action": "--action", "channel": "--channel"}
            ) from None
        items = await audit.entries(session, filters, limit=args.limit)
        if args.json:
            _out(json.dumps(items, ensure_ascii=False, default=str))
            return 0
        for item in items:
            who = item["byHandle"] or "operator"
            where = item["associationHandle"] or "-"
            extra = ", ".join(
                f"{k}={v}"
                for k, v in item["detail"].items()
                if k not in ("object", "member") and v is not None
            )
            _out(
                f"{item['at']}\t{item['channel']}\t{where}\t{who}\t{item['action']}\t{item['target'] or '-'}"
                + (f"\t{extra}" if extra else "")
            )
        return 0

    return asyncio.run(_with_session(settings, work))


def _add_admin_commands(commands: Any) -> None:
    """The parsers of the issue-17 commands: content, member list|role, association list,
    token list|revoke and audit (member remove|approve|refuse take a USER since)."""
    choices = {name: sub for name, sub in commands.choices.items()}

    content = commands.add_parser(
        "content",
        help="list, edit, retract, close or delete published content",
        description="Manage what an association (or a member) published, with the rules of the JSON "
        "API: edits and deletions reach every node that received the object. Changes are audited.",
    )
    content_commands = content.add_subparsers(dest="content_command", metavar="COMMAND", parser_class=_Parser)
    content_commands.required = True
    p = content_commands.add_parser(
        "list",
        help="list an association's content with its state",
        description="One line per object, newest first: IRI, kind, state (active, retracted, superseded, "
        "expired, open, closed, published, deleted), visibility, publication time, title.",
    )
    p.add_argument("--as", dest="as_slug", required=True, metavar="SLUG", help="the association")
    p.add_argument("--kind", choices=CONTENT_KINDS, help="only this kind")
    p.add_argument("--deleted", action="store_true", help="include deleted objects (tombstones)")
    p.add_argument("--limit", type=_count(500), default=50, help="how many (default 50, at most 500)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(p)
    p.set_defaults(func=_cmd_content_list)
    by_help = (
        "the admin or moderator who acts for the association (default: its first admin); "
        "for a member's own object, that member"
    )
    texts = {
        "edit": (
            "edit an object (a resource's new revision, an alert's validity…)",
            "Edit an object: an Update carrying the new revision goes to its audience. The audience, kind "
            "and options are fixed at publication. --note records a change note in the object's history. "
            "To extend an alert, give a later --valid-until. Prints the Update's IRI.",
        ),
        "retract": (
            "retract an active alert",
            "Withdraw an active alert (alertStatus retracted). To replace an alert instead, publish its "
            "successor with `entraide publish alert --supersedes IRI`: the old one is marked superseded "
            "with a link to the new one. Prints the Update's IRI.",
        ),
        "close": (
            "close a proposal's vote before its end time",
            "Close an open proposal (or poll) now, with its final tally: no vote counts after it. "
            "Prints the Update's IRI.",
        ),
        "delete": (
            "delete an object (a tombstone stays; a Delete goes to every node that has it)",
            "Delete an object of any kind: fetches answer 410 Gone and a Delete{Tombstone} goes to its "
            "audience and every node known to hold it. Prints the Delete's IRI.",
        ),
    }
    severities = ", ".join(s.value for s in Severity)
    categories = ", ".join(c.value for c in AlertCategory)
    for verb, (short, long) in texts.items():
        p = content_commands.add_parser(verb, help=short, description=long)
        p.add_argument("iri", metavar="IRI", help="the object's IRI (see `entraide content list`)")
        p.add_argument("--by", metavar="USERNAME", help=by_help)
        if verb == "edit":
            p.add_argument("--title", help="new title (headline of an alert)")
            p.add_argument(
                "--body-file", metavar="PATH", help="file holding the new body, or - for standard input"
            )
            p.add_argument("--summary", help="new summary (not for alerts)")
            p.add_argument("--license", metavar="IRI", help="new licence IRI (resources)")
            p.add_argument(
                "--tag", action="append", metavar="NAME", help="hashtag (repeatable; replaces them)"
            )
            p.add_argument("--severity", help=f"alerts: one of: {severities}")
            p.add_argument("--category", help=f"alerts: one of: {categories}")
            p.add_argument("--area", help="alerts: area concerned, in words")
            p.add_argument("--area-code", metavar="CODE", help="alerts: ISO 3166 code, e.g. FR or FR-75")
            p.add_argument(
                "--valid-until", metavar="DATETIME", help="alerts: end of validity, ISO 8601 with a time zone"
            )
            _add_event_edit_options(p)
            p.add_argument("--note", metavar="TEXT", help="change note of this revision (plain text)")
        _add_config(p)
        p.set_defaults(func=_cmd_content_change)
    _add_drafts_commands(content_commands)

    member_commands = _subcommands(choices["member"])
    p = member_commands.add_parser(
        "list",
        help="list an association's members and requests to join",
        description="One line per member: handle, role, state (active, suspended, pending, invited), since, "
        "actor IRI.",
    )
    p.add_argument("--association", required=True, metavar="SLUG")
    p.add_argument("--state", choices=("active", "pending", "invited", "all"), default="all")
    p.add_argument("--role", choices=("admin", "moderator", "member"), help="only this role")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(p)
    p.set_defaults(func=_cmd_member_list)
    p = member_commands.add_parser(
        "role",
        help="change a member's role (admins only)",
        description="Give an active member (local or remote) another role; the last admin keeps the role. "
        "Audited.",
    )
    p.add_argument("user", metavar="USER", help="a local username, a handle @user@host or an actor IRI")
    p.add_argument("--association", required=True, metavar="SLUG")
    p.add_argument("--role", required=True, choices=("admin", "moderator", "member"))
    p.add_argument("--by", metavar="USERNAME", help="the admin who decides (default: the first one)")
    _add_config(p)
    p.set_defaults(func=_cmd_member_role)
    _add_suspension_commands(member_commands)

    association_commands = _subcommands(choices["association"])
    p = association_commands.add_parser(
        "list",
        help="list the node's associations",
        description="One line per association: handle, name, active members, pending requests, join "
        "policy, actor IRI.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(p)
    p.set_defaults(func=_cmd_association_list)

    token_commands = _subcommands(choices["token"])
    p = token_commands.add_parser(
        "list",
        help="list an account's tokens (never their secrets)",
        description="One line per token: id, scope, state, creation, last use, label. A token's secret is "
        "printed once, by `token create`, and never stored.",
    )
    p.add_argument("username")
    p.add_argument("--all", action="store_true", help="include revoked tokens")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(p)
    p.set_defaults(func=_cmd_token_list)
    p = token_commands.add_parser(
        "revoke",
        help="revoke one of an account's tokens",
        description="Revoke a token by the id `token list` shows; it stops working at once. Audited.",
    )
    p.add_argument("username")
    p.add_argument("token_id", metavar="ID", type=int, help="the token's id (see `token list`)")
    _add_config(p)
    p.set_defaults(func=_cmd_token_revoke)

    audit = commands.add_parser(
        "audit", help="the audit log of administration and moderation", description="The audit log."
    )
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", parser_class=_Parser)
    audit_commands.required = True
    p = audit_commands.add_parser(
        "list",
        help="who did what, when, to what, through which channel",
        description="Audit entries, newest first: time, channel (web, cli, api, system; unknown before "
        "it was recorded), association, who (operator: the command line without --by), action, target "
        "and details. Filters combine.",
    )
    p.add_argument("--association", metavar="SLUG", help="only this association's entries")
    p.add_argument("--by", metavar="USER", help="only this person's actions (username, @user@host or IRI)")
    p.add_argument("--action", help="an action (member.remove) or a prefix ending in a dot (member.)")
    p.add_argument("--channel", choices=("web", "cli", "api", "system", "unknown"))
    p.add_argument("--target", metavar="IRI", help="only actions on this object or actor")
    p.add_argument("--since", metavar="DATETIME", help="from this time (ISO 8601 with a time zone)")
    p.add_argument("--until", metavar="DATETIME", help="before this time (ISO 8601 with a time zone)")
    p.add_argument("--limit", type=_count(500), default=100, help="how many (default 100, at most 500)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(p)
    p.set_defaults(func=_cmd_audit_list)


# --- moderation reports (issue 17): entraide report list, dismiss, remove, warn, forward, block-* ----


async def _person_named(session: Any, username: str) -> Any:
    from server.db.queries import actors as actor_queries

    person = await actor_queries.local_by_handle(session, "Person", username)
    if person is None:
        raise CommandError(f"--as: no member {username!r} on this node")
    return person


def _cmd_report_list(args: argparse.Namespace) -> int:
    """Reports, newest first: every one for the operator, or those ``--as`` moderates."""
    from server.services.moderation import reports

    settings = _settings(args)

    async def work(session: Any, uris: UriScheme) -> int:
        reader = await _person_named(session, args.as_user) if args.as_user else None
        group = await _association_of(session, args.association) if args.association else None
        try:
            state = None if args.state == "all" else args.state
            items = await reports.queue_of(session, reader, group=group, state=state, limit=args.limit)
        except ServiceError as exc:
            raise _service_refused(exc, {}) from None
        if args.json:
            _out(json.dumps([item.as_json() for item in items], ensure_ascii=False))
            return 0
        for item in items:
            comment = item.comment.replace("\n", " ")[:80]
            _out(
                f"{item.id}\t{item.state}\t{item.association_handle or '-'}\t{' '.join(item.targets)}"
                f"\t{item.reporter or '-'}\t{comment}"
            )
        return 0

    return asyncio.run(_with_session(settings, work))


def _cmd_report_act(args: argparse.Namespace) -> int:
    """One action on a report, as the moderator ``--as`` (audited with the channel ``cli``)."""
    from server.services.moderation import reports

    settings = _settings(args)

    async def work(fed: Any) -> int:
        async with fed.node.sessions() as session:
            by = await _person_named(session, args.as_user)
        try:
            done = await reports.act(
                fed, by, args.report_id, args.report_command, args.reason, getattr(args, "until", None)
            )
        except ServiceError as exc:
            options = {"message": "--reason", "reason": "--reason", "until": "--until"}
            raise _service_refused(exc, options) from None
        for value in done.values():
            _out(value if isinstance(value, str) else " ".join(value))
        _progress(f"report {args.report_id}: {args.report_command} (by {by.handle})")
        return 0

    return asyncio.run(_fed_run(settings, work))


def _add_report_commands(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="moderation reports", description="Reports from members and peers, and what is done."
    )
    report_commands = report.add_subparsers(dest="report_command", metavar="COMMAND", parser_class=_Parser)
    report_commands.required = True
    p = report_commands.add_parser(
        "list",
        help="reports, newest first",
        description="Reports, newest first: id, state, association, targets, reporter, comment. The "
        "operator sees every report; with --as, those the member moderates.",
    )
    p.add_argument("--association", metavar="SLUG", help="only this association's reports")
    p.add_argument("--state", choices=("open", "resolved", "dismissed", "all"), default="open")
    p.add_argument("--as", dest="as_user", metavar="USER", help="list as this moderator or node admin")
    p.add_argument("--limit", type=_count(100), default=50, help="how many (default 50, at most 100)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(p)
    p.set_defaults(func=_cmd_report_list)
    helps = {
        "dismiss": "close the report with nothing done",
        "remove": "remove the reported content (ours: deleted and a Delete sent; a peer's: forgotten here)",
        "warn": "warn the reported member (a notification; --reason is the message)",
        "remove-member": "remove the reported member from the association",
        "suspend-member": "suspend the reported member in the association (--reason is told to them)",
        "forward": "send the report to the content's node as a Flag from this node (never the reporter)",
        "block-actor": "block the reported peer actor (for the association concerned, else the node)",
        "block-domain": "suspend the reported content's domain for the whole node (node admins)",
    }
    for verb, text in helps.items():
        p = report_commands.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ". Audited.")
        p.add_argument("report_id", metavar="ID", type=int, help="the report's id (see `report list`)")
        p.add_argument("--as", dest="as_user", metavar="USER", required=True, help="the moderator acting")
        p.add_argument("--reason", metavar="TEXT", help="why (audited); with warn, the message")
        if verb == "suspend-member":
            p.add_argument(
                "--until", metavar="DATE", help="when it ends: YYYY-MM-DD or ISO 8601 (default: until lifted)"
            )
        _add_config(p)
        p.set_defaults(func=_cmd_report_act)


def _count(maximum: int) -> Callable[[str], int]:
    """An argparse type: an integer from 1 to ``maximum`` (bad usage otherwise, exit code 2)."""

    def parse(value: str) -> int:
        if not value.isdigit() or not 1 <= int(value) <= maximum:
            raise argparse.ArgumentTypeError(f"must be an integer from 1 to {maximum}")
        return int(value)

    return parse


def _subcommands(parser: argparse.ArgumentParser) -> Any:
    """The subcommand registry of an existing command group (to add commands to it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise AssertionError(f"{parser.prog} has no subcommands")


# --- invitations (issue 17, web app part 2) --------------------------------------------------------
# The same service as the pages and ``/api/associations/{slug}/invitations``; audited with ``cli``.

INVITE_OPTIONS: dict[str, str] = {"expiresInDays": "--days", "maxUses": "--uses"}


def _cmd_invite(args: argparse.Namespace) -> int:
    """``invite create|list|revoke``: an admin's invitation links (``--by``, default the first admin)."""
    from server.services.membership import invitations

    settings = _settings(args)

    async def work(fed: Any) -> int:
        async with fed.node.sessions() as session:
            group = await _association_of(session, args.association)
            by = await _manager_of(session, group, args.by, roles=("admin",))
        try:
            if args.invite_command == "create":
                created = await invitations.create(
                    fed.node, group, by=by, expires_in_days=args.days, max_uses=args.uses
                )
                _out(created.url)
                view = created.invitation
                _progress(
                    f"invitation {view.id} of {group.handle}: {view.max_uses} use(s) until "
                    f"{view.as_json()['expiresAt']} (by {by.handle}); the link is shown this once"
                )
            elif args.invite_command == "revoke":
                view = await invitations.revoke(fed.node, group, args.invitation_id, by=by)
                _progress(f"invitation {view.id} of {group.handle} revoked (by {by.handle})")
            else:
                _print_invitations(await invitations.list_for(fed.node, group, by=by), as_json=args.json)
        except ServiceError as exc:
            raise _service_refused(exc, INVITE_OPTIONS) from None
        return 0

    return asyncio.run(_fed_run(settings, work))


def _print_invitations(rows: list[Any], *, as_json: bool) -> None:
    items = [row.as_json() for row in rows]
    if as_json:
        _out(json.dumps(items, ensure_ascii=False))
        return
    for item in items:
        used = f"{item['uses']}/{item['maxUses']}"
        _out("\t".join([str(item["id"]), item["state"], used, item["expiresAt"], item["createdBy"] or "-"]))


def _add_invite_commands(commands: Any) -> None:
    invite = commands.add_parser(
        "invite",
        help="invitation links of an association",
        description="Invitation links let a member of this node join an association at once, without "
        "waiting for approval, until the link expires, is used up or is revoked. Audited.",
    )
    invite_commands = invite.add_subparsers(dest="invite_command", metavar="COMMAND", parser_class=_Parser)
    invite_commands.required = True
    by_help = "the admin who acts (default: the first one)"
    p = invite_commands.add_parser(
        "create",
        help="create an invitation link (prints only the link)",
        description="Create an invitation link and print it; only its hash is kept, so it is shown once.",
    )
    p.add_argument("--days", type=_count(90), default=7, help="valid for this many days (1-90, default 7)")
    p.add_argument("--uses", type=_count(1000), default=1, help="how many people may use it (default 1)")
    for verb, short, text in (
        (
            "list",
            "list an association's invitations (never their links)",
            "One line per invitation, newest first: id, state, uses/max, expiry, author. Never a token.",
        ),
        (
            "revoke",
            "revoke an invitation",
            "Revoke an invitation by the id `invite list` shows; the link stops working at once.",
        ),
    ):
        q = invite_commands.add_parser(verb, help=short, description=text)
        if verb == "revoke":
            q.add_argument(
                "invitation_id", metavar="ID", type=_count(999_999_999), help="the invitation's id"
            )
        else:
            q.add_argument("--json", action="store_true", help="machine-readable output")
        _configure_invite(q, by_help)
    _configure_invite(p, by_help)


def _configure_invite(p: argparse.ArgumentParser, by_help: str) -> None:
    p.add_argument("--association", required=True, metavar="SLUG")
    p.add_argument("--by", metavar="USERNAME", help=by_help)
    _add_config(p)
    p.set_defaults(func=_cmd_invite)


# --- parser ----------------------------------------------------------------------------------------


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help=f"configuration file (default: ${CONFIG_ENV})")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="entraide", description="Entraide: a federated server for associations.")
    parser.add_argument("--version", action="version", version=f"entraide {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    p = commands.add_parser(
        "init",
        help="create a node: configuration, node secret, database, keys",
        description="Write DIR/entraide.toml, create the node secret, migrate the database "
        "and create the node's Application actor. Running it again changes nothing.",
    )
    p.add_argument(
        "--data-dir", required=True, metavar="DIR", help="directory for the configuration and data"
    )
    p.add_argument(
        "--origin", required=True, metavar="URL", help="public origin, e.g. https://asso.example (permanent)"
    )
    p.add_argument("--database", metavar="URL", help="postgresql+asyncpg://… (default: SQLite file in DIR)")
    p.add_argument(
        "--allow-private-addresses",
        action="store_true",
        help="allow federation with private/loopback addresses (tests on one machine only)",
    )
    p.add_argument("--node-name", metavar="NAME", help="display name of the node (default: its host)")
    p.set_defaults(func=_cmd_init)

    p = commands.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run the HTTP server. Stops gracefully on SIGTERM or Ctrl-C.",
    )
    _add_config(p)
    p.add_argument("--host", help="listen address (default: server.host)")
    p.add_argument("--port", type=int, help="listen port (default: server.port)")
    p.set_defaults(func=_cmd_serve)

    p = commands.add_parser(
        "migrate",
        help="upgrade the database schema in place",
        description="Apply pending migrations (SQLite or PostgreSQL) in place.",
    )
    _add_config(p)
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.set_defaults(func=_cmd_migrate)

    p = commands.add_parser(
        "backup",
        help="back up the database, node secret and media while the node serves",
        description="Write one tar.gz (mode 0600) with a consistent snapshot of the database "
        "(SQLite online backup; PostgreSQL with pg_dump if installed, else a row copy), the node "
        "secret and the media. Safe while `serve` and `worker` run.",
    )
    _add_config(p)
    p.add_argument("--to", required=True, metavar="FILE", help="the backup file to write")
    p.add_argument(
        "--no-pg-dump", action="store_true", help="PostgreSQL: copy the rows instead of running pg_dump"
    )
    p.set_defaults(func=_cmd_backup)

    p = commands.add_parser(
        "restore",
        help="restore a backup into a new data directory",
        description="Restore FILE into the new directory DIR (secret, media, entraide.toml, "
        "database). A SQLite backup restored with --database-url postgresql+asyncpg://… moves "
        "the node to PostgreSQL, keeping every IRI and key.",
    )
    p.add_argument("file", metavar="FILE", help="a file written by `entraide backup`")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="new, empty data directory")
    p.add_argument(
        "--database-url", metavar="URL", help="an empty PostgreSQL database (default: SQLite file in DIR)"
    )
    p.set_defaults(func=_cmd_restore)

    config = commands.add_parser("config", help="configuration tools", description="Configuration tools.")
    config_commands = config.add_subparsers(dest="config_command", metavar="COMMAND", parser_class=_Parser)
    config_commands.required = True
    p = config_commands.add_parser(
        "check",
        help="validate the configuration and reach the database",
        description="Validate the file and environment overrides, read the node secret "
        "and connect to the database.",
    )
    _add_config(p)
    p.add_argument("--show", action="store_true", help="print the effective configuration (secrets redacted)")
    p.add_argument("--offline", action="store_true", help="do not connect to the database")
    p.set_defaults(func=_cmd_config_check)

    association = commands.add_parser(
        "association", help="manage associations", description="Manage associations."
    )
    association_commands = association.add_subparsers(
        dest="association_command", metavar="COMMAND", parser_class=_Parser
    )
    association_commands.required = True
    p = association_commands.add_parser(
        "create",
        help="create an association (a Group actor)",
        description="Create an association. Prints its actor IRI.",
    )
    p.add_argument("slug", help="handle: lower-case letters, digits, '-' and '_'")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--summary", help="short plain-text description")
    _add_config(p)
    p.set_defaults(func=_cmd_association_create)
    p = association_commands.add_parser(
        "set",
        help="show or change an association's settings",
        description="Show or change an association's settings; prints every setting after the change. "
        "Changes are audited.",
    )
    p.add_argument("slug", help="the association's handle")
    p.add_argument(
        "--join-policy",
        choices=("open", "approval", "closed"),
        help="open: anyone who asks is a member; approval: admins and moderators decide; closed: no requests",
    )
    p.add_argument(
        "--replies",
        choices=("anyone", "members"),
        help="who may reply in the association's threads (non-members' replies are refused with members)",
    )
    p.add_argument(
        "--members-list",
        choices=("public", "members", "hidden"),
        help="who sees the list of members: anyone, members, or admins only",
    )
    p.add_argument("--name", help="display name (followers get an Update)")
    p.add_argument("--summary", help="short plain-text description (followers get an Update)")
    p.add_argument(
        "--language", metavar="TAG", help="default language of its content (BCP 47, e.g. fr; empty: none)"
    )
    p.add_argument(
        "--by", metavar="USERNAME", help="the admin recorded as having done it (default: the operator)"
    )
    _add_config(p)
    p.set_defaults(func=_cmd_association_set)
    p = association_commands.add_parser(
        "delete",
        help="delete an association and its content for good",
        description="Delete an association: everything it published becomes a tombstone and a Delete goes "
        "to every server known to hold it (so no peer keeps one of its alerts active), its memberships, "
        "follows, invitations and drafts end, what members posted into it stays theirs, and the handle is "
        "never given again. Without --yes, says what would end and changes nothing. Audited.",
    )
    p.add_argument("slug", help="the association's handle")
    p.add_argument("--yes", action="store_true", help="confirm the deletion")
    p.add_argument("--reason", help="why: kept in the audit log and told to its members")
    _add_config(p)
    p.set_defaults(func=_cmd_association_delete)

    member = commands.add_parser("member", help="manage members", description="Manage members.")
    member_commands = member.add_subparsers(dest="member_command", metavar="COMMAND", parser_class=_Parser)
    member_commands.required = True
    p = member_commands.add_parser(
        "add",
        help="create an account and give it a role in an association",
        description="Create the member's account if needed and set its role. "
        "Without --password-stdin a password is generated and printed.",
    )
    p.add_argument("username")
    p.add_argument("--association", required=True, metavar="SLUG")
    p.add_argument("--role", required=True, choices=["admin", "moderator", "member"])
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    _add_config(p)
    p.set_defaults(func=_cmd_member_add)
    for verb, text in (
        ("approve", "accept a pending request to join (the member gets Accept{Join})"),
        ("refuse", "refuse a pending request to join (the member gets Reject{Join})"),
        ("remove", "remove a member (a remote member gets Remove); moderators cannot remove admins"),
    ):
        p = member_commands.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument(
            "actor",
            metavar="USER",
            help="a local username, a handle @user@host or an actor IRI (see `member list`)",
        )
        if verb == "refuse":
            p.add_argument("--reason", metavar="TEXT", help="why (sent with the refusal and audited)")
        p.add_argument("--association", required=True, metavar="SLUG")
        p.add_argument(
            "--by", metavar="USERNAME", help="the admin or moderator who decides (default: the first one)"
        )
        _add_config(p)
        p.set_defaults(func=_cmd_member_decide)
    p = member_commands.add_parser(
        "set",
        help="show or change an account's own settings",
        description="Show or change a member's account settings. --discoverable yes lists the account in "
        "directories and lets search engines index it (discoverable and indexable); the default is no. "
        "--approve-followers yes holds each new follow until the member answers it (the web page "
        "/account/follow-requests or the API); no accepts those waiting, except from silenced domains.",
    )
    p.add_argument("username")
    p.add_argument("--discoverable", choices=("yes", "no"))
    p.add_argument(
        "--approve-followers", choices=("yes", "no"), help="approve followers by hand (default: no)"
    )
    p.add_argument(
        "--node-admin",
        choices=("yes", "no"),
        help="a node admin reads the node's audit log through the API (GET /api/audit); audited",
    )
    p.add_argument("--name", help="the display name (at most 100 characters)")
    summary = p.add_mutually_exclusive_group()
    summary.add_argument("--summary", help="about the member, plain text (at most 2000 characters)")
    summary.add_argument("--summary-file", metavar="FILE", help="read the summary from FILE ('-': stdin)")
    _add_config(p)
    p.set_defaults(func=_cmd_member_set)
    p = member_commands.add_parser(
        "delete",
        help="delete an account and its content for good",
        description="Delete a member's account (GDPR art. 17): their content becomes tombstones and a "
        "Delete goes to every server known to hold it, votes on open questions are withdrawn (closed "
        "tallies stay), memberships and follows end, tokens and sessions stop working at once, and the "
        "username is never given again. Needs --yes.",
    )
    p.add_argument("username")
    p.add_argument("--yes", action="store_true", help="confirm the deletion")
    _add_config(p)
    p.set_defaults(func=_cmd_member_delete)
    p = member_commands.add_parser(
        "export",
        help="write the archive of a member's data to a file",
        description="Write a member's archive (GDPR art. 15 and 20) to FILE: a zip of ActivityStreams JSON "
        "(profile, posts, replies, votes, memberships) with a readable index.html, the same as the web "
        "page's download. The file is created with mode 0600.",
    )
    p.add_argument("username")
    p.add_argument("--output", "-o", required=True, metavar="FILE")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    _add_config(p)
    p.set_defaults(func=_cmd_member_export)
    p = member_commands.add_parser(
        "pending",
        help="list the requests to join waiting for approval",
        description="Print the actor IRI of every pending request to join, one per line.",
    )
    p.add_argument("--association", required=True, metavar="SLUG")
    _add_config(p)
    p.set_defaults(func=_cmd_member_pending)

    p = commands.add_parser(
        "worker",
        help="run a job worker (deliveries, inbox processing, sync)",
        description="Run a job worker without the HTTP server. Several may run at once on "
        "PostgreSQL. Stops gracefully on SIGTERM.",
    )
    _add_config(p)
    p.set_defaults(func=_cmd_worker)

    p = commands.add_parser(
        "follow",
        help="make a local association or member follow a remote actor",
        description="Follow a remote actor given as name@host[:port] (looked up with "
        "WebFinger) or as an actor URL. Prints the Follow activity's IRI.",
    )
    p.add_argument("target", metavar="HANDLE_OR_URL")
    p.add_argument(
        "--as", dest="as_name", required=True, metavar="NAME", help="local association slug or username"
    )
    p.add_argument("--type", choices=["group", "person"], help="which actor to follow when a name is both")
    _add_config(p)
    p.set_defaults(func=_cmd_follow)

    deliveries = commands.add_parser(
        "deliveries", help="outbound deliveries", description="Outbound deliveries."
    )
    deliveries_commands = deliveries.add_subparsers(
        dest="deliveries_command", metavar="COMMAND", parser_class=_Parser
    )
    deliveries_commands.required = True
    p = deliveries_commands.add_parser(
        "status",
        help="delivery progress per activity and the job queue",
        description="Per recent activity: deliveries pending, delivered, failed, "
        "gone or rejected; then the job queue by kind and state.",
    )
    _add_config(p)
    p.add_argument("--limit", type=int, default=20, help="how many recent activities (default 20)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_deliveries_status)

    token = commands.add_parser("token", help="manage API tokens", description="Manage API tokens.")
    token_commands = token.add_subparsers(dest="token_command", metavar="COMMAND", parser_class=_Parser)
    token_commands.required = True
    p = token_commands.add_parser(
        "create",
        help="issue a bearer token (prints only the token)",
        description="Issue a bearer token for a local account; prints only the token.",
    )
    p.add_argument("username")
    p.add_argument("--scope", default="write", choices=["read", "write", "admin"])
    p.add_argument("--label", help="a note to recognise the token by")
    _add_config(p)
    p.set_defaults(func=_cmd_token_create)

    publish = commands.add_parser(
        "publish",
        help="publish an alert, resource, proposal, event or reply as an association",
        description="Publish content as an association, straight into the database (the node "
        "need not be running): the delivery is queued and a running serve or worker sends it. "
        "Prints only the object's IRI.",
    )
    publish_commands = publish.add_subparsers(dest="publish_command", metavar="KIND", parser_class=_Parser)
    publish_commands.required = True
    severities = ", ".join(s.value for s in Severity)
    categories = ", ".join(c.value for c in AlertCategory)
    eligibilities = ", ".join(e.value for e in Eligibility)
    kinds = {
        "alert": "an alert (delivered before anything else)",
        "resource": "a resource (an article; revisions are kept)",
        "proposal": "a proposal put to the vote",
        "reply": "a reply in a thread (its audience is never wider than the content it answers)",
        "event": "an event (colloquium, round table, meeting; Mobilizon's form)",
    }
    for kind, what in kinds.items():
        p = publish_commands.add_parser(
            kind,
            help=f"publish {what}",
            description=f"Publish {what} as the association --as. The body, HTML or plain text, "
            "is read from --body-file (- for standard input). Prints only the object's IRI.",
        )
        p.add_argument("--as", dest="as_slug", required=True, metavar="SLUG", help="the association")
        p.add_argument(
            "--by",
            metavar="USERNAME",
            help="the admin or moderator recorded as having published it (default: the first admin;"
            " with none, the operator publishes as the association itself)",
        )
        p.add_argument("--title", help="headline" if kind == "alert" else "title")
        p.add_argument("--body-file", metavar="PATH", help="file holding the body, or - for standard input")
        p.add_argument(
            "--visibility",
            metavar="LEVEL",
            help="public (default), unlisted, followers or members (members of the association only)",
        )
        p.add_argument("--language", metavar="TAG", help="language of the content (BCP 47), e.g. fr")
        if kind == "alert":
            p.add_argument("--severity", help=f"one of: {severities}")
            p.add_argument("--category", help=f"one of: {categories}")
            p.add_argument("--area", help="area concerned, in words")
            p.add_argument("--area-code", metavar="CODE", help="ISO 3166 code of the area, e.g. FR or FR-75")
            p.add_argument(
                "--valid-until", metavar="DATETIME", help="end of validity, ISO 8601 with a time zone"
            )
            p.add_argument(
                "--supersedes", metavar="IRI", help="an active alert of the association it replaces"
            )
        elif kind == "reply":
            p.add_argument("--in-reply-to", required=True, metavar="IRI", help="the content answered")
        elif kind == "event":
            _add_event_options(p)
        elif kind == "resource":
            p.add_argument("--summary", help="short summary")
            p.add_argument("--license", metavar="IRI", help="IRI of the licence")
            p.add_argument("--tag", action="append", metavar="NAME", help="hashtag (repeatable)")
        else:
            p.add_argument("--option", action="append", metavar="TEXT", help="an option (repeat: 2 or more)")
            p.add_argument("--multiple", action="store_true", help="voters may choose several options")
            p.add_argument(
                "--end-time",
                metavar="DATETIME",
                help="when the vote closes, ISO 8601 with a time zone (default: in 7 days)",
            )
            p.add_argument("--eligibility", help=f"who votes, one of: {eligibilities} (default: members)")
        _add_config(p)
        p.set_defaults(func=_cmd_publish, kind=kind)
    _add_admin_commands(commands)
    _add_report_commands(commands)
    _add_invite_commands(commands)
    from server.cli_blocks import add_block_commands  # here: it imports this module's helpers

    add_block_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with audit_channel("cli"):  # every action audited as done from the command line
            result: int = args.func(args)
        return result
    except (ConfigError, CommandError, DatabaseUnavailable, SecretKeyError) as exc:
        print(f"entraide: error: {exc}", file=sys.stderr)
        return 1
    except ServiceError as exc:
        print(f"entraide: error: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
