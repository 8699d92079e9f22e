"""``entraide block …``: the node's blocks, shared lists and federation policy from the command line.

Kept out of ``server/cli.py`` (which registers these commands) so the feature reads as one block.
Every change is audited as done from the command line by the operator (``server/services/audit.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from federation.errors import FederationError
from federation.uris import UriScheme
from server.cli import (
    CommandError,
    _add_config,
    _association_of,
    _fed_run,
    _out,
    _Parser,
    _progress,
    _settings,
    _with_session,
)
from server.services.moderation import blocklists, blocks


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _cmd_domain(args: argparse.Namespace) -> int:
    async def work(session: Any, uris: UriScheme) -> int:
        row = await blocks.block_domain(
            session,
            by=None,
            domain=args.domain,
            severity=args.severity,
            reject_media=args.reject_media,
            reject_reports=args.reject_reports,
            public_comment=args.public_comment,
            private_comment=args.private_comment,
            obfuscate=args.obfuscate,
        )
        _out(f"{row.domain}\t{row.severity}")
        return 0

    return asyncio.run(_with_session(_settings(args), work))


def _cmd_actor(args: argparse.Namespace) -> int:
    async def work(session: Any, uris: UriScheme) -> int:
        group = await _association_of(session, args.association) if args.association else None
        row = await blocks.block_actor(
            session, uris=uris, by=None, actor_iri=args.actor, reason=args.reason, group=group
        )
        _out(f"{row.actor_iri}\t{row.scope}")
        return 0

    return asyncio.run(_with_session(_settings(args), work))


def _cmd_remove(args: argparse.Namespace) -> int:
    async def work(session: Any, uris: UriScheme) -> int:
        if _is_url(args.target):
            group = await _association_of(session, args.association) if args.association else None
            await blocks.unblock_actor(session, uris=uris, by=None, actor_iri=args.target, group=group)
        else:
            await blocks.unblock_domain(session, by=None, domain=args.target)
        _out(f"{args.target}\tremoved")
        return 0

    return asyncio.run(_with_session(_settings(args), work))


def _cmd_list(args: argparse.Namespace) -> int:
    async def work(session: Any, uris: UriScheme) -> int:
        policy = await blocks.node_policy(session)
        data: dict[str, Any] = {
            "federationMode": policy.federation_mode,
            "allowedDomains": list(policy.allowed_domains),
            "associationCreators": policy.association_creators,
            "domains": [
                {
                    "domain": d.domain,
                    "severity": d.severity,
                    "rejectMedia": d.reject_media,
                    "rejectReports": d.reject_reports,
                    "publicComment": d.public_comment,
                    "source": d.source,
                }
                for d in await blocks.list_domain_blocks(session)
            ],
            "actors": [
                {"actor": a.actor_iri, "reason": a.reason} for a in await blocks.list_actor_blocks(session)
            ],
            "subscriptions": [
                {
                    "url": s.url,
                    "kind": s.kind,
                    "every": s.refresh_interval_s,
                    "etag": s.etag,
                    "error": s.last_error,
                }
                for s in await blocklists.list_subscriptions(session)
            ],
        }
        if args.json:
            _out(json.dumps(data, ensure_ascii=False))
            return 0
        _out(f"federation\t{data['federationMode']}\tassociations created by {data['associationCreators']}")
        for domain in data["allowedDomains"]:
            _out(f"allowed\t{domain}")
        for d in data["domains"]:
            flags = ",".join(k for k in ("rejectMedia", "rejectReports") if d[k]) or "-"
            _out(f"domain\t{d['domain']}\t{d['severity']}\t{flags}\t{d['source']}")
        for a in data["actors"]:
            _out(f"actor\t{a['actor']}\t{a['reason']}")
        for s in data["subscriptions"]:
            _out(f"list\t{s['url']}\t{s['kind']}\tevery {s['every']} s\t{s['error'] or 'ok'}")
        return 0

    return asyncio.run(_with_session(_settings(args), work))


def _print_plan(plan: blocklists.ImportPlan, applied: bool) -> None:
    for spec in plan.adds:
        _out(f"+ {spec.domain}\t{spec.severity}")
    for change in plan.changes:
        _out(f"~ {change.after.domain}\t{change.before.severity} → {change.after.severity}")
    for domain in plan.removals:
        _out(f"- {domain}")
    for domain in plan.kept:
        _out(f"= {domain}\t(blocked otherwise, left as it is)")
    for invalid in plan.invalid:
        _progress(f"line {invalid.line} skipped: {invalid.reason}")
    verb = "applied" if applied else "preview only (add --apply to apply)"
    _progress(
        f"{len(plan.adds)} added, {len(plan.changes)} changed, {len(plan.removals)} removed, "
        f"{plan.unchanged} unchanged: {verb}"
    )


async def _with_federation(settings: Any, work: Any) -> int:
    try:
        return int(await _fed_run(settings, work))
    except FederationError as exc:
        raise CommandError(f"the list could not be fetched: {exc.code}") from None


def _read_text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: {exc}") from None


def _cmd_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.allowlist:
        text = _read_text(args.source)

        async def allow(session: Any, uris: UriScheme) -> int:
            domains = await blocklists.import_allowlist(session, text, by=None)
            _progress(f"{len(domains)} allowed domains")
            return 0

        return asyncio.run(_with_session(settings, allow))
    if _is_url(args.source):

        async def by_url(fed: Any) -> int:
            fetched = await blocklists.fetch_list(fed, args.source)
            async with fed.node.sessions.begin() as session:
                plan = await blocklists.import_domain_csv(
                    session, fetched.text or "", name=args.source, by=None, apply=args.apply
                )
            _print_plan(plan, args.apply)
            return 0

        return asyncio.run(_with_federation(settings, by_url))
    text = _read_text(args.source)

    async def from_file(session: Any, uris: UriScheme) -> int:
        name = args.name or Path(args.source).name
        plan = await blocklists.import_domain_csv(session, text, name=name, by=None, apply=args.apply)
        _print_plan(plan, args.apply)
        return 0

    return asyncio.run(_with_session(settings, from_file))


def _cmd_export(args: argparse.Namespace) -> int:
    exported: list[str] = []

    async def work(session: Any, uris: UriScheme) -> int:
        if args.allowlist:
            exported.append(await blocklists.export_allowlist(session))
        else:
            exported.append(await blocklists.export_domain_csv(session))
        return 0

    code = asyncio.run(_with_session(_settings(args), work))
    if args.output:
        Path(args.output).write_text(exported[0], encoding="utf-8")
    else:
        sys.stdout.write(exported[0])
    return code


def _cmd_subscribe(args: argparse.Namespace) -> int:
    async def work(session: Any, uris: UriScheme) -> int:
        if args.remove:
            await blocklists.unsubscribe(session, by=None, url=args.url)
            _out(f"{args.url}\tunsubscribed")
            return 0
        row = await blocklists.subscribe(
            session,
            by=None,
            url=args.url,
            kind="allowlist" if args.allowlist else "blocks",
            refresh_interval_s=int(args.every * 3600),
        )
        _out(f"{row.url}\t{row.kind}\tevery {row.refresh_interval_s} s")
        _progress("a running serve or worker fetches it soon, then on schedule")
        return 0

    return asyncio.run(_with_session(_settings(args), work))


def _cmd_policy(args: argparse.Namespace) -> int:
    async def work(session: Any, uris: UriScheme) -> int:
        row = await blocks.set_node_policy(
            session, by=None, federation_mode=args.mode, association_creators=args.association_creators
        )
        _out(f"federation\t{row.federation_mode}\tassociations created by {row.association_creators}")
        return 0

    return asyncio.run(_with_session(_settings(args), work))


def add_block_commands(commands: Any) -> None:
    """Register ``entraide block domain|actor|list|remove|import|export|subscribe|policy``."""
    block = commands.add_parser(
        "block",
        help="block domains and actors, share block lists, set the federation policy",
        description="The node's blocks and federation policy (stored in the database; the "
        "configuration file's blocked_domains and network are only the starting point). Audited.",
    )
    sub = block.add_subparsers(dest="block_command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("domain", help="block a domain and its subdomains", description="Block a domain.")
    p.add_argument("domain")
    p.add_argument(
        "--severity",
        choices=blocks.SEVERITIES,
        default="suspend",
        help="suspend: refuse everything (default); silence: keep off public listings",
    )
    p.add_argument("--reject-media", action="store_true", help="do not store or show its media")
    p.add_argument("--reject-reports", action="store_true", help="ignore its reports")
    p.add_argument("--public-comment", default="", metavar="TEXT")
    p.add_argument("--private-comment", default="", metavar="TEXT")
    p.add_argument("--obfuscate", action="store_true", help="partly hide the domain where it is shown")
    _add_config(p)
    p.set_defaults(func=_cmd_domain)

    p = sub.add_parser("actor", help="block a remote actor", description="Block a remote actor by its IRI.")
    p.add_argument("actor", metavar="IRI")
    p.add_argument("--reason", default="")
    p.add_argument("--association", metavar="SLUG", help="for this association only (it sends Block)")
    _add_config(p)
    p.set_defaults(func=_cmd_actor)

    p = sub.add_parser("list", help="the policy, blocks and subscribed lists", description="Show blocks.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(p)
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("remove", help="lift a block (a domain or an actor IRI)", description="Lift a block.")
    p.add_argument("target", metavar="DOMAIN|IRI")
    p.add_argument("--association", metavar="SLUG", help="an association's actor block")
    _add_config(p)
    p.set_defaults(func=_cmd_remove)

    p = sub.add_parser(
        "import",
        help="import Mastodon's domain-blocks CSV (a file, - or a URL); a preview unless --apply",
        description="Show what the list adds, changes and removes; --apply applies exactly that.",
    )
    p.add_argument("source", metavar="FILE|URL")
    p.add_argument("--apply", action="store_true")
    p.add_argument("--name", help="the list's name (default: the file name; a URL names itself)")
    p.add_argument("--allowlist", action="store_true", help="replace the allowlist (one domain a line)")
    _add_config(p)
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("export", help="export the domain blocks (Mastodon's CSV)", description="Export.")
    p.add_argument("--allowlist", action="store_true", help="export the allowlist instead")
    p.add_argument("--output", metavar="FILE")
    _add_config(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("subscribe", help="follow a shared list by URL", description="Subscribe to a list.")
    p.add_argument("url")
    p.add_argument("--every", type=float, default=24.0, metavar="HOURS", help="refresh interval (default 24)")
    p.add_argument("--allowlist", action="store_true", help="the list is an allowlist")
    p.add_argument("--remove", action="store_true", help="unsubscribe (and remove the list's blocks)")
    _add_config(p)
    p.set_defaults(func=_cmd_subscribe)

    p = sub.add_parser(
        "policy",
        help="open federation or allowlist; who creates associations",
        description="Set the node's federation policy.",
    )
    p.add_argument("--mode", choices=blocks.FEDERATION_MODES)
    p.add_argument("--association-creators", choices=blocks.ASSOCIATION_CREATORS)
    _add_config(p)
    p.set_defaults(func=_cmd_policy)
